"""faceledger: accountable, self-hosted face recognition."""

from .embedding import Template
from .engine import CompareResult, Detection, EmbeddedFace, Face, FaceEngine
from .errors import FaceledgerError
from .imaging import DecodedImage, load_image
from .quality import QualityFilter
from .settings import Settings

__all__ = [
    "CompareResult",
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
