"""Aligned chips -> unit-length templates, each tagged with the model that made it; and dlib's own
runtime for its ResNet (the reference the ONNX runtime is checked against)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import dlib
import numpy as np

from faceledger.models import files as models
from faceledger.errors import ModelMismatchError


@dataclass(frozen=True)
class Template:
    vector: np.ndarray  # (d,) float32, unit L2 norm
    model: models.ModelId

    def similarity(self, other: "Template") -> float:
        """Cosine similarity in [-1, 1]; refuses templates of different models."""
        return cosine(self, other)


def cosine(a: Template, b: Template) -> float:
    if a.model != b.model:
        raise ModelMismatchError(
            f"templates from different models cannot be compared: {a.model} vs {b.model}; "
            "re-embed both images with the same model"
        )
    return float(np.dot(a.vector, b.vector))


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Embedder(Protocol):
    model: models.ModelId

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, h, w, 3) uint8 chips -> (n, d) float32 unit vectors."""
        ...


class DlibResnetEmbedder:
    """dlib's 29-layer ResNet (the face_recognition library's model), 128-D.

    With ``flip``, each template is the normalised sum of the chip's and its mirror image's
    descriptors: a standard test-time augmentation that trades 2x time for accuracy.
    """

    dimension = 128

    def __init__(self, flip: bool = True) -> None:
        self._net = dlib.face_recognition_model_v1(str(models.model_path(models.RESNET)))
        self.flip = flip
        self.model = self.model_id(flip)

    @staticmethod
    def model_id(flip: bool = True) -> models.ModelId:
        from faceledger.models.dlib.entry import model_id

        return model_id("dlib-resnet-v1-flip" if flip else "dlib-resnet-v1")

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = [np.ascontiguousarray(c) for c in chips]
        if self.flip:
            batch += [np.ascontiguousarray(c[:, ::-1]) for c in chips]
        raw = np.array([np.asarray(d) for d in self._net.compute_face_descriptor(batch)])
        if self.flip:
            raw = raw[: len(chips)] + raw[len(chips) :]
        return normalise(raw)
