"""Any declared model on ONNX Runtime: aligned chips -> unit templates, as its manifest says."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from faceledger.errors import ModelFileError
from faceledger.models.embedding import normalise
from faceledger.models.files import ModelId
from faceledger.models.manifest import Manifest


class OnnxEmbedder:
    """Chips arrive as uint8 RGB at the manifest's input size, aligned to its template; colour
    order, pixel normalisation, layout and mirror averaging follow the manifest."""

    batch_size = 32

    def __init__(self, manifest: Manifest, path: Path, model: ModelId, *, threads: int = 0,
                 input_name: str = "", output_name: str = "", cache_dir: Path | None = None) -> None:
        """``cache_dir``: where its optimised graph is kept (models/sessions.py); None: optimised in memory."""
        from faceledger.models.sessions import open_session

        try:
            self._session = open_session(path, threads, cache_dir)  # threads 0: one per core
        except ModelFileError:  # already names the file and the way out (sessions._from_source)
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph classes
            raise ModelFileError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.manifest = manifest
        self.model = model
        self.flip = manifest.flip
        self.dimension = manifest.dimension
        self._input = input_name or manifest.input or self._session.get_inputs()[0].name
        self._output = output_name or manifest.output or self._session.get_outputs()[0].name
        self._mean = np.asarray(manifest.mean, np.float32)
        self._std = np.asarray(manifest.std, np.float32)

    def raw(self, chips: np.ndarray) -> np.ndarray:
        """(n, h, w, 3) RGB chips -> the network's (n, d) outputs, unnormalised."""
        out = []
        for start in range(0, len(chips), self.batch_size):
            part = np.asarray(chips[start : start + self.batch_size], dtype=np.float32)
            if self.manifest.colour == "BGR":
                part = part[..., ::-1]
            if self.manifest.mean != (0.0, 0.0, 0.0) or self.manifest.std != (1.0, 1.0, 1.0):
                part = (part - self._mean) / self._std
            if self.manifest.layout == "NCHW":
                part = part.transpose(0, 3, 1, 2)
            got = self._session.run([self._output], {self._input: np.ascontiguousarray(part)})[0]
            out.append(np.asarray(got, np.float32).reshape(len(part), -1))
        return np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = np.stack([np.asarray(c) for c in chips])
        if self.flip:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        raw = self.raw(batch)
        if raw.shape[1] != self.dimension:
            raise ModelFileError(f"model {self.model} gave {raw.shape[1]} values per face; its manifest declares "
                                 f"{self.dimension}")
        if self.flip:
            raw = raw[: len(chips)] + raw[len(chips) :]
        return normalise(raw)
