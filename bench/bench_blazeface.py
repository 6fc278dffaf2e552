"""BlazeFace (primary) against today's default (HOG, MMOD fallback), on the same images: detection
rate per FairFace group and LFW failures to acquire (each with its fallback, the engine's own
FaceFinder, largest face as in acquisition), and time per 1-megapixel photo for every-face
detection (BlazeFace with its tiles vs HOG on the 1024 copy). ``--fit`` instead fits
vision/blazeface.TO_DLIB_BOX on LFW faces both find.

    .venv/bin/python bench/bench_blazeface.py [--per-group 300] [--by race-gender] [--lfw 13233] [--photos 20]
    .venv/bin/python bench/bench_blazeface.py --fit 300 | --lfw-pairs 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from blocks import load
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.evaluation.protocols import fairface_groups


def sample(paths, n, seed=0):
    if n >= len(paths):
        return list(paths)
    rng = np.random.default_rng(seed)
    return [paths[i] for i in sorted(rng.choice(len(paths), n, replace=False))]


def finder(settings):
    engine = FaceEngine(settings.replace(landmark_model="none"))
    return engine, engine._finder  # detection and the 5 landmarks only: no chip, quality or mesh


def found_by(engine, find, path) -> tuple[str, bool]:
    """Which detector found the largest face, and whether it sits off the image's centre (LFW
    centres its face: a box elsewhere is a false detection taken for the face)."""
    pixels = engine.load(str(path)).pixels
    faces = find.find(pixels, largest_only=True)
    if not faces:
        return "none", False
    f, (h, w) = faces[0], pixels.shape[:2]
    off = abs(f.left + f.width / 2 - w / 2) > 0.2 * w or abs(f.top + f.height / 2 - h / 2) > 0.2 * h
    return f.detector, off


def by_group(fairface, by):
    """FairFace images by annotated race, or race x gender (annotations, never inferred)."""
    if by == "race":
        return fairface_groups(fairface)
    groups = {}
    for r in fairface.records():
        groups.setdefault(f"{r.race} {r.gender}", []).append(r.path)
    return groups


def fit(base, n):
    from faceledger.vision.blazeface import BlazeFaceDetector
    from faceledger.vision.detection import HogDetector

    blaze = BlazeFaceDetector(base.package_cache or base.cache_dir, base.cache_dir, allow_download=False)
    hog = HogDetector(1)
    rows = []
    for p in sample(LFW.locate(base).images(), n):
        px = np.asarray(Image.open(p).convert("RGB"))
        b, h = blaze.detections(px), hog.propose(px)
        if not b or not h:
            continue
        (l, t, r, bt), _ = b[0]
        hc = max(h, key=lambda c: c.score)
        bw, bh = r - l, bt - t
        rows.append((((hc.left + hc.right) / 2 - (l + r) / 2) / bw, ((hc.top + hc.bottom) / 2 - (t + bt) / 2) / bh,
                     (hc.right - hc.left) / bw))
    a = np.array(rows)
    print(f"{len(a)} LFW faces found by both; median dx {np.median(a[:, 0]):.4f} dy {np.median(a[:, 1]):.4f} "
          f"scale {np.median(a[:, 2]):.4f} (IQR scale {np.percentile(a[:, 2], 25):.3f}-{np.percentile(a[:, 2], 75):.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-group", type=int, default=300, help="FairFace images per group (0: none)")
    ap.add_argument("--lfw", type=int, default=1000, help="LFW images (13233: all; 0: none)")
    ap.add_argument("--photos", type=int, default=20, help="1 MP photos (LFW faces on a canvas) to time")
    ap.add_argument("--fit", type=int, default=0)
    ap.add_argument("--only", choices=("hog+mmod", "blazeface+mmod"), help="one configuration only")
    ap.add_argument("--lfw-pairs", type=int, default=0, help="instead: LFW View 2 accuracy on N pairs per fold")
    ap.add_argument("--by", choices=("race", "race-gender"), default="race",
                    help="FairFace groups: annotated race (7), or race x gender (14)")
    args = ap.parse_args()
    base = Settings.load().replace(threads=1)
    if args.fit:
        fit(base, args.fit)
        return
    configs = {"hog+mmod": base.replace(detector="hog", fallback_detector="mmod"),
               "blazeface+mmod": base.replace(detector="blazeface", fallback_detector="mmod")}
    if args.only:
        configs = {args.only: configs[args.only]}
    if args.lfw_pairs:  # verification accuracy: does the alignment from BlazeFace's boxes keep it?
        from faceledger.evaluation.protocols import evaluate_lfw

        for k, s in configs.items():
            r = evaluate_lfw(LFW.locate(base), s.replace(landmark_model="none"), pairs_per_fold=args.lfw_pairs, workers=1)
            print(f"LFW View 2, {args.lfw_pairs} pairs per fold, {k}: accuracy {100 * r.mean:.2f}% +- {100 * r.std:.2f} "
                  f"over 10 folds; {r.images} images, {len(r.failures_to_acquire)} failures to acquire, "
                  f"detectors {r.detectors}", flush=True)
        return
    finders = {k: finder(s) for k, s in configs.items()}
    groups = {g: sample(ps, args.per_group) for g, ps in sorted(by_group(FairFace.locate(base), args.by).items())
              if args.per_group}
    lfw = LFW.locate(base).images()
    if args.lfw:
        groups["LFW"] = sample(lfw, args.lfw)
    print(f"{load()}; {sum(map(len, groups.values()))} images, on each: {', '.join(configs)}")
    print(f"{'group':24} {'n':>6} " + " ".join(f"{k + ' primary/any':>30}" for k in configs))
    misses = {k: [] for k in configs}
    off_centre = {k: 0 for k in configs}
    total = {k: [0, 0, 0] for k in configs}  # FairFace: primary, any, images
    for g, paths in groups.items():
        counts = {k: [0, 0] for k in configs}
        for p in paths:
            for k, (engine, find) in finders.items():
                d, off = found_by(engine, find, p)
                counts[k][0] += d == configs[k].detector
                counts[k][1] += d != "none"
                if g == "LFW":
                    off_centre[k] += off
                if d == "none" and g == "LFW":
                    misses[k].append(p.name)
        n = len(paths)
        for k, c in counts.items() if g != "LFW" else ():
            total[k] = [total[k][0] + c[0], total[k][1] + c[1], total[k][2] + n]
        print(f"{g:24} {n:6d} " + " ".join(f"{100 * c[0] / n:13.1f}% / {100 * c[1] / n:5.1f}% ({n - c[1]:3d} miss)"
                                          for c in counts.values()), flush=True)
    for k, (primary, found, n) in total.items() if args.per_group else ():
        print(f"FairFace, all {n} images, {k}: {100 * primary / n:.1f}% / {100 * found / n:.1f}% ({n - found} miss)")
    for k, m in misses.items() if args.lfw else ():
        print(f"LFW failures to acquire, {k}: {len(m)} {m[:10]}; largest face off the centre: {off_centre[k]}")
    if args.photos:
        photos(finders, lfw, args.photos)
    print(load())


def photos(finders, lfw, n):
    """Every-face detection on 1 MP photos: 1152 x 864 canvases holding 3 LFW faces at 1x, 0.5x and 0.3x."""
    rng = np.random.default_rng(1)
    times = {k: [] for k in finders}
    found = {k: 0 for k in finders}
    for i in range(n):
        canvas = np.full((864, 1152, 3), 90, np.uint8)
        for j, (k, x, y) in enumerate(((1.0, 40, 40), (0.5, 500, 300), (0.3, 900, 600))):
            img = Image.open(lfw[int(rng.integers(len(lfw)))]).convert("RGB")
            img = img.resize((round(250 * k), round(250 * k)), Image.BILINEAR)
            canvas[y:y + img.height, x:x + img.width] = np.asarray(img)
        for k, (engine, find) in finders.items():
            t = time.perf_counter()
            faces = find.find(canvas)
            times[k].append(time.perf_counter() - t)
            found[k] += len(faces)
    for k, ts in times.items():
        ts = np.array(ts) * 1000
        print(f"1 MP (1152x864), every face, {k}: min {ts.min():.0f} / median {np.median(ts):.0f} / max {ts.max():.0f} ms "
              f"(incl. 5-point landmarks); faces found {found[k]} of {3 * n}")


if __name__ == "__main__":
    main()
