"""End-to-end indexing throughput on LFW: `faceledger index` (decode, detect, align, quality,
embed, store) against the plain dlib loop of the face_recognition library, same images, same run.

    .venv/bin/python bench/bench_indexing.py [--images 1000] [--workers 2] [--baseline-images 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import dlib
import numpy as np
from PIL import Image

from faceledger import Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.files import RESNET, SHAPE_5, model_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--baseline-images", type=int, default=300)
    args = ap.parse_args()
    lfw = LFW.locate(Settings.load())
    every = lfw.images()
    paths = every[:: max(1, len(every) // args.images)][: args.images]

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path(SHAPE_5)))
    net = dlib.face_recognition_model_v1(str(model_path(RESNET)))
    base = paths[: args.baseline_images]
    t = time.perf_counter()
    for p in base:
        img = np.array(Image.open(p).convert("RGB"))
        for rect in detector(img, 1):
            net.compute_face_descriptor(img, predictor(img, rect), 1)
    base_rate = len(base) / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "FACELEDGER_STORE": os.path.join(tmp, "s.sqlite")}
        cli = [sys.executable, "-m", "faceledger.interfaces.cli.main"]
        subprocess.run([*cli, "collection", "create", "bench"], env=env, check=True, capture_output=True)
        t = time.perf_counter()
        done = subprocess.run(
            [*cli, "index", "bench", *map(str, paths), "--workers", str(args.workers), "--quality-filter", "NONE"],
            env=env, capture_output=True, text=True,
        )
        ours = len(paths) / (time.perf_counter() - t)
        if done.returncode not in (0, 3):
            raise SystemExit(done.stderr)
    print(f"baseline: plain dlib loop, one process, {len(base)} images: {base_rate:.2f} images/s (no storage)")
    print(f"faceledger index, {args.workers} worker(s), {len(paths)} images, incl. start-up and storage: {ours:.2f} images/s")
    print(f"ratio {ours / base_rate:.2f}x  ({done.stdout.strip().splitlines()[0] if done.stdout.strip() else ''})")


if __name__ == "__main__":
    main()
