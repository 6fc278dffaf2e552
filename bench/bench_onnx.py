"""dlib's face ResNet and MMOD detector on ONNX Runtime against dlib itself: same inputs, same run.

ResNet: the aligned 150x150 chips of the first N LFW images (the engine's own detection and
alignment); the largest per-component difference and the smallest cosine between the two
backends' raw descriptors, then faces per second at batch 1 and batch 32, and the ratios.
MMOD: M images, half LFW (first image of each person), half FairFace; whether both find the same
faces (box IoU >= 0.95) with confidences within 1e-3, and the time per image of each.

    .venv/bin/python bench/bench_onnx.py [--chips 1000] [--images 600] [--seconds 10]
"""

from __future__ import annotations

import argparse
import time

import dlib
import numpy as np

from samples import first_chips
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.dlib.entry import onnx_embedder
from faceledger.models.files import RESNET, model_path


def rate(run, chips: np.ndarray, batch: int, seconds: float) -> float:
    """Faces per second of ``run`` over batches of ``batch`` chips, for about ``seconds``."""
    run(chips[:batch])  # warm up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        i = done % (len(chips) - batch + 1)
        run(chips[i : i + batch])
        done += batch
    return done / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chips", type=int, default=1000)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    settings = Settings.load()
    lfw = LFW.locate(settings)
    engine = FaceEngine(settings)
    paths = [p for ps in lfw.people().values() for p in ps]
    t = time.perf_counter()
    chips = first_chips(engine, paths, args.chips)
    print(f"{len(chips)} LFW chips in {time.perf_counter() - t:.0f} s")

    net = dlib.face_recognition_model_v1(str(model_path(RESNET)))
    onnx = onnx_embedder(flip=False, cache_dir=settings.cache_dir)

    def dlib_run(batch):
        return np.array([np.asarray(d) for d in net.compute_face_descriptor([np.ascontiguousarray(c) for c in batch])])

    ref = np.concatenate([dlib_run(chips[i : i + 32]) for i in range(0, len(chips), 32)])
    got = onnx.raw(chips)
    cos = np.sum(ref * got, axis=1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    print(f"equivalence over {len(chips)} chips: max |difference| per component {np.abs(ref - got).max():.2e} "
          f"(target <= 1e-4), min cosine {cos.min():.8f} (target >= 0.99999)")
    for batch in (1, 32):
        d = rate(dlib_run, chips, batch, args.seconds)
        o = rate(onnx.raw, chips, batch, args.seconds)
        print(f"batch {batch:2d}: dlib {d:6.1f} faces/s ({1000 / d:6.1f} ms/face), onnx {o:6.1f} faces/s "
              f"({1000 / o:5.2f} ms/face): {o / d:.1f}x")
    mmod(settings, lfw, args.images)


def iou(a, b) -> float:
    il, it, ir, ib = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if ir < il or ib < it:
        return 0.0
    inner = (ir - il + 1) * (ib - it + 1)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inner / (area(a) + area(b) - inner)


def mmod(settings, lfw, count: int) -> None:
    from PIL import Image

    from faceledger.evaluation.datasets import FairFace
    from faceledger.vision.mmod import OnnxMmodDetector
    from faceledger.models.files import MMOD

    paths = [ps[0] for ps in lfw.people().values()][: count // 2]
    paths += [r.path for r in FairFace.locate(settings).records()][: count - len(paths)]
    ref = dlib.cnn_face_detection_model_v1(str(model_path(MMOD)))
    ours = OnnxMmodDetector(settings.cache_dir)
    same, worst_iou, worst_conf, faces, t_ref, t_ours = 0, 1.0, 0.0, 0, 0.0, 0.0
    for p in paths:
        img = np.asarray(Image.open(p).convert("RGB"))
        t = time.perf_counter()
        a = [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence) for d in ref(img, 0)]
        t_ref += time.perf_counter() - t
        t = time.perf_counter()
        b = ours.detections(img)
        t_ours += time.perf_counter() - t
        faces += len(a)
        if len(a) == len(b):
            ious = [iou(x[0], y[0]) for x, y in zip(a, b)]
            if all(v >= 0.95 for v in ious) and all(abs(x[1] - y[1]) <= 1e-3 for x, y in zip(a, b)):
                same += 1
            worst_iou = min([worst_iou, *ious])
            worst_conf = max([worst_conf, *(abs(x[1] - y[1]) for x, y in zip(a, b))])
        else:
            worst_iou = 0.0
    n = len(paths)
    print(f"MMOD on {n} images ({faces} faces by dlib): same faces, IoU >= 0.95 and confidence within 1e-3 on "
          f"{same}/{n}; worst IoU {worst_iou:.4f}, worst confidence difference {worst_conf:.1e}")
    print(f"MMOD time per image: dlib {1000 * t_ref / n:.1f} ms, onnx {1000 * t_ours / n:.1f} ms: "
          f"{t_ref / t_ours:.1f}x")


if __name__ == "__main__":
    main()
