"""The score audit at 10 million pairs in 14 groups: every measure, bootstrap included, against a
plain pandas groupby computing only the per-group FMR and FNMR (the baseline), in one run.

The pairs have the structure of a real audit (FairFace-like groups, several images per subject):
14 groups x 300 subjects x 3 images; every within-group pair (mated when both images are of one
subject), topped up to 10M with random cross-group pairs. Impostor scores carry a per-subject
lean, so pairs that share a subject are correlated, as in real data; groups differ in impostor
mean and genuine spread, so there are differentials to find.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/audit.py [--pairs 10000000] [--resamples 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from faceledger.evaluation.audit import Scores, audit, read_scores


def generate(pairs: int, groups: int = 14, subjects: int = 300, per_subject: int = 3, seed: int = 0) -> Scores:
    rng = np.random.default_rng(seed)
    per_group = subjects * per_subject
    images = groups * per_group
    group_of = np.repeat(np.arange(groups), per_group)
    subject_of = np.arange(images) // per_subject
    i, j = np.triu_indices(per_group, k=1)
    a = np.concatenate([i + g * per_group for g in range(groups)])
    b = np.concatenate([j + g * per_group for g in range(groups)])
    extra = max(0, pairs - len(a))
    ca, cb = rng.integers(0, images, 2 * extra), rng.integers(0, images, 2 * extra)
    keep = np.flatnonzero(group_of[ca] != group_of[cb])[:extra]
    a, b = np.concatenate([a, ca[keep]]), np.concatenate([b, cb[keep]])
    mated = subject_of[a] == subject_of[b]
    lean = rng.normal(0, 0.15, images // per_subject)
    impostor_mean = np.linspace(-0.3, 0.6, groups)[group_of]
    score = np.where(
        mated,
        rng.normal(3.5, 1.0, len(a)) - 0.05 * group_of[a],
        rng.normal(0, 1.0, len(a)) + (impostor_mean[a] + impostor_mean[b]) / 2 + lean[subject_of[a]] + lean[subject_of[b]],
    ).astype(np.float32)
    names = [f"group {g:02d}" for g in range(groups)]
    return Scores(score, mated, group_of[a].astype(np.int16), group_of[b].astype(np.int16), names,
                  subject_of[a].astype(np.int32), subject_of[b].astype(np.int32))


def pandas_rates(s: Scores, thresholds: list[float]):
    """The baseline: per-group FMR and FNMR with a groupby, as an analyst would write it."""
    import pandas as pd

    df = pd.DataFrame({"score": s.score, "mated": s.mated, "group_a": s.group_a, "group_b": s.group_b})
    within = df[df.group_a == df.group_b]
    out = []
    for t in thresholds:
        rates = within.assign(match=within.score >= t).groupby(["group_a", "mated"])["match"].mean().unstack()
        out.append((rates[False], 1 - rates[True]))  # FMR, FNMR per group
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=10_000_000)
    ap.add_argument("--resamples", type=int, default=200)
    args = ap.parse_args()

    t0 = time.perf_counter()
    s = generate(args.pairs)
    print(f"generated {len(s.score):,} pairs ({int(s.mated.sum()):,} mated) in {len(s.names)} groups, "
          f"{len(np.unique(s.subject_a)):,} subjects: {time.perf_counter() - t0:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(tmp) / "scores.parquet"
        pq.write_table(pa.table({"score": s.score, "mated": s.mated,
                                 "group_a": np.array(s.names)[s.group_a], "group_b": np.array(s.names)[s.group_b],
                                 "subject_a": s.subject_a, "subject_b": s.subject_b}), path)
        t0 = time.perf_counter()
        loaded = read_scores(path)
        t_read = time.perf_counter() - t0
        assert np.array_equal(loaded.score, s.score.astype(np.float64)) and np.array_equal(loaded.group_a, s.group_a)
        print(f"read_scores (Parquet, {path.stat().st_size / 2**20:.0f} MiB): {t_read:.1f} s")

    t0 = time.perf_counter()
    report = audit(loaded, targets=(1e-3, 1e-4), reference_group="group 00", resamples=args.resamples)
    t_audit = time.perf_counter() - t0
    points = report.points
    print(f"faceledger audit: {len(points)} operating points x {len(s.names)} groups (FMR, FNMR, cross-group FMR, "
          f"Wilson intervals, subject bootstrap x {args.resamples}, differentials), DET curves, histograms, "
          f"EER: {t_audit:.1f} s")

    try:
        t0 = time.perf_counter()
        baseline = pandas_rates(loaded, [p.threshold for p in points])
        t_pandas = time.perf_counter() - t0
    except ImportError:
        print("pandas is not installed (pip install -e '.[bench]'): no baseline")
        return
    worst = 0.0
    for p, (fmr, fnmr) in zip(points, baseline):
        for code, g in enumerate(p.groups):
            worst = max(worst, abs(g.fmr.rate - fmr[code]), abs(g.fnmr.rate - fnmr[code]))
    print(f"pandas groupby baseline, per-group FMR and FNMR only: {t_pandas:.1f} s "
          f"(largest difference from the audit's rates: {worst:.1e})")
    print(f"ratio audit / baseline: {t_audit / t_pandas:.2f}x the time, for every measure instead of two")
    p = points[0]
    widest = max(p.groups, key=lambda g: (g.fmr.boot_high - g.fmr.boot_low) / max(g.fmr.ci_high - g.fmr.ci_low, 1e-12))
    print(f"at {p.name}: Max/GeoMean FMR {p.differentials.get('fmr_max_geomean', float('nan')):.2f}; "
          f"{widest.group}: FMR {widest.fmr.rate:.2e}, Wilson {widest.fmr.ci_low:.2e}..{widest.fmr.ci_high:.2e}, "
          f"subject bootstrap {widest.fmr.boot_low:.2e}..{widest.fmr.boot_high:.2e}")


if __name__ == "__main__":
    main()
