"""Issue 9's checks for the shipped normaliser (faceledger/normalisation.py), raw cosine as the
baseline in the same run. Labels are read here, to measure, and never by the normaliser.

Split: the calibration's (images by SHA-256 of their dataset-relative name).
1. FairFace held-out half, normaliser fitted on the fit half of FairFace + LFW: per-group
   calibration (each group's within-group FMR at the thresholds the fit half predicts for 1e-3
   and 1e-4, as a ratio to the prediction) and the differential at one global threshold
   (Max/GeoMean, max/min over 14 race x gender groups), with each group's false match count.
2. LFW, normaliser fitted on FairFace's fit half only (so LFW is outside its data): View 2
   10-fold accuracy, TAR at FMR 1e-3 over every mated and non-mated pair, and women's and men's
   FMR and FNMR at the global FMR 1e-3 threshold (Afifi & Abdelhamed's gender labels).
3. FairFace again, predicting from look-alike impostors found without labels: fit-half pairs in
   the same of K k-means clusters (--matched).

    .venv/bin/python bench/fairness_checks.py [--cohort 3000] [--top-k 30] [--clusters 8] [--matched 32] [--lfw-only]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from faceledger import Settings
from faceledger.audit_images import _lfw_gender
from faceledger.calibration_fit import in_fit_half
from faceledger.datasets import LFW, FairFace
from faceledger.evaluation import acquire, ten_fold
from faceledger.normalisation import fit


def rank_threshold(scores: np.ndarray, fmr: float) -> float:
    d = np.sort(scores)[::-1]
    return float(d[min(len(d) - 1, int(fmr * len(d)))])


def pair_scores(v, i, j, norm=None, stats=None):
    out = np.empty(len(i), np.float32)
    for s in range(0, len(i), 4_000_000):
        a, b = i[s : s + 4_000_000], j[s : s + 4_000_000]
        c = np.einsum("ij,ij->i", v[a], v[b])
        if norm is not None:
            mu, sd, cl = stats
            c = norm.normalise(c, (mu[a], sd[a], cl[a]), (mu[b], sd[b], cl[b]))
        out[s : s + len(a)] = c
    return out


def non_mated(ident: np.ndarray):
    i, j = np.triu_indices(len(ident), 1)
    keep = ident[i] != ident[j]
    return i[keep], j[keep]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cohort", type=int, default=3000)
    p.add_argument("--top-k", type=int, default=30)
    p.add_argument("--clusters", type=int, default=8)
    p.add_argument("--lfw-only", action="store_true", help="Only part 2.")
    p.add_argument("--matched", default="32", help="Also predict from the fit half's impostor pairs within one of "
                   "K label-free clusters (comma-separated K; empty: skip).")
    args = p.parse_args()
    t0 = time.perf_counter()
    settings = Settings.load()
    ff = FairFace.locate(settings)
    recs = ff.records()
    got = acquire([r.path for r in recs], settings, prealigned=True)
    ffv = np.stack([got[r.path].vector for r in recs]).astype(np.float32)
    ff_fit = np.array([in_fit_half(r.path.relative_to(ff.root).as_posix()) for r in recs])
    groups = np.array([f"{r.race} {r.gender}" for r in recs])  # measurement only
    lfw = LFW.locate(settings)
    imgs = [(n, path) for n, ps in sorted(lfw.people().items()) for path in ps]
    got = acquire([path for _, path in imgs], settings, expected=LFW.expected_face)
    imgs = [(n, path) for n, path in imgs if got[path].vector is not None]
    lv = np.stack([got[path].vector for _, path in imgs]).astype(np.float32)
    lident = np.array([n for n, _ in imgs])
    l_fit = np.array([in_fit_half(path.relative_to(lfw.root).as_posix()) for _, path in imgs])
    ff_ids = np.array([f"ff{k}" for k in range(len(recs))])  # FairFace: no identities, all distinct
    print(f"templates: FairFace {len(recs):,} (fit {ff_fit.sum():,}), LFW {len(imgs):,} ({time.perf_counter() - t0:.0f} s)",
          flush=True)

    # --- 1. FairFace held-out -----------------------------------------------------------------------
    if not args.lfw_only:
        fairface_part(args, ffv, ff_fit, groups, ff_ids, lv, l_fit, lident, t0)
    lfw_part(args, lfw, imgs, lv, lident, ffv, ff_fit, ff_ids)
    print(f"\n{time.perf_counter() - t0:.0f} s")


def fairface_part(args, ffv, ff_fit, groups, ff_ids, lv, l_fit, lident, t0) -> None:
    fit_v = np.concatenate([ffv[ff_fit], lv[l_fit]])
    fit_id = np.concatenate([ff_ids[ff_fit], lident[l_fit]])
    norm = fit("bench", fit_v, fit_id, cohort=args.cohort, top_k=args.top_k, clusters=args.clusters)
    print(f"normaliser: {len(norm.centroids)} centroids kept of {args.cohort}, offsets "
          f"{np.round(norm.offsets, 3).tolist()} ({time.perf_counter() - t0:.0f} s)", flush=True)
    fi, fj = non_mated(fit_id)
    held, g = ffv[~ff_fit], groups[~ff_fit]
    hi, hj = np.triu_indices(len(held), 1)
    names = sorted(set(g))
    codes = np.array([names.index(x) for x in g])
    within = np.where(codes[hi] == codes[hj], codes[hi], -1)
    counts = np.bincount(within[within >= 0], minlength=len(names))
    for label, n, st_fit, st_held in (("raw cosine", None, None, None),
                                      ("normalised", norm, norm.stats(fit_v), norm.stats(held))):
        fit_scores = pair_scores(fit_v, fi, fj, n, st_fit)
        held_scores = pair_scores(held, hi, hj, n, st_held)
        print(f"\n== FairFace held-out ({len(held):,} images, {len(hi):,} pairs): {label}")
        for target in (1e-3, 1e-4):
            predicted = rank_threshold(fit_scores, target)  # what a calibration fitted on the fit half says
            global_t = rank_threshold(held_scores, target)
            errs_p = np.bincount(within[(within >= 0) & (held_scores > predicted)], minlength=len(names))
            errs_g = np.bincount(within[(within >= 0) & (held_scores > global_t)], minlength=len(names))
            ratio = errs_p / counts / target
            rates = errs_g / counts
            geo = np.exp(np.log(np.maximum(rates, 1e-12)).mean())
            print(f"  @{target:g}: observed/predicted per group {ratio.min():.2f}..{ratio.max():.2f} "
                  f"(within 2x: {int(((ratio >= 0.5) & (ratio <= 2)).sum())}/14); at the global threshold "
                  f"Max/GeoMean {rates.max() / geo:.2f}, max/min {rates.max() / max(rates.min(), 1e-12):.2f}; "
                  f"false matches per group {errs_g.min()}..{errs_g.max()}")
            for k, name in enumerate(names):
                print(f"     {name:28s} pairs {counts[k]:>8,}  obs/pred {ratio[k]:5.2f}  FMR@global {rates[k]:.2e}")
    print("\n== FairFace held-out, predictions from look-alike impostors")
    matched_part(args, norm, fit_v, fi, fj, held, hi, hj, within, counts, names)



def matched_part(args, norm, fit_v, fi, fj, held, hi, hj, within, counts, names) -> None:
    """Predictions from look-alike impostors without labels: fit-half pairs within one of K
    k-means clusters (the demographic match ISO/IEC 19795-10 asks of impostors, by appearance)."""
    from faceledger.normalisation import kmeans

    for k in [int(x) for x in args.matched.split(",") if x]:
        centres = kmeans(fit_v, k, iterations=30, seed=5)
        same = (fit_v @ centres.T).argmax(1)
        same = same[fi] == same[fj]
        for label, n in (("raw", None), ("normalised", norm)):
            fs = pair_scores(fit_v, fi, fj, n, n.stats(fit_v) if n else None)[same]
            hs = pair_scores(held, hi, hj, n, n.stats(held) if n else None)
            cells = []
            for target in (1e-3, 1e-4):
                errs = np.bincount(within[(within >= 0) & (hs > rank_threshold(fs, target))], minlength=len(names))
                ratio = errs / counts / target
                cells.append(f"@{target:g}: observed/predicted {ratio.min():.2f}..{ratio.max():.2f} "
                             f"(within 2x: {int(((ratio >= 0.5) & (ratio <= 2)).sum())}/14)")
            print(f"  predicted from same-cluster impostors, K={k}, {label}: " + "; ".join(cells), flush=True)


def lfw_part(args, lfw, imgs, lv, lident, ffv, ff_fit, ff_ids) -> None:
    """LFW, normaliser fitted on FairFace only."""
    norm_ff = fit("bench", ffv[ff_fit], ff_ids[ff_fit], cohort=args.cohort, top_k=args.top_k, clusters=args.clusters)
    index = {path: k for k, (_, path) in enumerate(imgs)}
    gender_of = _lfw_gender(lfw)
    sexes = ("female", "male")
    gender = np.array([sexes.index(gender_of[path.name]) if path.name in gender_of else -1 for _, path in imgs])
    person = np.unique(lident, return_inverse=True)[1]  # integer codes: 87M pairs of strings would not fit
    li, lj = np.triu_indices(len(lv), 1)
    mated = person[li] == person[lj]
    for label, n in (("raw cosine", None), ("normalised (fitted on FairFace only)", norm_ff)):
        stats = n.stats(lv) if n is not None else None
        scores = pair_scores(lv, li, lj, n, stats)
        t = rank_threshold(scores[~mated], 1e-3)
        tar = float(np.mean(scores[mated] > t))
        folds = []
        for fold in lfw.pairs():
            rows = []
            for pair in fold:
                a, b = index.get(pair.a), index.get(pair.b)
                if a is None or b is None:
                    rows.append((None, pair.mated))
                    continue
                c = float(lv[a] @ lv[b])
                if n is not None:
                    c = float(n.normalise(np.array([c]), tuple(x[[a]] for x in stats), tuple(x[[b]] for x in stats))[0])
                rows.append((c, pair.mated))
            folds.append(rows)
        acc = np.array([f.accuracy for f in ten_fold(folds)])
        print(f"\n== LFW: {label}: 10-fold {100 * acc.mean():.2f}% +- {100 * acc.std(ddof=1):.2f}; "
              f"TAR at FMR 1e-3 {100 * tar:.2f}% ({mated.sum():,} mated, {(~mated).sum():,} non-mated pairs)")
        for code, sex in enumerate(sexes):
            same = (gender[li] == code) & (gender[lj] == code)
            fmr = float(np.mean(scores[same & ~mated] > t))
            fnmr = float(np.mean(scores[same & mated] <= t))
            print(f"   {sex:6s}: FMR {fmr:.2e} ({int((same & ~mated).sum()):,} pairs), FNMR {100 * fnmr:.2f}% "
                  f"({int((same & mated).sum()):,} pairs)")


if __name__ == "__main__":
    main()
