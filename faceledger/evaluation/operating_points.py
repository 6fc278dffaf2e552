"""What a threshold keeps: the share of genuine (same-person) comparisons that reach it.

Measured on LFW View 2's same-person pairs of people held out of the calibration fit (the fit
splits LFW by person: calibration_fit.in_fit_half of the name), scored the way the service scores (plain or cohort). The rates a
threshold stands for come from strangers; what it costs in missed matches comes from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from faceledger.evaluation.calibration_fit import in_fit_half
from faceledger.evaluation.datasets import LFW
from faceledger.evaluation.protocols import acquire
from faceledger.settings import Settings


@dataclass(frozen=True)
class GenuineScores:
    scores: np.ndarray  # one per same-person pair of held-out images
    people: int
    images: int
    not_acquired: int  # pairs left out: a face not found in one of their images

    def share_at(self, threshold: float) -> float:
        """Share of same-person pairs whose score reaches ``threshold`` (a match is score >= it)."""
        return float(np.mean(self.scores >= threshold)) if len(self.scores) else float("nan")


def lfw_genuine_held_out(settings: Settings, scoring, *, workers: int | None = None,
                         advance: Callable[[int], None] | None = None,
                         on_total: Callable[[int], None] | None = None, limit: int | None = None) -> GenuineScores:
    """LFW View 2's same-person pairs of people held out of the calibration fit (and of the
    cohort), scored by ``scoring`` (a Scoring). View 2's pairs spread over many people (a person with 500
    images does not outweigh the rest, as all-pairs would let George W. Bush do). Templates come
    from the template cache (computed once, then reused). ``limit``: the first N pairs only."""
    lfw = LFW.locate(settings)

    pairs = [p for fold in lfw.pairs() for p in fold if p.mated and not in_fit_half(p.a.parent.name)][:limit]
    paths = sorted({x for p in pairs for x in (p.a, p.b)})
    if on_total:
        on_total(len(paths))
    got = acquire(paths, settings, expected=LFW.expected_face, workers=workers, advance=advance)
    scores, missing = [], 0
    for p in pairs:
        a, b = got[p.a].vector, got[p.b].vector
        if a is None or b is None:
            missing += 1
            continue
        scores.append(scoring.score(np.asarray(a, np.float32), np.asarray(b, np.float32)))
    return GenuineScores(np.asarray(scores, np.float64), len({p.a.parent.name for p in pairs}), len(paths), missing)
