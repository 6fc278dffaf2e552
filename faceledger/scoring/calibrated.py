"""The engine with the calibrated Similarity: what ``from faceledger import FaceEngine`` gives.

The vision layer's engine sits below calibration, so on its own it can only map cosines to its
interim 0-100 scale. This subclass, one layer up, scores and maps every comparison the way the
service does (score_normalisation, the model's calibration), so a Similarity means the same false
match rate in Python, the CLI and over HTTP, and compare's default threshold is a stated rate.
"""

from __future__ import annotations

from functools import cached_property

from faceledger.models.embedding import Template, cosine
from faceledger.scoring.calibration import CalibrationMissingError, similarity_of_fmr
from faceledger.scoring.scoring import Scoring
from faceledger.vision import engine as vision_engine
from faceledger.vision.engine import CompareResult
from faceledger.vision.imaging import ImageSource

#: The 1:1 default of `faceledger compare`, `faceledger demo` and FaceEngine.compare: a false match
#: rate of 1 in 1,000 (Similarity 42.9). On LFW View 2's same-person pairs of people held out of
#: the fit, 87.5% reach it under the default cohort scoring (`faceledger calibration table`). The cloud
#: API's own default, 80 (FMR 2.5e-6), stays the default of CompareFaces on the wire.
DEFAULT_COMPARE_FMR = 1e-3
DEFAULT_COMPARE_THRESHOLD = round(similarity_of_fmr(DEFAULT_COMPARE_FMR), 1)


def scoring_for(engine: vision_engine.FaceEngine) -> Scoring | None:
    """The engine's model's scoring under its settings' score_normalisation; the plain one where
    no cohort calibration exists for the model; None for an uncalibrated model (then similarities
    use the engine's interim map and no rate is reported)."""
    folder = engine.settings.models_dir / engine.model.name
    try:
        sc = Scoring.of(str(engine.model), engine.settings.score_normalisation, folder)
    except CalibrationMissingError:
        if engine.settings.score_normalisation == "none":
            return None
        sc = Scoring.of(str(engine.model), "none", folder)
    return sc if sc.calibration is not None else None


class FaceEngine(vision_engine.FaceEngine):
    """``detect``, ``embed`` and ``compare``, with comparisons on the calibrated Similarity."""

    @cached_property
    def scoring(self) -> Scoring | None:
        return scoring_for(self)

    def with_model(self, name: str) -> "FaceEngine":
        """As the vision engine's; the twin reads its own model's scoring, not this one's."""
        twin = super().with_model(name)
        if twin is not self:
            twin.__dict__.pop("scoring", None)
        return twin

    def compare(self, source: ImageSource, target: ImageSource, threshold: float | None = None, **kwargs) -> CompareResult:
        """As the vision engine's, with ``threshold`` a calibrated Similarity (default
        DEFAULT_COMPARE_THRESHOLD: FMR 1e-3) and each match's ``score`` the one its rate is read
        from (``self.scoring.fmr(match.score)``)."""
        sc = self.scoring
        if sc is not None:
            kwargs.setdefault("similarity", sc.similarity)
            kwargs.setdefault("score", sc.score)
        return super().compare(source, target, DEFAULT_COMPARE_THRESHOLD if threshold is None else threshold, **kwargs)

    def similarity(self, a: Template, b: Template) -> float:
        """The calibrated 0-100 Similarity of two templates (ModelMismatchError across models)."""
        sc = self.scoring
        if sc is None:
            return super().similarity(a, b)
        cosine(a, b)  # refuses templates of different models
        return sc.similarity(sc.score(a.vector, b.vector))

    def false_match_rate(self, a: Template, b: Template) -> float | None:
        """How often strangers score as high as these two templates; None when uncalibrated."""
        sc = self.scoring
        if sc is None:
            return None
        cosine(a, b)
        return sc.fmr(sc.score(a.vector, b.vector))
