"""Label-free score normalisations against the demographic differential (issue 9's first measurements).

Split (the calibration's): FairFace and LFW images by SHA-256 of their dataset-relative name; the
fit half builds every normaliser (no demographic label is read there), the held-out FairFace half
(about 6,100 images, 18.6M pairs) measures it. For each method, a global threshold is set for a
target FMR over all held-out pairs and each annotated race x gender group's within-group FMR is
read at it; printed: NIST Max/GeoMean and max/min over the 14 groups. The raw cosine is the
baseline, in the same run.

Methods: adaptive symmetric normalisation (ASN) against a cohort of k-means centroids of the fit
half (no individual's template), ((s - mu_a) / sd_a + (s - mu_b) / sd_b) / 2 with mu, sd over each
template's top-k cohort similarities; and ASN followed by per-cluster offsets (K coarse clusters;
each offset moves its cluster's within-cluster FMR 1e-3 threshold onto the global one).

    .venv/bin/python bench/fairness_normalisation.py
"""

from __future__ import annotations

import time

import faiss
import numpy as np

from faceledger import Settings
from faceledger.scoring.calibration import threshold_for_fmr as threshold
from faceledger.evaluation.calibration_fit import in_fit_half
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.evaluation.protocols import acquire
from faceledger.scoring.normalisation import pair_scores


def load(settings: Settings):
    ff = FairFace.locate(settings)
    recs = ff.records()
    got = acquire([r.path for r in recs], settings, prealigned=True)
    ffv = np.stack([got[r.path].vector for r in recs]).astype(np.float32)
    groups = np.array([f"{r.race} {r.gender}" for r in recs])
    ff_fit = np.array([in_fit_half(r.path.relative_to(ff.root).as_posix()) for r in recs])
    lfw = LFW.locate(settings)
    imgs = [(n, p) for n, ps in lfw.people().items() for p in ps]
    got = acquire([p for _, p in imgs], settings, expected=LFW.expected_face)
    imgs = [(n, p) for n, p in imgs if got[p].vector is not None]
    lv = np.stack([got[p].vector for _, p in imgs]).astype(np.float32)
    l_fit = np.array([in_fit_half(n) for n, _ in imgs])  # by person, as calibration_fit splits
    fit = np.concatenate([ffv[ff_fit], lv[l_fit]])
    ident = np.concatenate([np.array([f"ff{i}" for i in range(int(ff_fit.sum()))]),
                            np.array([n for n, _ in imgs])[l_fit]])
    return fit, ident, ffv[~ff_fit], groups[~ff_fit]


def main() -> None:
    t0 = time.perf_counter()
    fit, ident, held, held_groups = load(Settings.load())
    names = sorted(set(held_groups))
    codes = np.array([names.index(g) for g in held_groups])
    iu, ju = np.triu_indices(len(held), 1)
    within = np.where(codes[iu] == codes[ju], codes[iu], -1)
    base = pair_scores(held, iu, ju)
    fi, fj = np.triu_indices(len(fit), 1)
    keep = ident[fi] != ident[fj]
    fi, fj = fi[keep], fj[keep]
    fit_scores = pair_scores(fit, fi, fj)
    print(f"fit: {len(fit):,} images; held-out FairFace: {len(held):,} images, {len(iu):,} pairs "
          f"({time.perf_counter() - t0:.0f} s)")

    def report(name: str, score: np.ndarray) -> None:
        cells = []
        for target in (1e-3, 1e-4):
            t = threshold(score, target)
            rates = np.array([np.mean(score[within == c] >= t) for c in range(len(names))])
            geo = np.exp(np.log(np.maximum(rates, 1e-12)).mean())
            cells.append(f"@{target:g}: Max/GeoMean {rates.max() / geo:5.2f}, max/min {rates.max() / max(rates.min(), 1e-12):6.2f}")
        print(f"{name:34s} " + "   ".join(cells), flush=True)

    report("raw cosine (baseline)", base)
    for cohort, topk in ((1000, 20), (2000, 50), (3000, 30)):
        km = faiss.Kmeans(128, cohort, niter=20, seed=1, verbose=False)
        km.train(fit)
        centroids = km.centroids / np.linalg.norm(km.centroids, axis=1, keepdims=True)

        def stats(a):
            top = -np.sort(-(a @ centroids.T), axis=1)[:, :topk]
            return top.mean(1), top.std(1)

        mh, sh = stats(held)
        mf, sf = stats(fit)
        asn_held = ((base - mh[iu]) / sh[iu] + (base - mh[ju]) / sh[ju]) / 2
        asn_fit = ((fit_scores - mf[fi]) / sf[fi] + (fit_scores - mf[fj]) / sf[fj]) / 2
        report(f"ASN, {cohort} centroids, top {topk}", asn_held)
        for k in (8, 16):
            km2 = faiss.Kmeans(128, k, niter=30, seed=2, verbose=False)
            km2.train(fit)
            c2 = km2.centroids / np.linalg.norm(km2.centroids, axis=1, keepdims=True)
            cf, ch = (fit @ c2.T).argmax(1), (held @ c2.T).argmax(1)
            global_t = threshold(asn_fit, 1e-3)
            delta = np.zeros(k)
            for c in range(k):
                m = (cf[fi] == c) & (cf[fj] == c)
                if m.sum() > 20_000:
                    delta[c] = threshold(asn_fit[m], 1e-3) - global_t
            report(f"  + offsets, {k} clusters", asn_held - (delta[ch[iu]] + delta[ch[ju]]) / 2)
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
