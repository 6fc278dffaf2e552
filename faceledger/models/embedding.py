"""Aligned chips -> unit-length templates, each tagged with the model that made it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import dlib
import numpy as np

from faceledger.models import files as models
from faceledger.errors import InvalidParameterError, ModelMismatchError


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
    chip_size: int

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, h, w, 3) uint8 chips -> (n, d) float32 unit vectors."""
        ...


class DlibResnetEmbedder:
    """dlib's 29-layer ResNet (the face_recognition library's model), 128-D.

    With ``flip``, each template is the normalised sum of the chip's and its mirror image's
    descriptors: a standard test-time augmentation that trades 2x time for accuracy.
    """

    chip_size = 150
    dimension = 128

    def __init__(self, flip: bool = True) -> None:
        self._net = dlib.face_recognition_model_v1(str(models.model_path(models.RESNET)))
        self.flip = flip
        self.model = self.model_id(flip)

    @staticmethod
    def model_id(flip: bool = True) -> models.ModelId:
        name = "dlib-resnet-v1-flip" if flip else "dlib-resnet-v1"
        return models.ModelId(name, models.file_sha256(models.model_path(models.RESNET))[:12])

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


class OnnxResnetEmbedder:
    """The same network on ONNX Runtime: the graph is converted from dlib's own ``.dat`` file at
    first use (dlib_format reads it, onnx_export writes the graph) into ``<cache>/onnx/``, keyed
    by the file's SHA-256. Same outputs as dlib to ~1e-7 (docs/onnx.md), so its templates carry
    the same model id and mix freely with dlib's; about 25x faster on 2 cores."""

    chip_size = 150
    dimension = 128
    batch_size = 32

    def __init__(self, flip: bool = True, cache_dir: Path | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        from faceledger.models.dlib.onnx_export import converted_model

        path = converted_model(models.model_path(models.RESNET), cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.flip = flip
        self.model = DlibResnetEmbedder.model_id(flip)

    def raw(self, chips: np.ndarray) -> np.ndarray:
        """(n, 150, 150, 3) chips -> the network's (n, 128) outputs, as dlib's compute_face_descriptor."""
        out = []
        for start in range(0, len(chips), self.batch_size):
            part = np.asarray(chips[start : start + self.batch_size], dtype=np.float32)
            out.append(self._session.run(None, {"rgb": part})[0])
        return np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = np.stack([np.asarray(c) for c in chips])
        if self.flip:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        raw = self.raw(batch)
        if self.flip:
            raw = raw[: len(chips)] + raw[len(chips) :]
        return normalise(raw)


def make_embedder(backend: str, flip: bool, cache_dir: Path | None = None, threads: int = 0) -> "Embedder":
    """``onnx`` (the default: dlib's network on ONNX Runtime) or ``dlib`` (dlib itself, the reference)."""
    if backend == "onnx":
        return OnnxResnetEmbedder(flip, cache_dir, threads)
    if backend == "dlib":
        return DlibResnetEmbedder(flip)
    raise InvalidParameterError(f"embedder must be onnx or dlib, not {backend!r}")
