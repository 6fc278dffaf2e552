"""Demographic audit of any system's comparison scores (ISO/IEC 19795-10, NIST FRVT style).

Input: one row per comparison with a score, whether the pair is mated (same person), the
demographic group of each side (labels from the dataset, never inferred), and optionally subject
ids. Output: per-group false match and false non-match rates at shared thresholds, with Wilson
intervals and a subject-level bootstrap, flagged where the data cannot resolve the rate, and the
summary differentials the literature uses. docs/audit.md gives every formula and reference.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InvalidParameterError

Z95 = 1.959963984540054


@dataclass
class Scores:
    """Comparisons as arrays; scores are similarities (higher = more alike). Groups are integer
    codes into ``names`` (tens of millions of pairs fit in memory that way)."""

    score: np.ndarray
    mated: np.ndarray  # bool
    group_a: np.ndarray  # int codes
    group_b: np.ndarray  # int codes
    names: list[str]
    subject_a: np.ndarray | None = None  # int codes
    subject_b: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.score)
        for name in ("mated", "group_a", "group_b"):
            if len(getattr(self, name)) != n:
                raise InvalidParameterError(f"column {name} has {len(getattr(self, name))} rows, score has {n}")
        if not np.all(np.isfinite(self.score)):
            raise InvalidParameterError("scores must be finite numbers")

    @classmethod
    def from_labels(cls, score, mated, group_a, group_b=None, subject_a=None, subject_b=None) -> "Scores":
        """From label arrays (strings): one group per pair when ``group_b`` is None."""
        group_b = group_a if group_b is None else group_b
        n = len(group_a)
        names, codes = np.unique(np.concatenate([np.asarray(group_a), np.asarray(group_b)]), return_inverse=True)
        subjects = (None, None)
        if subject_a is not None:
            _, sub = np.unique(np.concatenate([np.asarray(subject_a), np.asarray(subject_b)]), return_inverse=True)
            subjects = (sub[:n], sub[n:])
        return cls(np.asarray(score, float), np.asarray(mated, bool), codes[:n], codes[n:], [str(x) for x in names], *subjects)

    def code(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise InvalidParameterError(f"no group {name!r}; groups: {', '.join(self.names)}") from None


def read_scores(
    path: Path,
    *,
    score: str = "score",
    mated: str = "mated",
    group: str = "group",
    direction: str = "similarity",
) -> Scores:
    """A CSV with columns score, mated, and either group or group_a/group_b; subject_a/subject_b
    optional. ``direction='distance'`` negates scores so that higher always means more alike."""
    if direction not in ("similarity", "distance"):
        raise InvalidParameterError("direction must be similarity or distance")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or ())
        rows = list(reader)
    if not rows:
        raise InvalidParameterError(f"{path}: no rows")
    for needed in (score, mated):
        if needed not in cols:
            raise InvalidParameterError(f"{path}: no column {needed!r} (columns: {', '.join(sorted(cols))})")
    if group in cols:
        ga = gb = [r[group] for r in rows]
    elif {f"{group}_a", f"{group}_b"} <= cols:
        ga, gb = [r[f"{group}_a"] for r in rows], [r[f"{group}_b"] for r in rows]
    else:
        raise InvalidParameterError(f"{path}: needs a column {group!r}, or {group}_a and {group}_b")
    try:
        s = np.array([float(r[score]) for r in rows])
    except ValueError as exc:
        raise InvalidParameterError(f"{path}: a score is not a number ({exc})") from None
    truth = {"1", "true", "yes", "mated", "genuine"}
    m = np.array([r[mated].strip().lower() in truth for r in rows])
    subjects = (None, None)
    if {"subject_a", "subject_b"} <= cols:
        subjects = ([r["subject_a"] for r in rows], [r["subject_b"] for r in rows])
    return Scores.from_labels(-s if direction == "distance" else s, m, ga, gb, *subjects)


# --- rates and intervals ----------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (Wilson 1927); (nan, nan) when n = 0."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def threshold_for_fmr(nonmated: np.ndarray, target: float) -> float:
    """The lowest threshold t (a match is score >= t) whose false match rate is at most target."""
    if len(nonmated) == 0:
        raise InvalidParameterError("no non-mated comparisons: a false match rate cannot be set")
    s = np.sort(nonmated)[::-1]
    allowed = int(math.floor(target * len(s)))  # false matches we may accept
    if allowed >= len(s):
        return float(s[-1])
    # every score above s[allowed] may match; ties at s[allowed] must not, so step just above it
    return float(np.nextafter(s[allowed], np.inf))


@dataclass
class Rate:
    errors: int
    trials: int
    rate: float
    ci_low: float
    ci_high: float
    resolved: bool  # enough trials for the rate asked about (about 30 / rate)
    boot_low: float = math.nan
    boot_high: float = math.nan


def _rate(errors: int, trials: int, resolvable_at: float | None) -> Rate:
    """``resolvable_at``: the rate the trials must be able to resolve (about 30 / rate of them);
    None: resolved once 30 errors are seen (Doddington's rule of 30), as for FNMR."""
    lo, hi = wilson(errors, trials)
    rate = errors / trials if trials else math.nan
    resolved = trials >= 30 / resolvable_at if resolvable_at else (errors >= 30 or trials >= 3_000)
    return Rate(errors, trials, rate, lo, hi, resolved)


@dataclass
class GroupRates:
    group: str
    fmr: Rate  # non-mated pairs within the group (both sides in it)
    fnmr: Rate  # mated pairs of the group
    cross_fmr: Rate  # non-mated pairs with one side in the group and the other not


@dataclass
class OperatingPoint:
    name: str  # e.g. "global FMR 1e-3" or "reference White FMR 1e-3"
    threshold: float
    target_fmr: float
    groups: list[GroupRates]
    differentials: dict[str, float] = field(default_factory=dict)


def rates_at(s: Scores, threshold: float, target: float, name: str) -> OperatingPoint:
    match = s.score >= threshold
    same = s.group_a == s.group_b
    out = []
    for code, g in enumerate(s.names):
        in_a, in_b = s.group_a == code, s.group_b == code
        within = same & in_a
        nm, m = within & ~s.mated, within & s.mated
        cross = ~same & (in_a | in_b) & ~s.mated
        out.append(GroupRates(
            g,
            _rate(int(np.count_nonzero(match & nm)), int(np.count_nonzero(nm)), target),
            _rate(int(np.count_nonzero(~match & m)), int(np.count_nonzero(m)), None),
            _rate(int(np.count_nonzero(match & cross)), int(np.count_nonzero(cross)), target),
        ))
    point = OperatingPoint(name, threshold, target, out)
    point.differentials = differentials(point)
    return point


# --- summary differentials ----------------------------------------------------------------------------


def _gini(x: np.ndarray) -> float:
    """Gini coefficient with the small-sample correction n/(n-1) used by GARBE."""
    n = len(x)
    if n < 2 or x.mean() == 0:
        return math.nan
    return float(n / (n - 1) * np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean()))


