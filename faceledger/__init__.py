"""faceledger: accountable, self-hosted face recognition.

The names below are imported on first use (PEP 562): importing the package, or any module in it,
does not load numpy and the engine until one is used; the command line's entry pauses the
garbage collector before they load (interfaces/cli/startup.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: name -> the module it comes from
_NAMES = {
    "Template": "faceledger.models.embedding",
    "CompareResult": "faceledger.vision.engine",
    "Detection": "faceledger.vision.engine",
    "EmbeddedFace": "faceledger.vision.engine",
    "Face": "faceledger.vision.engine",
    # the engine with the calibrated Similarity (the vision layer's own sits below calibration)
    "DEFAULT_COMPARE_FMR": "faceledger.scoring.calibrated",
    "DEFAULT_COMPARE_THRESHOLD": "faceledger.scoring.calibrated",
    "FaceEngine": "faceledger.scoring.calibrated",
    "FaceledgerError": "faceledger.errors",
    "DecodedImage": "faceledger.vision.imaging",
    "load_image": "faceledger.vision.imaging",
    "QualityFilter": "faceledger.vision.quality",
    "Settings": "faceledger.settings",
}

__all__ = sorted(_NAMES)
__version__ = "0.1.0"

if TYPE_CHECKING:
    from faceledger.errors import FaceledgerError
    from faceledger.models.embedding import Template
    from faceledger.scoring.calibrated import DEFAULT_COMPARE_FMR, DEFAULT_COMPARE_THRESHOLD, FaceEngine
    from faceledger.settings import Settings
    from faceledger.vision.engine import CompareResult, Detection, EmbeddedFace, Face
    from faceledger.vision.imaging import DecodedImage, load_image
    from faceledger.vision.quality import QualityFilter


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
