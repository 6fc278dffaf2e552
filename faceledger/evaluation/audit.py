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
from functools import cached_property
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from faceledger.scoring.calibration import threshold_desc as _threshold_desc
from faceledger.scoring.calibration import threshold_for_fmr
from faceledger.errors import InvalidParameterError

Z95 = 1.959963984540054


@dataclass(frozen=True)
class SubjectUnits:
    """Within-group pairs grouped into the units a rate by subject counts once: a subject (its
    mated pairs, for FNMR) or an unordered pair of subjects (their non-mated pairs, for FMR)."""

    mated: bool
    pairs: np.ndarray  # indices of the pairs
    key: np.ndarray  # per pair: its unit, an index into the arrays below
    count: np.ndarray  # per unit: its pairs
    group: np.ndarray  # per unit: the group code
    subject_a: np.ndarray  # per unit: the lower and the higher subject code (equal for a subject)
    subject_b: np.ndarray

    def shares(self, score: np.ndarray, threshold: float) -> np.ndarray:
        """Per unit, the share of its pairs in error at ``threshold``: missed if mated, matched if not."""
        s = score[self.pairs]
        errors = s < threshold if self.mated else s >= threshold
        return np.bincount(self.key, weights=errors, minlength=len(self.count)) / self.count

    def mean_by_group(self, shares: np.ndarray, n_groups: int) -> dict[int, tuple[float, int]]:
        """Group code -> (mean of its units' shares, units), for groups with units."""
        units = np.bincount(self.group, minlength=n_groups)
        total = np.bincount(self.group, weights=shares, minlength=n_groups)
        return {int(c): (float(total[c] / units[c]), int(units[c])) for c in np.flatnonzero(units)}


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
    #: the units the system spoke: "distance" scores were negated on reading (higher = alike
    #: inside the audit) and are shown as distances again in every report
    direction: str = "similarity"

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

    @cached_property
    def within(self) -> np.ndarray:
        """Per pair: the group code when both sides are in one group, else len(names) (cross-group)."""
        return np.where(self.group_a == self.group_b, self.group_a, len(self.names)).astype(np.int32)

    @cached_property
    def by_subject(self) -> dict[str, SubjectUnits]:
        """The units of the rates by subject, by GroupRates attribute: subjects of the within-group
        mated pairs (with subject ids); pairs of subjects of the within-group non-mated pairs, where
        some pair of subjects has more than one pair (otherwise counting them changes nothing)."""
        if self.subject_a is None:
            return {}
        out = {"fnmr_by_subject": self._units(mated=True)}
        pairs = self._units(mated=False)
        if len(pairs.count) < len(pairs.pairs):
            out["fmr_by_subject"] = pairs
        return out

    def _units(self, mated: bool) -> SubjectUnits:
        sel = np.flatnonzero((self.mated == mated) & (self.within < len(self.names)))
        a = self.subject_a[sel].astype(np.int64)
        b = a if mated else self.subject_b[sel].astype(np.int64)  # a mated pair is its first side's subject's
        span = int(max(a.max(initial=0), b.max(initial=0))) + 1
        keys, key = np.unique(self.within[sel].astype(np.int64) * span * span + np.minimum(a, b) * span
                              + np.maximum(a, b), return_inverse=True)
        return SubjectUnits(mated, sel, key, np.bincount(key, minlength=len(keys)), keys // (span * span),
                            keys // span % span, keys % span)

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
    """A CSV or Parquet file with columns score, mated, and either group or group_a/group_b;
    subject_a/subject_b optional. ``direction='distance'`` negates scores so that higher always
    means more alike. Read with Arrow, so files of tens of millions of rows load in seconds."""
    if direction not in ("similarity", "distance"):
        raise InvalidParameterError("direction must be similarity or distance")
    table = _read_table(Path(path))
    cols = set(table.column_names)
    if table.num_rows == 0:
        raise InvalidParameterError(f"{path}: no rows")
    for needed in (score, mated):
        if needed not in cols:
            raise InvalidParameterError(f"{path}: no column {needed!r} (columns: {', '.join(sorted(cols))})")
    if group in cols:
        ga = gb = table.column(group)
    elif {f"{group}_a", f"{group}_b"} <= cols:
        ga, gb = table.column(f"{group}_a"), table.column(f"{group}_b")
    else:
        raise InvalidParameterError(f"{path}: needs a column {group!r}, or {group}_a and {group}_b")
    s = _numbers(table.column(score), f"{path}: column {score!r}")
    m = _truth(table.column(mated), f"{path}: column {mated!r}")
    names, codes_a, codes_b = _codes(ga, gb)
    subjects = (None, None)
    if {"subject_a", "subject_b"} <= cols:
        _, sa, sb = _codes(table.column("subject_a"), table.column("subject_b"))
        subjects = (sa, sb)
    return Scores(-s if direction == "distance" else s, m, codes_a, codes_b, names, *subjects, direction=direction)


def _read_table(path: Path):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InvalidParameterError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pq.read_table(path)
        # every column as text first: labels such as "1" or "01" must stay labels
        with open(path, newline="", errors="replace") as fh:
            names = next(csv.reader(fh), [])
        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}))
    except (pa.ArrowInvalid, OSError, csv.Error) as exc:
        raise InvalidParameterError(f"{path}: not a readable CSV or Parquet file ({exc})") from None