def differentials(point: OperatingPoint, alpha: float = 0.5) -> dict[str, float]:
    """Max/min, NIST Max/GeoMean, Inequity Rate, GARBE, FDR, over groups whose rates are resolved."""
    fmr = np.array([g.fmr.rate for g in point.groups if g.fmr.resolved and g.fmr.trials])
    fnmr = np.array([g.fnmr.rate for g in point.groups if g.fnmr.resolved and g.fnmr.trials])
    out: dict[str, float] = {}
    for name, x in (("fmr", fmr), ("fnmr", fnmr)):
        if len(x) < 2:
            continue
        positive = x[x > 0]
        out[f"{name}_max_min_ratio"] = float(x.max() / x.min()) if x.min() > 0 else math.inf
        out[f"{name}_max_geomean"] = (
            float(x.max() / math.exp(np.log(positive).mean())) if len(positive) == len(x) else math.inf
        )
        out[f"{name}_max_abs_difference"] = float(x.max() - x.min())
        out[f"{name}_gini"] = _gini(x)
    if "fmr_max_min_ratio" in out and "fnmr_max_min_ratio" in out:
        a, b = out["fmr_max_min_ratio"], out["fnmr_max_min_ratio"]
        out["inequity_rate"] = a**alpha * b ** (1 - alpha) if math.isfinite(a) and math.isfinite(b) else math.inf
        out["garbe"] = alpha * out["fmr_gini"] + (1 - alpha) * out["fnmr_gini"]
        out["fdr"] = 1 - (alpha * out["fmr_max_abs_difference"] + (1 - alpha) * out["fnmr_max_abs_difference"])
    return out


# --- subject-level bootstrap -------------------------------------------------------------------------


def bootstrap(s: Scores, point: OperatingPoint, resamples: int = 200, seed: int = 0, chunk: int = 100_000) -> None:
    """Percentile intervals for every group's FMR and FNMR, resampling subjects (pairs share
    subjects, so they are not independent). A pair's weight in a resample is the product of its
    two subjects' multiplicities. Without subject ids, pairs are resampled (optimistic)."""
    rng = np.random.default_rng(seed)
    n = len(s.score)
    if s.subject_a is not None:
        ia, ib = s.subject_a, s.subject_b
        n_subjects = int(max(ia.max(), ib.max())) + 1
        counts = rng.multinomial(n_subjects, np.full(n_subjects, 1 / n_subjects), size=resamples).astype(np.float64)
    else:
        ia = ib = None
        counts = rng.multinomial(n, np.full(n, 1 / n), size=resamples).astype(np.float64)
    match = s.score >= point.threshold
    same = s.group_a == s.group_b
    for g in point.groups:
        within = same & (s.group_a == s.code(g.group))
        for rate, errors_mask, trials_mask in (
            (g.fmr, match & within & ~s.mated, within & ~s.mated),
            (g.fnmr, ~match & within & s.mated, within & s.mated),
        ):
            idx = np.flatnonzero(trials_mask)
            if not len(idx):
                continue
            err, tot = np.zeros(resamples), np.zeros(resamples)
            for start in range(0, len(idx), chunk):
                part = idx[start : start + chunk]
                w = counts[:, ia[part]] * counts[:, ib[part]] if ia is not None else counts[:, part]
                tot += w.sum(axis=1)
                err += w[:, errors_mask[part]].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                rates = np.where(tot > 0, err / tot, np.nan)
            rate.boot_low, rate.boot_high = (float(v) for v in np.nanpercentile(rates, [2.5, 97.5]))


