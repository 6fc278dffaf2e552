"""Two templates -> a score -> a false match rate and a Similarity, under one calibration.

The score a calibration maps depends on the setting ``score_normalisation``:

- ``none``: the cosine of the two templates, calibrated on every non-mated pair of the fit half.
- ``cohort``: the cosine normalised by both templates' closeness to a cohort of centroids
  (normalisation.py), calibrated on *look-alike* non-mated pairs. Strangers of one group look more
  alike than strangers at large; normalising evens that out, and fitting on look-alikes makes the
  rate a score reports hold within each group (docs/fairness.md has the figures).

Service, CLI and audit take scores, rates and thresholds from one ``Scoring`` so that a score is
never read through the other mode's calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceledger.scoring import normalisation as norm_mod
from faceledger.scoring.calibration import Calibration, CalibrationMissingError
from faceledger.scoring.calibration import for_model as calibration_for
from faceledger.errors import InvalidParameterError

NORMALISATIONS = ("none", "cohort")
#: Normalised scores rank differently from cosines: a search re-scores this many times the
#: cosine neighbours it returns (and at least RERANK_EXTRA more).
RERANK_FACTOR = 4
RERANK_EXTRA = 64


@dataclass(frozen=True)
class Scoring:
    normalisation: str
    calibration: Calibration | None  # None: an uncalibrated model (similarity by the engine's interim map)
    normaliser: norm_mod.Normaliser | None = None

    @classmethod
    def of(cls, model: str, normalisation: str = "none", directory: Path | None = None) -> "Scoring":
        """``directory``: the model's folder (``settings.models_dir / name``), where calibrations
        fitted for it live; the shipped ones apply where none was fitted."""
        if normalisation not in NORMALISATIONS:
            raise InvalidParameterError(f"score_normalisation must be one of {', '.join(NORMALISATIONS)}, "
                                        f"not {normalisation!r}")
        if normalisation == "none":
            try:
                return cls("none", calibration_for(model, directory=directory))
            except CalibrationMissingError:
                return cls("none", None)
        normaliser = norm_mod.for_model(model, directory)
        cal = calibration_for(model, normalisation, directory)
        if cal.meta.get("normaliser") != normaliser.digest:
            raise CalibrationMissingError(f"the {normalisation} calibration was fitted for normaliser "
                                          f"{cal.meta.get('normaliser')}, not the shipped {normaliser.digest}: refit both "
                                          f"with `faceledger calibration fit --model {model.partition('@')[0]} "
                                          "--normalisation cohort`")
        return cls(normalisation, cal, normaliser)

    def scores(self, probe: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """The probe's score against each gallery template (rows of unit vectors)."""
        g = np.atleast_2d(np.asarray(gallery, np.float32))
        p = np.asarray(probe, np.float32).reshape(-1)
        cos = g @ p
        if self.normaliser is None:
            return cos
        return self.normaliser.normalise(cos, self.normaliser.stats(p), self.normaliser.stats(g))  # the probe's broadcast

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.scores(a, b)[0])

    def candidates(self, k: int) -> int:
        """How many cosine neighbours a search must fetch to return the best ``k`` by score."""
        return k if self.normaliser is None else max(RERANK_FACTOR * k, k + RERANK_EXTRA)

    def fmr(self, score: float) -> float | None:
        return None if self.calibration is None else float(self.calibration.fmr(score))

    def similarity(self, score: float) -> float:
        if self.calibration is None:
            raise CalibrationMissingError("no calibration: the engine's interim similarity applies")
        return float(self.calibration.similarity(score))
