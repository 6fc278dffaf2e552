"""Fit vision/blazeface.KEYPOINT_BOX (issue 25): where dlib's 5-point predictor's box sits relative
to BlazeFace's keypoints. On 300 LFW images (seed 0), the best BlazeFace detection's keypoint
centre (blazeface.keypoint_centre: the midpoint of the eyes' midpoint and the mouth) and HOG's
best box (upsample 1, the detector the predictor's boxes resemble); prints the medians of HOG's
box centre minus that centre, in units of BlazeFace's head box width, to hard-code.

    PYTHONPATH=. .venv/bin/python bench/fit_blazeface_keypoints.py [--faces 300]   # ~1 min idle
"""
import argparse

import numpy as np
from PIL import Image

from faceledger import Settings
from faceledger.evaluation.datasets import LFW
from faceledger.vision import blazeface as bz
from faceledger.vision.detection import HogDetector

ap = argparse.ArgumentParser()
ap.add_argument("--faces", type=int, default=300)
args = ap.parse_args()
settings = Settings.load()
lfw = LFW.locate(settings)
blaze = bz.BlazeFaceDetector(settings.package_cache or settings.cache_dir, settings.cache_dir, allow_download=False, threads=1)
hog = HogDetector(1)
images = lfw.images()
rng = np.random.default_rng(0)
d = []
for i in rng.choice(len(images), args.faces, replace=False):
    px = np.asarray(Image.open(images[i]).convert("RGB"))
    found, boxes = blaze.rows(px), hog.propose(px)
    if not found or not boxes:
        continue
    row = max(found, key=lambda t: t[1])[0]
    h = max(boxes, key=lambda c: c.score)
    fx, fy = bz.keypoint_centre(row)
    bw = float(row[2] - row[0])
    d.append((((h.left + h.right) / 2 - fx) / bw, ((h.top + h.bottom) / 2 - fy) / bw))
d = np.array(d)
print(f"both found in {len(d)} of {args.faces}; KEYPOINT_BOX = ({np.median(d[:, 0]):.3f}, {np.median(d[:, 1]):.3f})"
      f"  (IQR x {np.subtract(*np.percentile(d[:, 0], [75, 25])):.3f}, y {np.subtract(*np.percentile(d[:, 1], [75, 25])):.3f})")