# --- the audit -----------------------------------------------------------------------------------------


@dataclass
class Curve:
    """A group's DET curve (FMR and FNMR at shared thresholds) and score histograms."""

    group: str
    thresholds: list[float]
    fmr: list[float]
    fnmr: list[float]
    bins: list[float]
    nonmated_hist: list[int]
    mated_hist: list[int]


def curves(s: Scores, points: int = 40, bins: int = 50) -> list[Curve]:
    """Per group (within-group pairs): FMR/FNMR at thresholds spanning FMR 1e-6..1 over all
    non-mated scores, and histograms of mated and non-mated scores on shared bins."""
    nonmated = np.sort(s.score[~s.mated])
    fmr_levels = np.logspace(-6, 0, points)
    thresholds = np.unique([threshold_for_fmr(nonmated, f) for f in fmr_levels if f * len(nonmated) >= 1])
    edges = np.linspace(s.score.min(), s.score.max(), bins + 1)
    same = s.group_a == s.group_b
    out = []
    for code in np.unique(s.group_a[same]):
        g = s.names[int(code)]
        within = same & (s.group_a == code)
        nm, m = np.sort(s.score[within & ~s.mated]), np.sort(s.score[within & s.mated])
        fmr = [(len(nm) - np.searchsorted(nm, t, "left")) / len(nm) if len(nm) else math.nan for t in thresholds]
        fnmr = [np.searchsorted(m, t, "left") / len(m) if len(m) else math.nan for t in thresholds]
        out.append(Curve(g, thresholds.tolist(), [float(x) for x in fmr], [float(x) for x in fnmr], edges.tolist(),
                         np.histogram(nm, edges)[0].tolist(), np.histogram(m, edges)[0].tolist()))
    return out


@dataclass
class AuditReport:
    comparisons: int
    mated: int
    nonmated: int
    points: list[OperatingPoint]
    resamples: int
    curves: list[Curve] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def audit(
    s: Scores, *, targets: Sequence[float] = (1e-3, 1e-4), reference_group: str | None = None, resamples: int = 200,
    seed: int = 0,
) -> AuditReport:
    nonmated = s.score[~s.mated]
    points = []
    for t in targets:
        points.append(rates_at(s, threshold_for_fmr(nonmated, t), t, f"global FMR {t:g}"))
        if reference_group is not None:
            code = s.code(reference_group)
            ref = s.score[~s.mated & (s.group_a == code) & (s.group_b == code)]
            if not len(ref):
                raise InvalidParameterError(f"no non-mated pairs within the reference group {reference_group!r}")
            points.append(rates_at(s, threshold_for_fmr(ref, t), t, f"reference {reference_group} FMR {t:g}"))
    if resamples:
        for p in points:
            bootstrap(s, p, resamples, seed)
    return AuditReport(len(s.score), int(s.mated.sum()), int((~s.mated).sum()), points, resamples, curves(s))


def markdown(report: AuditReport) -> str:
    """A short summary people can read; rates the data cannot resolve are said so, not printed."""
    lines = [
        f"# Demographic audit: {report.comparisons:,} comparisons ({report.mated:,} mated, {report.nonmated:,} non-mated)",
        "",
    ]
    for p in report.points:
        lines += [f"## {p.name} (threshold {p.threshold:.6g})", "",
                  "| group | FMR (95% CI) | non-mated pairs | FNMR (95% CI) | mated pairs |", "|---|---|---|---|---|"]
        for g in p.groups:
            lines.append(f"| {g.group} | {rate_text(g.fmr)} | {g.fmr.trials:,} | {rate_text(g.fnmr)} | {g.fnmr.trials:,} |")
        if p.differentials:
            lines += ["", "Differentials: " + ", ".join(f"{k} {v:.3g}" for k, v in p.differentials.items())]
        lines.append("")
    return "\n".join(lines)


def rate_text(r: Rate, *, flag: str = "not resolved") -> str:
    """A rate with its interval, or, when the data cannot resolve it, ``flag`` and an upper bound."""
    if r.trials == 0:
        return "no pairs"
    if not r.resolved:
        return f"{flag} ({r.errors} in {r.trials:,}; at most {r.ci_high:.2g})"
    return f"{r.rate:.3g} ({r.ci_low:.2g} to {r.ci_high:.2g})"
