"""Similarity <-> false match rate: every score is reported with how often strangers reach it.

A calibration belongs to one model (name and weights digest) and is a data file made by
``faceledger calibration fit`` from real non-mated comparisons (calibration_fit.py). It holds:

- ``empirical``: knots (score, log10 FMR) read off the fitted non-mated scores, from FMR 1 down
  to the lowest rate the data resolve (``data_resolves_to``: 100 false matches among the pairs);
  between knots log10 FMR is interpolated linearly in the score.
- ``tail``: above the last knot, a generalised Pareto tail (ISO/IEC 5152 style) fitted by
  probability-weighted moments to the scores above the FMR 1e-3 threshold, scaled to meet the
  last knot, so the map stays continuous and decreasing. Rates there are a model, not data.

The Similarity this project reports is a fixed, documented function of the FMR alone:
``Similarity = 100 * min(1, -log10(FMR) / 7)``: 14.3 points per factor of ten, so the cloud
API's default threshold 80 means FMR 10^-5.6 = 2.5e-6 per comparison (the order that service
showed in the 2018 public test: 28 false matches in 535 x 25,000 comparisons, about 2e-6), its
recommended 99 means 1.2e-7, and 100 means 1e-7 or rarer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from faceledger.errors import InvalidParameterError

#: Decades of FMR spanned by the 0-100 Similarity scale.
DECADES = 7.0
#: The smallest rate ever reported: beyond the tail model's reach a rate is "at most" this.
FMR_FLOOR = 1e-12
FORMAT = "faceledger-calibration/1"


def similarity_of_fmr(fmr):
    """Similarity 0-100 for a false match rate (vectorised)."""
    f = np.clip(np.asarray(fmr, dtype=np.float64), FMR_FLOOR, 1.0)
    out = 100.0 * np.minimum(1.0, -np.log10(f) / DECADES)
    return float(out) if out.ndim == 0 else out


def fmr_of_similarity(similarity: float) -> float:
    """The false match rate a Similarity stands for (its inverse, on 0-100)."""
    s = float(similarity)
    if not 0.0 <= s <= 100.0:
        raise InvalidParameterError(f"a similarity is between 0 and 100, not {similarity}")
    return 10.0 ** (-DECADES * s / 100.0)


def threshold_for_fmr(nonmated: np.ndarray, target: float) -> float:
    """The lowest threshold t (a match is score >= t) whose share of ``nonmated`` at or above it is
    at most target: the one rank rule that fitting, normalisation and the audit all use."""
    if len(nonmated) == 0:
        raise InvalidParameterError("no non-mated comparisons: a false match rate cannot be set")
    return threshold_desc(np.sort(nonmated)[::-1], target)


def threshold_desc(desc: np.ndarray, target: float) -> float:
    """threshold_for_fmr on scores already sorted in descending order (sort once, ask often)."""
    allowed = int(math.floor(target * len(desc)))  # false matches we may accept
    if allowed >= len(desc):
        return float(desc[-1])
    # every score above desc[allowed] may match; ties at desc[allowed] must not, so step just above it
    return float(np.nextafter(desc[allowed], np.inf))


class CalibrationMissingError(InvalidParameterError):
    """No calibration file for this model: rates cannot be reported, and thresholds cannot be set
    by rate."""


@dataclass(frozen=True)
class Calibration:
    model: str  # name@weights digest
    knot_scores: np.ndarray  # increasing
    knot_log10_fmr: np.ndarray  # decreasing
    tail_shape: float  # generalised Pareto xi
    tail_scale: float  # sigma
    tail_start: float  # the last knot's score: above it the tail model speaks
    tail_origin: float  # the score the Pareto excesses are measured from (the FMR 1e-3 threshold)
    data_resolves_to: float  # lowest FMR the fitted data resolve
    meta: dict

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        if d.get("format") != FORMAT:
            raise InvalidParameterError(f"not a {FORMAT} file (format {d.get('format')!r})")
        emp, tail = d["empirical"], d["tail"]
        return cls(d["model"], np.asarray(emp["scores"], float), np.asarray(emp["log10_fmr"], float),
                   float(tail["shape"]), float(tail["scale"]), float(emp["scores"][-1]), float(tail["origin"]),
                   float(d["data_resolves_to"]), d)

    @classmethod
    def read(cls, path: Path) -> "Calibration":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidParameterError(f"{path}: not a readable calibration file ({exc})") from None

    def fmr(self, score):
        """False match rate at a cosine score: the share of non-mated pairs scoring at least this."""
        s = np.asarray(score, dtype=np.float64)
        log_fmr = np.interp(s, self.knot_scores, self.knot_log10_fmr, left=0.0)
        above = s > self.tail_start
        if np.any(above):
            start = self._tail_log10_survival(self.tail_start - self.tail_origin)
            log_fmr = np.where(above, self.knot_log10_fmr[-1] + self._tail_log10_survival(s - self.tail_origin) - start,
                               log_fmr)
        out = np.clip(10.0**log_fmr, FMR_FLOOR, 1.0)
        return float(out) if out.ndim == 0 else out

    def _tail_log10_survival(self, excess):
        """log10 P(score - origin > excess | score > origin) under the generalised Pareto model."""
        xi, sigma = self.tail_shape, self.tail_scale
        excess = np.maximum(excess, 0.0)
        if abs(xi) < 1e-9:
            return -excess / sigma / math.log(10)
        z = 1.0 + xi * excess / sigma
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(z > 0, -np.log10(np.maximum(z, 1e-300)) / xi, -np.inf)
        return out

    def similarity(self, score):
        return similarity_of_fmr(self.fmr(score))

    def threshold_for_fmr(self, target: float) -> float:
        """The lowest cosine score whose FMR is at most ``target``."""
        if not 0.0 < target <= 1.0:
            raise InvalidParameterError(f"a false match rate target is in (0, 1], not {target}")
        t = math.log10(max(target, FMR_FLOOR))
        if t >= self.knot_log10_fmr[0]:
            return float(self.knot_scores[0])
        if t >= self.knot_log10_fmr[-1]:  # inside the data: invert the interpolation
            return float(np.interp(-t, -self.knot_log10_fmr, self.knot_scores))
        lo, step = self.tail_start, 1.0
        hi = lo + step
        while self.fmr(hi) > target and step < 1e4:  # normalised scores run far beyond a cosine's 1
            lo, step = hi, step * 2
            hi = lo + step
        for _ in range(80):  # bisection on the monotone tail
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.fmr(mid) > target else (lo, mid)
        return hi

    def threshold_for_similarity(self, similarity: float) -> float:
        return self.threshold_for_fmr(fmr_of_similarity(similarity))

    def in_data(self, score: float) -> bool:
        """Whether the rate at this score is read from data (True) or from the tail model."""
        return float(score) <= self.tail_start


#: Shipped calibrations, one per model name (``+normalisation`` for normalised scores), in faceledger/data/.
SHIPPED = {"dlib-resnet-v1-flip": "calibration-dlib-resnet-v1-flip.json",
           "dlib-resnet-v1-flip+cohort": "calibration-dlib-resnet-v1-flip-cohort.json",
           # the opt-in int8 copy: fitted on its own templates (docs/models.md), bound to its file's digest
           "dlib-resnet-v1-flip-int8": "calibration-dlib-resnet-v1-flip-int8.json",
           "dlib-resnet-v1-flip-int8+cohort": "calibration-dlib-resnet-v1-flip-int8-cohort.json"}


def shipped_name(model: str, normalisation: str = "none") -> str:
    name = model.partition("@")[0]
    return name if normalisation == "none" else f"{name}+{normalisation}"


def fitted_name(normalisation: str = "none") -> str:
    """A calibration fitted for a model (``faceledger calibration fit --model``), in its folder."""
    return "calibration.json" if normalisation == "none" else f"calibration-{normalisation}.json"


def for_model(model: str, normalisation: str = "none", directory: Path | None = None) -> Calibration:
    """The calibration for a model id (``name@digest``) and score normalisation: one fitted into
    ``directory`` (the model's folder) when there is one, else the one the package ships. The
    digest must match: a calibration never speaks for other weights."""
    name = shipped_name(model, normalisation)
    if directory is not None and (Path(directory) / fitted_name(normalisation)).is_file():
        path = Path(directory) / fitted_name(normalisation)
        cal = _load(str(path), path.stat().st_mtime_ns)
        where = str(path)
    else:
        ref = resources.files("faceledger").joinpath("data", SHIPPED.get(name, ""))
        if name not in SHIPPED or not ref.is_file():
            raise CalibrationMissingError(
                f"no calibration for model {name}: false match rates cannot be reported for it, and "
                f"identification is refused. Fit one with `faceledger calibration fit --model {model.partition('@')[0]}`"
                + ("" if normalisation == "none" else f" --normalisation {normalisation}")
            )
        cal = _shipped(name)
        where = "the shipped calibration"
    if cal.model != model:
        raise CalibrationMissingError(f"{where} is for {cal.model}, not {model}: refit it")
    return cal


@lru_cache(maxsize=None)
def _shipped(name: str) -> Calibration:
    return Calibration.from_dict(json.loads(resources.files("faceledger").joinpath("data", SHIPPED[name]).read_text()))


@lru_cache(maxsize=64)
def _load(path: str, mtime_ns: int) -> Calibration:
    return Calibration.from_dict(json.loads(Path(path).read_text()))