def _numbers(col, where: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        values = pc.cast(col, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidParameterError(f"{where}: a score is not a number ({exc})") from None
    if values.null_count:
        raise InvalidParameterError(f"{where}: {values.null_count} empty score(s)")
    out = values.to_numpy()
    if not np.all(np.isfinite(out)):
        raise InvalidParameterError(f"{where}: scores must be finite numbers")
    return out


_TRUE = ["1", "true", "yes", "mated", "genuine", "t", "y"]


def _truth(col, where: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_boolean(col.type):
        flags = col
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        flags = pc.not_equal(col, 0)
    else:
        flags = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(col, pa.string()))), value_set=pa.array(_TRUE))
    if flags.null_count:
        raise InvalidParameterError(f"{where}: {flags.null_count} empty mated flag(s)")
    return flags.to_numpy(zero_copy_only=False).astype(bool)


def _codes(a, b) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Shared integer codes for two label columns, codes in sorted label order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(a)
    both = pa.chunked_array(list(pc.cast(a, pa.string()).chunks) + list(pc.cast(b, pa.string()).chunks))
    if both.null_count:
        raise InvalidParameterError(f"{both.null_count} empty label(s)")
    enc = pc.dictionary_encode(both).combine_chunks()
    labels = enc.dictionary.to_pylist()
    order = np.argsort(np.array(labels, dtype=object))
    rank = np.empty(len(labels), np.int32)
    rank[order] = np.arange(len(labels), dtype=np.int32)
    codes = rank[enc.indices.to_numpy()]
    return [labels[i] for i in order], codes[:n], codes[n:]


# --- rates and intervals ----------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (Wilson 1927); (nan, nan) when n = 0."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (modified
    Lentz), on the side where it converges fast."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + num / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-15:
            break
    return front * (f - 1.0)


def _beta_quantile(q: float, a: float, b: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(100):  # bisection: I_x is increasing in x
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _betainc(a, b, mid) < q else (lo, mid)
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) interval for k successes in n trials, from beta quantiles:
    never narrower than the nominal level, wider than Wilson's."""
    if n == 0:
        return (math.nan, math.nan)
    alpha = 1 - level
    lo = 0.0 if k == 0 else _beta_quantile(alpha / 2, k, n - k + 1)
    hi = 1.0 if k == n else _beta_quantile(1 - alpha / 2, k + 1, n - k)
    return (lo, hi)


INTERVALS = {"wilson": wilson, "clopper-pearson": clopper_pearson}


def eer(mated: np.ndarray, nonmated: np.ndarray) -> float:
    """Equal error rate as FVC2000 defines it (Maio et al. 2002): at the first threshold where FMR
    falls to FNMR or below, or the one before it, whichever has the smaller FMR + FNMR, the
    midpoint of the two rates. Thresholds are the observed scores; a match is score >= t."""
    if not len(mated) or not len(nonmated):
        return math.nan
    m, nm = np.sort(mated), np.sort(nonmated)
    t = np.unique(np.concatenate([m, nm]))
    fmr = (len(nm) - np.searchsorted(nm, t, "left")) / len(nm)
    fnmr = np.searchsorted(m, t, "left") / len(m)
    crossed = np.flatnonzero(fmr <= fnmr)
    if not len(crossed):
        return math.nan
    i = int(crossed[0])
    j = i - 1 if fmr[i] != fnmr[i] and i > 0 else i
    k = j if fmr[j] + fnmr[j] <= fmr[i] + fnmr[i] else i
    return float((fmr[k] + fnmr[k]) / 2)


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


