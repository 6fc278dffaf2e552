"""Experiment, not shipped (issue 25): place the box dlib's 5-point predictor gets from BlazeFace's
own keypoints (the eyes' and the mouth's midpoint, shifted by a median fitted against HOG's boxes
on 300 LFW faces) instead of from its head box, then LFW View 2, 10-fold, on the 7,701 images'
templates (no fallback; threshold per fold from the other nine). STOCK=1: the shipped mapping
(vision/blazeface.TO_DLIB_BOX), same protocol, as the baseline. Images over 640 px (tiles) keep
the shipped path: the experiment covers the whole-image view only.

    PYTHONPATH=. .venv/bin/python bench/experiment_blazeface_keypoints.py          # ~2 min idle
    STOCK=1 PYTHONPATH=. .venv/bin/python bench/experiment_blazeface_keypoints.py
"""
import math
import os
import time

import numpy as np
from PIL import Image
from faceledger import Settings, FaceEngine
from faceledger.evaluation.datasets import LFW
from faceledger.vision import blazeface as bz
from faceledger.vision.detection import Candidate, HogDetector

class KpBlaze(bz.BlazeFaceDetector):
    shift = (0.0, 0.0)
    def kp_detections(self, pixels):
        h, w = pixels.shape[:2]
        batch, views = self._inputs(np.ascontiguousarray(pixels[..., :3], dtype=np.uint8))
        logits, raw = self._net.run(batch)
        x, y, side, _ = views[0]
        scores = 1 / (1 + np.exp(-np.clip(logits[0], -80, 80)))
        keep = scores > self.threshold
        r, a = raw[0][keep], self._anchors[keep]
        if not len(r):
            return []
        cx, cy = r[:, 0] / 256 + a[:, 0], r[:, 1] / 256 + a[:, 1]
        bw, bh = r[:, 2] / 256, r[:, 3] / 256
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        kps = np.stack([r[:, 4 + 2 * k] / 256 + a[:, 0] for k in range(6)] + [r[:, 5 + 2 * k] / 256 + a[:, 1] for k in range(6)], 1)
        both = np.concatenate([boxes, kps], 1)
        out = []
        for merged, p in _wnms(both, scores[keep]):
            out.append((merged * side, p))
        return out
    def propose(self, pixels):
        h, w = pixels.shape[:2]
        if max(h, w) > 640:
            return super().propose(pixels)
        found = []
        logit0 = math.log(self.threshold / (1 - self.threshold))
        for v, p in self.kp_detections(pixels):
            l, t, r, b = v[:4]
            kx, ky = v[4:10], v[10:16]
            ex, ey = (kx[0] + kx[1]) / 2, (ky[0] + ky[1]) / 2  # eyes
            mx, my = kx[3], ky[3]  # mouth
            fx, fy = (ex + mx) / 2, (ey + my) / 2
            bw = r - l
            cx, cy = fx + self.shift[0] * bw, fy + self.shift[1] * bw
            logit = math.log(max(p, 1e-9) / max(1 - p, 1e-9))
            found.append(Candidate(cx - bw / 2, cy - bw / 2, cx + bw / 2, cy + bw / 2, logit - logit0))
        return found

def _wnms(both, scores, iou=0.3):
    order = np.argsort(-scores); both, scores = both[order], scores[order]
    alive = np.ones(len(both), bool); out = []
    for i in range(len(both)):
        if not alive[i]: continue
        m = alive & (bz._iou(both[i, :4], both[:, :4]) > iou); m[i] = True
        wts = scores[m]
        out.append(((both[m] * wts[:, None]).sum(0) / wts.sum(), float(scores[i])))
        alive &= ~m
    return out

settings = Settings.load().replace(landmark_model="none", threads=1)
lfw = LFW.locate(settings)
det = KpBlaze(settings.package_cache or settings.cache_dir, settings.cache_dir, allow_download=False, threads=1)
# fit the shift on 300 LFW faces against HOG's box centre
hog = HogDetector(1)
rng = np.random.default_rng(0); imgs = lfw.images(); pick = [imgs[i] for i in rng.choice(len(imgs), 300, replace=False)]
d = []
for p in pick:
    px = np.asarray(Image.open(p).convert("RGB"))
    k = det.kp_detections(px); hh = hog.propose(px)
    if not k or not hh: continue
    v = max(k, key=lambda t: t[1])[0]; hc = max(hh, key=lambda c: c.score)
    bw = v[2] - v[0]
    fx, fy = ((v[4] + v[5]) / 2 + v[7]) / 2, ((v[10] + v[11]) / 2 + v[13]) / 2
    d.append((((hc.left + hc.right) / 2 - fx) / bw, ((hc.top + hc.bottom) / 2 - fy) / bw))
d = np.array(d); KpBlaze.shift = tuple(np.median(d, 0)); print("fit on", len(d), "shift", KpBlaze.shift, flush=True)
engine = FaceEngine(settings.replace(detector="blazeface"))
if not os.environ.get("STOCK"): engine._finder.detectors[0] = det
from faceledger.evaluation.protocols import choose_face
pairs = lfw.pairs()
paths = sorted({p for fold in pairs for pr in fold for p in (pr.a, pr.b)})
t = time.time(); vec = {}
for i, p in enumerate(paths):
    faces = engine.detect(p).faces
    vec[p] = engine.embed_faces([choose_face(faces, LFW.expected_face)])[0].template.vector if faces else None
    if i % 1000 == 0: print(i, round(time.time() - t), flush=True)
accs = []
for k, fold in enumerate(pairs):
    def sc(pr): return float(np.dot(vec[pr.a], vec[pr.b])) if vec[pr.a] is not None and vec[pr.b] is not None else -1.0
    train = [pr for j, f in enumerate(pairs) if j != k for pr in f]
    s = np.array([sc(pr) for pr in train]); y = np.array([pr.mated for pr in train])
    cand = np.unique(s); best = max(cand[::max(1, len(cand) // 2000)], key=lambda th: ((s >= th) == y).mean())
    st = np.array([sc(pr) for pr in fold]); yt = np.array([pr.mated for pr in fold])
    accs.append(((st >= best) == yt).mean())
print(("stock" if os.environ.get("STOCK") else "keypoint-placed") + " boxes: View 2 %.2f%% +- %.2f" % (100 * np.mean(accs), 100 * np.std(accs)), [round(600 * a) for a in accs], flush=True)
