"""Detection and embedding speed against the plain dlib calls, on the same LFW images, same run.

The baseline is what the face_recognition library does by default: PIL decode to an array,
HOG with one upsampling pass, the 5-point shape predictor, and compute_face_descriptor on the
full image with the shape (it cuts the chip itself). faceledger's figures include what it adds:
EXIF handling and limits, landmarks at full resolution, alignment, quality measures.

    .venv/bin/python bench/bench_engine.py [--images 100]
"""

from __future__ import annotations

import argparse
import time

import dlib
import numpy as np
from PIL import Image

from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.files import RESNET, SHAPE_5, model_path


def timed(fn, items):
    start = time.perf_counter()
    out = [fn(x) for x in items]
    return (time.perf_counter() - start) / max(1, len(items)), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    args = ap.parse_args()

    settings = Settings.load()
    lfw = LFW.locate(settings)
    paths = lfw.images()[:: max(1, 13233 // args.images)][: args.images]

    # --- baseline: plain dlib, face_recognition's defaults
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path(SHAPE_5)))
    net = dlib.face_recognition_model_v1(str(model_path(RESNET)))

    def base_detect(p):
        img = np.array(Image.open(p).convert("RGB"))
        return img, detector(img, 1)

    base_det_s, base_found = timed(base_detect, paths)
    base_jobs = [(img, rects[0]) for img, rects in base_found if len(rects)]
    base_emb_s, _ = timed(lambda j: net.compute_face_descriptor(j[0], predictor(j[0], j[1]), 1), base_jobs)

    # --- faceledger: HOG without fallback, so both sides run the same detector
    engine = FaceEngine(settings, detector="hog", fallback_detector="none")
    det_s, detections = timed(engine.detect, paths)
    faces = [d.faces[0] for d in detections if d.faces]
    emb_s, _ = timed(lambda f: engine.embed_faces([f]), faces)
    start = time.perf_counter()
    for i in range(0, len(faces), 16):
        engine.embed_faces(faces[i : i + 16])
    batch_s = (time.perf_counter() - start) / max(1, len(faces))
    plain = FaceEngine(settings.replace(embed_flip=False), detector="hog", fallback_detector="none")
    plain_s, _ = timed(lambda f: plain.embed_faces([f]), faces)

    print(f"{len(paths)} LFW images (250x250), {len(faces)} faces; one process, {dlib.__version__=}")
    print(f"{'measure':48} {'baseline':>10} {'faceledger':>11} {'ratio':>7}")
    rows = [
        ("detect: decode + HOG (+ landmarks, chip, quality)", base_det_s, det_s),
        ("embed (default, mirror-averaged), batch 1", base_emb_s, emb_s),
        ("embed (default, mirror-averaged), batch 16", base_emb_s, batch_s),
        ("embed (embed_flip=False), batch 1", base_emb_s, plain_s),
    ]
    for name, base, ours in rows:
        print(f"{name:48} {1000 * base:9.1f}ms {1000 * ours:10.1f}ms {base / ours:6.2f}x")
    print(f"faces found: baseline {len(base_jobs)}, faceledger {len(faces)} (HOG alone, no fallback)")
    print("ratio > 1 means faceledger is faster than the baseline")


if __name__ == "__main__":
    main()