def _rate(errors: int, trials: int, resolvable_at: float | None, interval: str = "wilson") -> Rate:
    """``resolvable_at``: the rate the trials must be able to resolve (about 30 / rate of them);
    None: resolved once 30 errors are seen (Doddington's rule of 30), as for FNMR."""
    lo, hi = INTERVALS[interval](errors, trials)
    rate = errors / trials if trials else math.nan
    # 30 observed errors resolve any rate (Doddington's rule of 30); without them, enough trials
    # to expect 30 at the rate asked about
    resolved = errors >= 30 or (trials >= 30 / resolvable_at if resolvable_at else trials >= 3_000)
    return Rate(errors, trials, rate, lo, hi, resolved)


@dataclass
class SubjectRate:
    """A group's FNMR with every subject counted once (the mean over its subjects of each one's
    share of mated pairs missed), or its FMR with every pair of subjects counted once (the mean
    over them of each one's share of non-mated pairs matched). Counted by pair, a subject with
    hundreds of images outweighs the rest of the group (on LFW one woman holds 15% of women's
    mated pairs, one man 58% of men's, and which sex fares worse depends on them: docs/fairness.md)."""

    rate: float
    subjects: int  # the units counted once: subjects (FNMR) or pairs of subjects (FMR)
    boot_low: float = math.nan  # subject bootstrap, as for the other rates
    boot_high: float = math.nan


@dataclass
class GroupRates:
    group: str
    fmr: Rate  # non-mated pairs within the group (both sides in it)
    fnmr: Rate  # mated pairs of the group
    cross_fmr: Rate  # non-mated pairs with one side in the group and the other not
    fnmr_by_subject: SubjectRate | None = None  # with subject ids and mated pairs
    fmr_by_subject: SubjectRate | None = None  # with subject ids, where a pair of subjects has several pairs


@dataclass
class OperatingPoint:
    name: str  # e.g. "global FMR 1e-3" or "reference White FMR 1e-3"
    threshold: float
    target_fmr: float
    groups: list[GroupRates]
    differentials: dict[str, float] = field(default_factory=dict)
    #: 95% bootstrap intervals of the ratio differentials (from the same resamples as the rates)
    differential_ci: dict[str, list[float]] = field(default_factory=dict)
    #: what each ratio differential reads when every group has the same rate and only sampling
    #: differs: [median, 95th percentile] (a differential above the latter is not sampling noise)
    differential_null: dict[str, list[float]] = field(default_factory=dict)
    #: differentials over every group with trials (True) or only over groups whose rates are resolved
    every_group: bool = False


def rates_at(s: Scores, threshold: float, target: float, name: str, interval: str = "wilson",
             every_group: bool = False) -> OperatingPoint:
    """Every group's rates at one threshold, from one pass of counting (bincount, not masks)."""
    n_groups = len(s.names)
    match = s.score >= threshold
    key = (s.within.astype(np.int64) * 2 + s.mated) * 2 + match
    within = np.bincount(key, minlength=(n_groups + 1) * 4).reshape(n_groups + 1, 2, 2)  # group, mated, match
    cross = (s.within == n_groups) & ~s.mated
    m = match[cross]
    touching = (
        np.bincount(s.group_a[cross].astype(np.int64) * 2 + m, minlength=2 * n_groups)
        + np.bincount(s.group_b[cross].astype(np.int64) * 2 + m, minlength=2 * n_groups)
    ).reshape(n_groups, 2)
    out = [
        GroupRates(
            g,
            _rate(int(within[c, 0, 1]), int(within[c, 0].sum()), target, interval),
            _rate(int(within[c, 1, 0]), int(within[c, 1].sum()), None, interval),
            _rate(int(touching[c, 1]), int(touching[c].sum()), target, interval),
        )
        for c, g in enumerate(s.names)
    ]
    for attr, units in s.by_subject.items():
        for code, (rate, n) in units.mean_by_group(units.shares(s.score, threshold), n_groups).items():
            setattr(out[code], attr, SubjectRate(rate, n))
    point = OperatingPoint(name, threshold, target, out, every_group=every_group)
    point.differentials = differentials(point)
    return point


