"""dlib's face ResNet on ONNX Runtime against dlib itself: same chips, same run.

Chips: the aligned 150x150 chips of the first N LFW images (the engine's own detection and
alignment). Reports the largest per-component difference and the smallest cosine between the
two backends' raw descriptors, then faces per second for each at batch 1 and batch 32, and the
ratios.

    .venv/bin/python bench/bench_onnx.py [--chips 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import time

import dlib
import numpy as np

from faceledger import FaceEngine, Settings
from faceledger.datasets import LFW
from faceledger.embedding import OnnxResnetEmbedder
from faceledger.models import RESNET, model_path


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
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    settings = Settings.load()
    lfw = LFW.locate(settings)
    engine = FaceEngine(settings)
    paths = [p for ps in lfw.people().values() for p in ps]
    chips = []
    t = time.perf_counter()
    for p in paths:
        faces = engine.detect(p).faces
        if faces:
            chips.append(faces[0].chip)
        if len(chips) == args.chips:
            break
    chips = np.stack(chips)
    print(f"{len(chips)} LFW chips in {time.perf_counter() - t:.0f} s")

    net = dlib.face_recognition_model_v1(str(model_path(RESNET)))
    onnx = OnnxResnetEmbedder(flip=False, cache_dir=settings.cache_dir)

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


if __name__ == "__main__":
    main()
