"""faceledger: accountable, self-hosted face recognition."""

from faceledger.models.embedding import Template
from faceledger.vision.engine import CompareResult, Detection, EmbeddedFace, Face
# the engine with the calibrated Similarity (the vision layer's own sits below calibration)
from faceledger.scoring.calibrated import DEFAULT_COMPARE_FMR, DEFAULT_COMPARE_THRESHOLD, FaceEngine
from faceledger.errors import FaceledgerError
from faceledger.vision.imaging import DecodedImage, load_image
from faceledger.vision.quality import QualityFilter
from faceledger.settings import Settings

__all__ = [
    "CompareResult",
    "DEFAULT_COMPARE_FMR",
    "DEFAULT_COMPARE_THRESHOLD",
    "DecodedImage",
    "Detection",
    "EmbeddedFace",
    "Face",
    "FaceEngine",
    "FaceledgerError",
    "QualityFilter",
    "Settings",
    "Template",
    "load_image",
]
__version__ = "0.1.0"
