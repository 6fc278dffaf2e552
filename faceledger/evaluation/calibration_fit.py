"""Fitting the calibration file from real non-mated comparisons, and validating it on held-out ones.

Images (not pairs) are split in two by a hash of their dataset-relative name: non-mated pairs with
both images in the *fit* half make the map; pairs with both in the *held-out* half test it, so no
held-out pair shares an image with a fitted one. Sources: every pair of distinct FairFace images
(pre-aligned chips; FairFace has no identities, so all pairs are non-mated) and every pair of
LFW images of different people. Same data in, byte-identical file out: scores are rounded to
float32, knots to fixed digits, JSON keys sorted.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from faceledger.evaluation.audit import wilson
from faceledger.evaluation.datasets import LFW, FairFace, read_manifest
from faceledger.scoring.calibration import FORMAT, Calibration, for_model
from faceledger.scoring.normalisation import CLUSTERS, Normaliser, kmeans

#: FMR levels per decade at which knots are read off the data.
KNOTS_PER_DECADE = 10
#: A rate is read from data while this many false matches back it; beyond, the tail model.
RESOLVING_ERRORS = 100
#: The Pareto tail is fitted to the scores above the threshold for this FMR.
TAIL_FMR = 1e-3
#: A cohort centroid must not match one or two people's images at this false match rate.
MATCH_FMR = 1e-4
#: Look-alike impostors: pairs within one of this many k-means clusters of the fit half.
LOOKALIKE_CLUSTERS = 32


@dataclass
class Source:
    """Templates of one dataset: names (dataset-relative, for the split), identities (None: all
    distinct), groups (labels for the per-group validation, or None)."""

    name: str
    names: list[str]
    vectors: np.ndarray
    identities: list[str] | None = None
    groups: list[str] | None = None


def dataset_sources(settings, fairface_images: int | None, lfw_images: int | None, templates) -> list[Source]:
    """FairFace (prealigned, grouped by its annotation) and LFW (by person) as fitting sources.
    ``templates(title, paths, **acquire_kwargs)`` -> {path: Acquired}; faces not acquired are left out."""
    ff = FairFace.locate(settings)
    records = ff.records()[:fairface_images]
    got = templates("FairFace templates", [r.path for r in records], prealigned=True)
    keep = [r for r in records if got[r.path].vector is not None]
    sources = [Source("fairface", [r.path.relative_to(ff.root).as_posix() for r in keep],
                      np.stack([got[r.path].vector for r in keep]).astype(np.float32), None,
                      [f"{r.race} {r.gender}" for r in keep])]
    lfw = LFW.locate(settings)
    images = [(n, p) for n, ps in lfw.people().items() for p in ps][:lfw_images]
    got = templates("LFW templates", [p for _, p in images], expected=LFW.expected_face)
    images = [(n, p) for n, p in images if got[p].vector is not None]
    sources.append(Source("lfw", [p.relative_to(lfw.root).as_posix() for _, p in images],
                          np.stack([got[p].vector for _, p in images]).astype(np.float32), [n for n, _ in images]))
    return sources


def manifest_sources(manifest, templates) -> list[Source]:
    """A user's own labelled images as one fitting source: a CSV with ``path`` (relative to the
    manifest's folder, or absolute), ``group`` and ``subject`` (the split and the mated pairs need
    it); ``templates`` as for dataset_sources."""
    from faceledger.errors import DatasetError

    items = read_manifest(manifest, subject_required=True)
    got = templates("manifest templates", [p for p, _, _ in items])
    keep = [(p, s, g) for p, s, g in items if got[p].vector is not None]
    if len(keep) < 2:
        raise DatasetError(f"{manifest}: fewer than two images with a face")
    return [Source("manifest", [p.as_posix() for p, _, _ in keep],
                   np.stack([got[p].vector for p, _, _ in keep]).astype(np.float32),
                   [s for _, s, _ in keep], [g for _, _, g in keep])]


def in_fit_half(key: str) -> bool:
    """Whether a person (or, where a dataset has no identities, an image) is in the fit half."""
    return hashlib.sha256(f"faceledger-calibration-split/{key}".encode()).digest()[0] % 2 == 0


def fit_half(src: Source) -> np.ndarray:
    """The split is by person: every image of one person falls on one side, so the held-out half
    measures people the calibration and the cohort never saw. Without identities (FairFace) each
    image is its own subject."""
    keys = src.identities if src.identities is not None else src.names
    return np.array([in_fit_half(k) for k in keys])


def _pair_scores(v: np.ndarray, ident: np.ndarray | None, group: np.ndarray | None = None, block: int = 1024,
                 normaliser: Normaliser | None = None, lookalike: np.ndarray | None = None):
    """Scores of every non-mated pair among ``v`` (upper triangle), with both sides' groups:
    cosines, or normalised cosines; with ``lookalike`` (a cluster per template), only pairs of
    one cluster."""
    scores, ga, gb = [], [], []
    stats = normaliser.stats(v) if normaliser is not None else None
    for start in range(0, len(v), block):
        rows = v[start : start + block]
        sims = rows @ v.T
        i, j = np.nonzero(np.triu(np.ones((len(rows), len(v)), bool), k=start + 1))
        if ident is not None:
            keep = ident[start + i] != ident[j]
            i, j = i[keep], j[keep]
        if lookalike is not None:
            keep = lookalike[start + i] == lookalike[j]
            i, j = i[keep], j[keep]
        s = sims[i, j]
        if stats is not None:
            s = normaliser.normalise(s, stats.take(start + i), stats.take(j))
        scores.append(s.astype(np.float32))
        if group is not None:
            ga.append(group[start + i])
            gb.append(group[j])
    out = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    if group is None:
        return out, None, None
    return out, np.concatenate(ga), np.concatenate(gb)


def _g(x: float) -> float:
    """Seven significant digits: stable across runs, ample for a score or a rate."""
    return float(f"{x:.7g}")


def pwm_gpd(excess: np.ndarray) -> tuple[float, float]:
    """Generalised Pareto shape xi and scale sigma by probability-weighted moments (Hosking &
    Wallis 1987): a0 = mean, a1 = mean((n - j) / (n - 1) * y_(j)); xi = 2 - a0 / (a0 - 2 a1)."""
    y = np.sort(excess.astype(np.float64))
    n = len(y)
    a0 = y.mean()
    a1 = float(np.sum((n - np.arange(1, n + 1)) / (n - 1) * y) / n)
    k = a0 / (a0 - 2 * a1) - 2.0  # Hosking's k = -xi
    sigma = 2.0 * a0 * a1 / (a0 - 2 * a1)
    return -k, sigma


def fit_normaliser(sources: list[Source], model: str, pair_weight: float = 0.0, directory=None) -> Normaliser:
    """The score normaliser, from the fit half's templates and identities (never groups);
    ``pair_weight`` > 0: partly pair-level locations, without offsets (as measured in
    docs/fairness.md's second round). ``directory``: the model's folder, where its plain
    calibration (fitted first) lives when none ships."""
    from faceledger.scoring.normalisation import fit as fit_norm

    vectors, identities = [], []
    for src in sources:
        half = fit_half(src)
        vectors.append(src.vectors[half])
        ids = src.identities if src.identities is not None else [f"{src.name}/{n}" for n in src.names]
        identities += [f"{src.name}/{x}" for x, h in zip(ids, half) if h]
    # the plain calibration's FMR 1e-4 score: where the engine calls two faces one person
    match = for_model(model, directory=directory).threshold_for_fmr(MATCH_FMR)
    return fit_norm(model, np.concatenate(vectors), np.array(identities), match_cosine=match, pair_weight=pair_weight,
                    clusters=0 if pair_weight else CLUSTERS)  # the pair-level variant has no offsets


def fit(sources: list[Source], model: str, progress: Callable[[str], None] = lambda _: None,
        normaliser: Normaliser | None = None, lookalike: int = 0) -> tuple[dict, dict]:
    """The calibration file's content, and the held-out scores (for validation) by source.
    ``normaliser``: calibrate its normalised scores; ``lookalike`` K > 0: fit on look-alike
    impostors only (pairs within one of K k-means clusters of the fit half: the demographically
    matched impostors of ISO/IEC 19795-10, found by appearance, without labels)."""
    fitted, held = [], {}
    counts = {}
    halves = [fit_half(src) for src in sources]
    centres = None
    if lookalike:
        centres = kmeans(np.concatenate([src.vectors[h] for src, h in zip(sources, halves)]), lookalike,
                         iterations=30, seed=5)
    for src, half in zip(sources, halves):
        ident = np.asarray(src.identities) if src.identities is not None else None
        group = None
        if src.groups is not None:  # integer codes: tens of millions of pairs carry them
            labels = sorted(set(src.groups))
            group = np.array([labels.index(g) for g in src.groups], np.int16)
        progress(f"{src.name}: scoring fit pairs")
        fv = src.vectors[half]
        f_scores, _, _ = _pair_scores(fv, ident[half] if ident is not None else None, normaliser=normaliser,
                                      lookalike=None if centres is None else (fv @ centres.T).argmax(1))
        progress(f"{src.name}: scoring held-out pairs")
        h = _pair_scores(src.vectors[~half], ident[~half] if ident is not None else None,
                         group[~half] if group is not None else None, normaliser=normaliser)
        fitted.append(f_scores)
        held[src.name] = (*h, labels if src.groups is not None else None)
        counts[src.name] = {"images": len(src.names), "fit_images": int(half.sum()), "fit_pairs": len(f_scores),
                            "held_out_pairs": len(h[0])}
    progress("fitting")
    desc = np.sort(np.concatenate(fitted))[::-1]
    n = len(desc)
    floor = RESOLVING_ERRORS / n
    knots: dict[float, float] = {}
    steps = int(math.floor(-math.log10(floor) * KNOTS_PER_DECADE))
    for k in range(steps + 1):
        m = max(1, int(round(10 ** (-k / KNOTS_PER_DECADE) * n)))
        score = _g(float(desc[m - 1]))
        if score not in knots:  # ties: keep the first (largest) rate for a score
            knots[score] = _g(math.log10(m / n))
    scores = sorted(knots)
    log_fmr = [knots[s] for s in scores]
    for i in range(1, len(log_fmr)):  # strictly decreasing, whatever rounding did
        log_fmr[i] = min(log_fmr[i], _g(log_fmr[i - 1] - 1e-6))
    m = int(round(TAIL_FMR * n))
    origin = float(desc[m - 1])
    xi, sigma = pwm_gpd(desc[: m - 1] - origin)
    content = {
        "format": FORMAT,
        "model": model,
        "score": "cosine of unit templates" if normaliser is None else
                 f"cohort-normalised cosine (faceledger-normaliser {normaliser.digest})",
        "similarity": "100 * min(1, -log10(FMR) / 7)",
        "fit": {"sources": counts, "nonmated_pairs": n, "split": "people by sha256 of their identity (images where a dataset has none)",
                **({"impostors": f"look-alike: pairs within one of {lookalike} k-means clusters of the fit half"}
                   if lookalike else {})},
        **({"normaliser": normaliser.digest} if normaliser is not None else {}),
        "data_resolves_to": _g(floor),
        "empirical": {
            "note": f"knots read off the fitted non-mated scores, FMR 1 down to {RESOLVING_ERRORS} false matches",
            "scores": scores,
            "log10_fmr": log_fmr,
        },
        "tail": {
            "note": "generalised Pareto fitted by probability-weighted moments to the scores above the FMR 1e-3 "
                    "threshold; used above the last knot, scaled to meet it: rates there are a model, not data",
            "origin": _g(origin),
            "shape": _g(xi),
            "scale": _g(sigma),
            "exceedances": m - 1,
        },
    }
    return content, held


def _observed(scores: np.ndarray, threshold: float, target: float) -> dict:
    """One validation row: how many of ``scores`` reach the threshold predicted for ``target``."""
    n = len(scores)
    k = int(np.count_nonzero(scores >= threshold))
    lo, hi = wilson(k, n)
    return {"target": target, "false_matches": k, "observed": _g(k / max(1, n)), "ci95": [_g(lo), _g(hi)],
            "ratio": _g(k / max(1, n) / target)}


def validate(cal: Calibration, held: dict, targets=(1e-2, 1e-3, 1e-4, 1e-5, 1e-6), group_targets=(1e-3, 1e-4)) -> dict:
    """Observed FMR on held-out pairs at the thresholds predicted for each target, with Wilson
    intervals: over all held-out pairs, by source, and per group (within-group pairs) where the
    source has groups."""
    thresholds = {t: cal.threshold_for_fmr(t) for t in (*targets, *group_targets)}
    all_scores = np.concatenate([h[0] for h in held.values()])
    out = {"held_out_pairs": {name: len(h[0]) for name, h in held.items()}, "groups": {}, "by_source": {},
           "overall": [{**_observed(all_scores, thresholds[t], t), "threshold": _g(thresholds[t]),
                        "resolved": len(all_scores) * t >= 30} for t in targets]}
    for name, (scores, ga, gb, labels) in held.items():
        out["by_source"][name] = [{**_observed(scores, thresholds[t], t), "pairs": len(scores)} for t in targets]
        if ga is None:
            continue
        for code, g in enumerate(labels):
            within = scores[(ga == code) & (gb == code)]
            out["groups"][f"{name}: {g}"] = [{**_observed(within, thresholds[t], t), "pairs": len(within)}
                                             for t in group_targets]
    return out


def dumps(content: dict) -> str:
    return json.dumps(content, indent=1, sort_keys=True) + "\n"