# --- summary differentials ----------------------------------------------------------------------------


def _counted(r: Rate, point: OperatingPoint) -> bool:
    return bool(r.trials) and (r.resolved or point.every_group)


#: The rates the differentials compare: FMR and FNMR by pair, and with each subject (pair of subjects) once.
KINDS = ("fmr", "fnmr", "fnmr_by_subject", "fmr_by_subject")


def _counted_rate(g: GroupRates, kind: str, point: OperatingPoint) -> float | None:
    """A group's rate of ``kind`` where the differentials count it, else None; a rate by subject
    counts where the same rate by pair does (its pairs resolve it)."""
    r, by_pair = getattr(g, kind), getattr(g, kind.removesuffix("_by_subject"))
    return r.rate if r is not None and _counted(by_pair, point) else None


def _gini(x: np.ndarray) -> float:
    """Gini coefficient with the small-sample correction n/(n-1) used by GARBE."""
    n = len(x)
    if n < 2 or x.mean() == 0:
        return math.nan
    return float(n / (n - 1) * np.abs(x[:, None] - x[None, :]).sum() / (2 * n * n * x.mean()))


def differentials(point: OperatingPoint, alpha: float = 0.5) -> dict[str, float]:
    """Max/min, NIST Max/GeoMean, Inequity Rate, GARBE, FDR, over groups whose rates are resolved
    (or every group with trials, when the point says so); the first four for the rates by subject too."""
    out: dict[str, float] = {}
    for name in KINDS:
        x = np.array([r for r in (_counted_rate(g, name, point) for g in point.groups) if r is not None])
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


def bootstrap(s: Scores, points: Sequence[OperatingPoint], resamples: int = 200, seed: int = 0) -> None:
    """Percentile intervals for every group's FMR and FNMR at every operating point.

    With subject ids, the subjects of each group are resampled with replacement (pairs share
    subjects, so they are not independent); one resample serves every operating point. A pair of
    two subjects drawn k and l times counts k*l times, a mated pair of one subject drawn k times
    counts k times. Without subject ids, pairs are resampled: the error count of a group is then
    exactly binomial, and is drawn as such (optimistic when subjects repeat; said in the docs)."""
    rng = np.random.default_rng(seed)
    n_groups = len(s.names)
    drawn = {(k, kind): np.full((n_groups, resamples), np.nan) for k in range(len(points)) for kind in KINDS}
    order = np.argsort(s.within, kind="stable")
    bounds = np.searchsorted(s.within[order], np.arange(n_groups + 1))
    shares = {attr: [units.shares(s.score, p.threshold) for p in points] for attr, units in s.by_subject.items()}
    for code in range(n_groups):
        idx = order[bounds[code] : bounds[code + 1]]
        if not len(idx):
            continue
        if s.subject_a is None:
            for k, p in enumerate(points):
                for kind in ("fmr", "fnmr"):
                    rate = getattr(p.groups[code], kind)
                    if rate.trials:
                        draws = rng.binomial(rate.trials, rate.rate, resamples) / rate.trials
                        rate.boot_low, rate.boot_high = (float(v) for v in np.percentile(draws, [2.5, 97.5]))
                        drawn[k, kind][code] = draws
            continue
        subjects, local = np.unique(np.concatenate([s.subject_a[idx], s.subject_b[idx]]), return_inverse=True)
        a, b = local[: len(idx)], local[len(idx) :]
        n = len(subjects)
        counts = rng.multinomial(n, np.full(n, 1 / n), size=resamples).astype(np.float64)
        mated, scores = s.mated[idx], s.score[idx]
        for attr, units in s.by_subject.items():
            _bootstrap_by_subject(attr, units, counts, subjects, shares[attr], points, code, drawn)
        for kind, sel in (("fmr", ~mated), ("fnmr", mated)):
            if not sel.any():
                continue
            sa, sb, ss = a[sel], b[sel], scores[sel]
            trials = _resampled_count(counts, sa, sb)
            for k, p in enumerate(points):
                err = ss >= p.threshold if kind == "fmr" else ss < p.threshold
                errors = _resampled_count(counts, sa[err], sb[err])
                with np.errstate(invalid="ignore", divide="ignore"):
                    rates = np.where(trials > 0, errors / trials, np.nan)
                rate = getattr(p.groups[code], kind)
                rate.boot_low, rate.boot_high = (float(v) for v in np.nanpercentile(rates, [2.5, 97.5]))
                drawn[k, kind][code] = rates
    for k, p in enumerate(points):
        for kind in KINDS:
            used = [c for c, g in enumerate(p.groups) if _counted_rate(g, kind, p) is not None]
            if len(used) < 2:
                continue
            x = drawn[k, kind][used]  # groups x resamples
            ratios = _ratio_differentials(x, kind)
            estimates = np.array([getattr(p.groups[c], kind).rate for c in used])
            if (estimates > 0).all():
                # equal groups: each group's resampled rate over its own estimate keeps that group's
                # sampling spread (subjects, pair correlation) and removes any true difference
                for name, r in _ratio_differentials(x / estimates[:, None], kind).items():
                    p.differential_null[name] = [float(v) for v in np.percentile(r, [50, 95], method="nearest")]
            for name, r in ratios.items():
                lo, mid, hi = np.percentile(r, [2.5, 50, 97.5], method="nearest")
                # a maximum over noisy rates is biased upwards in resamples (the point value can sit
                # below the whole percentile interval): remove the bootstrap's own bias, on the log scale
                shift = p.differentials[name] / mid if np.isfinite(mid) and mid > 0 else 1.0
                p.differential_ci[name] = [float(lo * shift), float(hi * shift)]


