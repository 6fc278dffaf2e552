"""Detection and embedding speed against the plain dlib calls, on the same LFW images, same run.

The baseline is what the face_recognition library does by default: PIL decode to an array,
HOG with one upsampling pass, the 5-point shape predictor, and compute_face_descriptor on the
full image with the shape (it cuts the chip itself). faceledger's figures include what it adds:
EXIF handling and limits, landmarks at full resolution, alignment, quality measures.

Baseline and faceledger alternate in blocks (each block: every image once per side, the order
rotating), --blocks times; per-image times are reported as min / median / max over blocks, and
the ratio as min / median / max of the per-block ratios, with the load average.

    .venv/bin/python bench/bench_engine.py [--images 100] [--blocks 5]
"""

from __future__ import annotations

import argparse

import dlib
import numpy as np
from PIL import Image

from blocks import alternate, block_ratios, load
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.files import RESNET, SHAPE_5, model_path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=5)
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

    base_found = [base_detect(p) for p in paths]
    base_jobs = [(img, rects[0]) for img, rects in base_found if len(rects)]

    # --- faceledger: HOG without fallback, so both sides run the same detector
    engine = FaceEngine(settings, detector="hog", fallback_detector="none")
    plain = FaceEngine(settings.replace(embed_flip=False), detector="hog", fallback_detector="none")
    faces = [d.faces[0] for d in map(engine.detect, paths) if d.faces]

    def batches():
        for i in range(0, len(faces), 16):
            engine.embed_faces(faces[i: i + 16])

    n_img, n_base, n_face = len(paths), len(base_jobs), len(faces)
    rows = [
        ("detect: decode + HOG (+ landmarks, chip, quality)",
         lambda: [base_detect(p) for p in paths], n_img, lambda: [engine.detect(p) for p in paths], n_img),
        ("embed (default, mirror-averaged), batch 1",
         lambda: [net.compute_face_descriptor(i, predictor(i, r), 1) for i, r in base_jobs], n_base,
         lambda: [engine.embed_faces([f]) for f in faces], n_face),
        ("embed (default, mirror-averaged), batch 16", None, n_base, batches, n_face),
        ("embed (embed_flip=False), batch 1", None, n_base, lambda: [plain.embed_faces([f]) for f in faces], n_face),
    ]
    print(f"{len(paths)} LFW images (250x250), {len(faces)} faces; one process, {dlib.__version__=}; {load()}")
    print(f"{'measure':48} {'baseline ms':>22} {'faceledger ms':>22} {'ratio (per block)':>24}")
    base_fn = rows[1][1]
    for name, base, nb, ours, no in rows:
        times = alternate({"base": base or base_fn, "ours": ours}, blocks=args.blocks, per_block=1, warmup=0)
        b = [t / nb * 1000 for t in times["base"]]
        o = [t / no * 1000 for t in times["ours"]]
        r = block_ratios(b, o, 1)
        print(f"{name:48} {min(b):6.1f}/{np.median(b):6.1f}/{max(b):6.1f}  {min(o):6.1f}/{np.median(o):6.1f}/{max(o):6.1f}  "
              f"{min(r):5.2f}x/{np.median(r):5.2f}x/{max(r):5.2f}x")
    print(f"faces found: baseline {len(base_jobs)}, faceledger {len(faces)} (HOG alone, no fallback)")
    print(f"min/median/max over {args.blocks} alternating blocks; ratio > 1: faceledger faster; {load()}")


if __name__ == "__main__":
    main()
