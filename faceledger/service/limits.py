"""What a permitted identification must respect: the governance layer decides it, the service obeys it."""

from __future__ import annotations

from dataclasses import dataclass

from faceledger.vision.quality import QualityFloor


@dataclass(frozen=True)
class Limits:
    """What a permitted identification must respect; passed to the service's search methods."""

    max_fpir: float
    quality_floor: QualityFloor