def _bootstrap_by_subject(attr: str, units: SubjectUnits, counts, subjects, shares, points, code, drawn) -> None:
    """A rate by subject (``attr``) of group ``code``, per resample: a subject drawn k times counts
    k times, a pair of subjects drawn k and l times k x l times, as their pairs do in the rates by
    pair. ``subjects``: the group's subject codes, sorted (the columns of ``counts``); ``shares``:
    per point, each unit's share of its pairs in error."""
    mine = np.flatnonzero(units.group == code)
    if not len(mine):
        return
    ua, ub = np.searchsorted(subjects, units.subject_a[mine]), np.searchsorted(subjects, units.subject_b[mine])
    drawn_units = _resampled_count(counts, ua, ub)
    for k, p in enumerate(points):
        by_subject = getattr(p.groups[code], attr)
        if by_subject is None:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(drawn_units > 0, _resampled_count(counts, ua, ub, shares[k][mine]) / drawn_units, np.nan)
        by_subject.boot_low, by_subject.boot_high = (float(v) for v in np.nanpercentile(rates, [2.5, 97.5]))
        drawn[k, attr][code] = rates


def _ratio_differentials(x: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Max/GeoMean and max/min of rates x (groups x resamples), per resample; a resample with a
    group at zero reads unbounded (inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = np.exp(np.log(x).mean(0))
        ratios = {f"{kind}_max_geomean": x.max(0) / geo, f"{kind}_max_min_ratio": x.max(0) / x.min(0)}
    return {name: np.where(np.isnan(r), np.inf, r) for name, r in ratios.items()}


def _resampled_count(counts: np.ndarray, a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None,
                     dense_cells: int = 16_000_000) -> np.ndarray:
    """Per resample, the weighted number of pairs (a, b): sum of counts[a] * counts[b] (counts[a]
    when a == b), each pair times its ``weight`` if given. Many pairs over few subjects go through
    one matrix product, R x S x S, which is far cheaper than gathering R weights per pair; few
    pairs are gathered in chunks."""
    resamples, n = counts.shape
    w = np.ones(len(a)) if weight is None else np.asarray(weight, np.float64)
    total = np.zeros(resamples)
    one = a == b
    if one.any():
        total += counts @ np.bincount(a[one], weights=w[one], minlength=n)
        a, b, w = a[~one], b[~one], w[~one]
    if not len(a):
        return total
    if n * n <= dense_cells and len(a) * 16 > n * n:
        pairs = np.bincount(a.astype(np.int64) * n + b, weights=w, minlength=n * n).reshape(n, n)
        return total + np.einsum("rs,rs->r", counts @ pairs, counts)
    step = max(1, 4_000_000 // resamples)
    for start in range(0, len(a), step):
        pa, pb = a[start : start + step], b[start : start + step]
        total += np.einsum("rp,rp,p->r", counts[:, pa], counts[:, pb], w[start : start + step])
    return total


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
    eer: float = math.nan  # within-group mated vs non-mated pairs


def curves(s: Scores, points: int = 40, bins: int = 50) -> list[Curve]:
    """Per group (within-group pairs): FMR/FNMR at thresholds spanning FMR 1e-6..1 over all
    non-mated scores, and histograms of mated and non-mated scores on shared bins."""
    desc = np.sort(s.score[~s.mated])[::-1]
    fmr_levels = np.logspace(-6, 0, points)
    thresholds = np.unique([_threshold_desc(desc, f) for f in fmr_levels if f * len(desc) >= 1])
    edges = np.linspace(s.score.min(), s.score.max(), bins + 1)
    out = []
    for code in np.unique(s.within):
        if code == len(s.names):
            continue
        g = s.names[int(code)]
        within = s.within == code
        nm, m = np.sort(s.score[within & ~s.mated]), np.sort(s.score[within & s.mated])
        fmr = [(len(nm) - np.searchsorted(nm, t, "left")) / len(nm) if len(nm) else math.nan for t in thresholds]
        fnmr = [np.searchsorted(m, t, "left") / len(m) if len(m) else math.nan for t in thresholds]
        out.append(Curve(g, thresholds.tolist(), [float(x) for x in fmr], [float(x) for x in fnmr], edges.tolist(),
                         np.histogram(nm, edges)[0].tolist(), np.histogram(m, edges)[0].tolist(), eer(m, nm)))
    return out


@dataclass
class AuditReport:
    comparisons: int
    mated: int
    nonmated: int
    points: list[OperatingPoint]
    resamples: int
    curves: list[Curve] = field(default_factory=list)
    interval: str = "wilson"  # how the 95% interval of every rate was computed
    direction: str = "similarity"  # "distance": thresholds and score axes are shown as distances

    def shown(self, score: float) -> float:
        """A score (threshold, bin edge) in the system's own units: a distance as a distance."""
        return -score if self.direction == "distance" else score

    def to_dict(self) -> dict:
        """Every number, thresholds and score axes in the system's own units."""
        out = asdict(self)
        if self.direction == "distance":
            for p in out["points"]:
                p["threshold"] = -p["threshold"]
            for c in out["curves"]:
                c["thresholds"] = [-x for x in c["thresholds"]]
                c["bins"] = [-x for x in c["bins"]]
        return out


def audit(
    s: Scores, *, targets: Sequence[float] = (1e-3, 1e-4), reference_group: str | None = None, resamples: int = 200,
    seed: int = 0, interval: str = "wilson", calibration=None, every_group: bool = False,
    thresholds: Sequence[float] = (),
) -> AuditReport:
    """Per-group rates at global thresholds set on these scores for each target FMR; with a
    ``calibration`` (of these scores), also at the thresholds it states for each target, so each
    group's FMR there says whether the rate a score reports holds for that group. ``every_group``:
    differentials over every group with trials, resolved or not (their intervals say how far
    to trust them). ``thresholds``: also at these fixed scores (a system's own operating points)."""
    if interval not in INTERVALS:
        raise InvalidParameterError(f"interval must be one of {', '.join(INTERVALS)}, not {interval!r}")
    nonmated = s.score[~s.mated]
    if not len(nonmated):
        raise InvalidParameterError("no non-mated comparisons: a false match rate cannot be set")
    desc = np.sort(nonmated)[::-1]
    ref_desc = None
    if reference_group is not None:
        ref = s.score[~s.mated & (s.within == s.code(reference_group))]
        if not len(ref):
            raise InvalidParameterError(f"no non-mated pairs within the reference group {reference_group!r}")
        ref_desc = np.sort(ref)[::-1]
    points = []
    for t in targets:
        points.append(rates_at(s, _threshold_desc(desc, t), t, f"global FMR {t:g}", interval, every_group))
        if ref_desc is not None:
            points.append(rates_at(s, _threshold_desc(ref_desc, t), t, f"reference {reference_group} FMR {t:g}", interval,
                                   every_group))
        if calibration is not None:
            points.append(rates_at(s, calibration.threshold_for_fmr(t), t, f"calibrated FMR {t:g}", interval, every_group))
    for t in thresholds:  # a system's own operating points (an endpoint's default 80, the vendor's advice 99)
        points.append(rates_at(s, float(t), targets[0] if targets else 1e-3, f"threshold {t:g}", interval, every_group))
    if resamples:
        bootstrap(s, points, resamples, seed)
    return AuditReport(len(s.score), int(s.mated.sum()), int((~s.mated).sum()), points, resamples, curves(s), interval,
                       s.direction)


def markdown(report: AuditReport) -> str:
    """A short summary people can read; rates the data cannot resolve are said so, not printed."""
    lines = [
        f"# Demographic audit: {report.comparisons:,} comparisons ({report.mated:,} mated, {report.nonmated:,} non-mated)",
        "",
    ]
    for p in report.points:
        by_subject = by_subject_columns(p.groups)
        lines += [f"## {p.name} (threshold {report.shown(p.threshold):.6g})", "",
                  f"| group | FMR (95% {report.interval} CI) | non-mated pairs | FNMR (95% CI) | mated pairs |"
                  + "".join(f" {label} (95% bootstrap) |" for _, label in by_subject),
                  "|---|---|---|---|---|" + "---|" * len(by_subject)]
        for g in p.groups:
            lines.append(f"| {g.group} | {rate_text(g.fmr)} | {g.fmr.trials:,} | {rate_text(g.fnmr)} | {g.fnmr.trials:,} |"
                         + "".join(f" {subject_rate_text(g, attr)} |" for attr, _ in by_subject))
        if p.differentials:
            lines += ["", "Differentials (95% CI; what equal groups would read here, median and 95th percentile): "
                      + ", ".join(f"{k} {differential_text(p, k)}" for k in p.differentials)]
        lines.append("")
    with_eer = [c for c in report.curves if not math.isnan(c.eer)]
    if with_eer:
        lines += ["## Equal error rate per group (within-group pairs)", "",
                  "| group | EER | mated pairs | non-mated pairs |", "|---|---|---|---|"]
        lines += [f"| {c.group} | {c.eer:.3g} | {sum(c.mated_hist):,} | {sum(c.nonmated_hist):,} |" for c in with_eer] + [""]
    return "\n".join(lines)


def differential_text(p: OperatingPoint, key: str) -> str:
    """A differential with its interval and, where computed, what equal groups would read."""
    out = f"{p.differentials[key]:.3g}"
    extra = []
    if key in p.differential_ci:
        extra.append(f"{p.differential_ci[key][0]:.3g} to {p.differential_ci[key][1]:.3g}")
    if key in p.differential_null:
        extra.append(f"equal groups {p.differential_null[key][0]:.3g}, up to {p.differential_null[key][1]:.3g}")
    return out + (f" ({'; '.join(extra)})" if extra else "")


#: Rates with each pair of subjects (FMR) or subject (FNMR) counted once: attribute, column label,
#: the label spelled out, what is counted once, and what a group without any has.
BY_SUBJECT = (("fmr_by_subject", "FMR, each pair of subjects once", "false match rate, each pair of subjects once",
               ("pair of subjects", "pairs of subjects"), "no non-mated pairs"),
              ("fnmr_by_subject", "FNMR, each subject once", "false non-match rate, each subject once",
               ("subject", "subjects"), "no mated pairs"))


def by_subject_columns(groups: Sequence[GroupRates], spelled_out: bool = False) -> list[tuple[str, str]]:
    """(attribute, label) of the rates by subject that any of these groups has: a table shows
    these columns and no others (without subject ids, or where no pair of subjects repeats, the
    rates by pair are the whole story)."""
    return [(attr, long if spelled_out else short) for attr, short, long, *_ in BY_SUBJECT
            if any(getattr(g, attr) for g in groups)]


def subject_rate_text(g: GroupRates, attr: str) -> str:
    *_, (one, many), missing = next(x for x in BY_SUBJECT if x[0] == attr)
    r: SubjectRate | None = getattr(g, attr)
    if r is None:
        return missing
    interval = f"{r.boot_low:.2g} to {r.boot_high:.2g}; " if not math.isnan(r.boot_low) else ""
    return f"{r.rate:.3g} ({interval}{r.subjects:,} {one if r.subjects == 1 else many})"


def rate_text(r: Rate, *, flag: str = "not resolved") -> str:
    """A rate with its interval, or, when the data cannot resolve it, ``flag`` and an upper bound."""
    if r.trials == 0:
        return "no pairs"
    if not r.resolved:
        return f"{flag} ({r.errors} in {r.trials:,}; at most {r.ci_high:.2g})"
    return f"{r.rate:.3g} ({r.ci_low:.2g} to {r.ci_high:.2g})"
