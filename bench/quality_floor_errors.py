"""Where recognition errors rise with a probe's pose, sharpness and exposure: the evidence for the
quality floor's cut-offs.

The floor exists to refuse probes on which the engine errs, so its limits belong where the errors
rise, not at round numbers. On LFW (the images of View 2, templates and criteria from the caches,
so a re-run takes seconds), every mated pair in both directions is a search of the probe against a
gallery holding its mate; the gallery face must pass the MEDIUM filter (what IndexFaces' AUTO
keeps). Per bin of the probe's |yaw|, |pitch|, sharpness and highlight it prints:
- FNMR at the shipped 1:N thresholds: the calibrated FMR the service searches at, which is the
  default threshold's 2.5e-6 up to a gallery of 4,000 faces and 1e-8 at 1M (the moratorium's
  bound on false positive identification, 0.01, over the gallery size), at the shipped FMR 1e-3,
  and at LFW's own FMR 1e-3 and 1e-4 thresholds (read off its non-mated scores: the shipped
  calibration is far stricter on LFW, so its thresholds miss most mates whatever the pose);
- FMR of the probe against every other person's gallery faces at LFW's own 1e-3 and 1e-4
  thresholds, as a multiple of the nominal rate (1:N rates are not measurable on LFW);
with 95% intervals from a bootstrap over the probe's person (pairs of one person are not
independent). The named baseline is the frontal bin, in the same run.

    FACELEDGER_DETECTOR=blazeface python bench/quality_floor_errors.py [--folds 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceledger import FaceEngine, Settings  # noqa: E402
from faceledger.evaluation.datasets import LFW  # noqa: E402
from faceledger.evaluation.quality_cache import criteria_for  # noqa: E402
from faceledger.scoring import calibration  # noqa: E402
from faceledger.vision import quality  # noqa: E402

#: The 1:N operating points: (label, FMR per comparison the service searches at).
SEARCH_FMRS = (("search <=4k", 10 ** (-7 * 0.8)), ("search 1M", 1e-8), ("shipped 1e-3", 1e-3))
#: FMRs at which thresholds are read off LFW's own non-mated scores (the shipped calibration, fitted
#: on other impostors, is far stricter on LFW: its 1:N thresholds miss most mates, whatever the pose).
LFW_FMRS = (1e-3, 1e-4)
MEASURES = {
    "|yaw|": (lambda q: abs(q.pose.yaw), (0, 10, 20, 25, 30, 35, 40, 45, 50, 90)),
    "|pitch|": (lambda q: abs(q.pose.pitch), (0, 10, 15, 20, 25, 30, 90)),
    "sharpness": (lambda q: q.sharpness, (0, 20, 30, 40, 50, 60, 70, 101)),
    "highlight": (lambda q: q.highlight, (0, 30, 40, 50, 60, 70, 101)),
}


def person_bootstrap(err: np.ndarray, person: np.ndarray, reps: int, rng) -> tuple[float, float]:
    """95% interval of the error rate, resampling persons (their pairs together)."""
    if len(err) == 0:
        return float("nan"), float("nan")
    ids, inv = np.unique(person, return_inverse=True)
    e = np.bincount(inv, weights=err, minlength=len(ids))
    n = np.bincount(inv, minlength=len(ids)).astype(float)
    pick = rng.integers(0, len(ids), size=(reps, len(ids)))
    rates = e[pick].sum(1) / np.maximum(n[pick].sum(1), 1)
    return float(np.quantile(rates, 0.025)), float(np.quantile(rates, 0.975))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--all-lfw", action="store_true", help="every LFW image, not only View 2's")
    ap.add_argument("--folds", type=int, default=10, help="the images of View 2's first K folds")
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--cached-only", action="store_true", help="only the images already in the criteria cache")
    args = ap.parse_args()
    start = time.perf_counter()
    settings = Settings.load()
    engine = FaceEngine(settings)
    lfw = LFW.locate(settings)
    if args.all_lfw:
        paths = lfw.images()
    else:
        paths = list(dict.fromkeys(p for fold in lfw.pairs()[: args.folds] for pair in fold for p in (pair.a, pair.b)))
    crit = criteria_for(paths, engine, expected=LFW.expected_face, templates=True, cached_only=args.cached_only)
    keep = [p for p in paths if crit.get(p) is not None]
    print(f"detector {settings.detector} (+{settings.fallback_detector}), model {engine.model}; "
          f"{len(keep)} of {len(paths)} LFW images with a face")
    X = np.stack([crit[p].template for p in keep]).astype(np.float32)
    person = np.array([p.parent.name for p in keep])
    _, pid = np.unique(person, return_inverse=True)
    qs = [crit[p].quality for p in keep]
    gallery_ok = np.array([not quality.reasons(q, "MEDIUM") for q in qs])
    S = X @ X.T
    same = pid[:, None] == pid[None, :]
    np.fill_diagonal(same, False)
    cal = calibration.for_model(str(engine.model))
    # non-mated: probe i against every other person's gallery faces
    other = ~same & (pid[:, None] != pid[None, :]) & gallery_ok[None, :]
    one_t = [(f, calibration.threshold_for_fmr(S[other], f)) for f in LFW_FMRS]
    search_t = [(label, f, cal.threshold_for_fmr(f)) for label, f in SEARCH_FMRS] \
        + [(f"LFW {f:.0e}", f, t) for f, t in one_t]
    # mated searches: probe i, gallery j (same person, j passes MEDIUM)
    mi, mj = np.nonzero(same & gallery_ok[None, :])
    mated_scores = S[mi, mj]
    # per probe, its false matches at each LFW threshold
    n_non = other.sum(1)
    above = {f: ((S >= t) & other).sum(1) for f, t in one_t}
    print(f"{len(mi)} mated searches (gallery face passing MEDIUM), {int(n_non.sum())} non-mated comparisons; "
          f"thresholds (cosine): " + ", ".join(f"{lab} (FMR {f:.1e}) {t:.3f}" for lab, f, t in search_t))
    rng = np.random.default_rng(0)
    for name, (value, edges) in MEASURES.items():
        v = np.array([value(q) for q in qs])
        print(f"\nby probe {name}")
        head = f"{'bin':>9} {'probes':>6} {'mated':>6} " + " ".join(f"{'FNMR ' + lab:>24}" for lab, _, _ in search_t) \
            + " " + " ".join(f"{'FMR/nominal LFW ' + format(f, '.0e'):>22}" for f, _ in one_t)
        print(head)
        for lo, hi in zip(edges[:-1], edges[1:]):
            inbin = (v >= lo) & (v < hi)
            sel = inbin[mi]
            cells = []
            for _, _, t in search_t:
                err = (mated_scores[sel] < t).astype(float)
                a, b = person_bootstrap(err, pid[mi][sel], args.reps, rng)
                cells.append(f"{100 * err.mean() if len(err) else float('nan'):5.1f}% [{100 * a:5.1f}, {100 * b:5.1f}]")
            for f, _ in one_t:
                k, n = above[f][inbin].sum(), n_non[inbin].sum()
                e = above[f][inbin].astype(float)
                # per-probe counts: bootstrap persons on (false matches, comparisons)
                ids, inv = np.unique(pid[inbin], return_inverse=True)
                if len(ids):
                    fe = np.bincount(inv, weights=e, minlength=len(ids))
                    fn = np.bincount(inv, weights=n_non[inbin].astype(float), minlength=len(ids))
                    pick = rng.integers(0, len(ids), size=(args.reps, len(ids)))
                    r = fe[pick].sum(1) / np.maximum(fn[pick].sum(1), 1) / f
                    lo_r, hi_r = np.quantile(r, [0.025, 0.975])
                else:
                    lo_r = hi_r = float("nan")
                cells.append(f"{k / max(n, 1) / f:5.2f}x [{lo_r:4.2f}, {hi_r:4.2f}]")
            print(f"{f'{lo:g}-{hi:g}':>9} {int(inbin.sum()):6} {int(sel.sum()):6} " + " ".join(f"{c:>24}" for c in cells[:len(search_t)])
                  + " " + " ".join(f"{c:>22}" for c in cells[len(search_t):]))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
