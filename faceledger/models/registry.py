"""The embedding models this installation can run: dlib's ResNet (built in) and the ONNX models a
user adds, each a folder ``<models_dir>/<name>/`` holding ``model.onnx`` and ``manifest.json``.

A model's id is ``name@digest`` (the first 12 hex digits of the SHA-256 of its weights file): it
travels with every template the model makes, binds collections and calibrations to the exact
weights, and templates of different ids are never compared. Calibrations and score normalisers
fitted for a model (``faceledger calibration fit --model``) live in the model's folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from faceledger.errors import InvalidParameterError, ResourceAlreadyExistsError, ResourceNotFoundError
from faceledger.models import files
from faceledger.models.dlib import entry as dlib_entry
from faceledger.models.manifest import Manifest, check_against_graph

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
DEFAULT_FILE = "default"


class ModelNotFoundError(ResourceNotFoundError):
    """A model name that is neither built in nor added."""


@dataclass(frozen=True)
class ModelEntry:
    manifest: Manifest
    id: files.ModelId
    builtin: bool
    folder: Path  # where its fitted calibrations live (and, for an added model, its files)

    @property
    def name(self) -> str:
        return self.manifest.name

    def onnx_path(self, cache_dir: Path | None = None) -> Path:
        return dlib_entry.onnx_file(cache_dir, self.name) if self.builtin else self.folder / MODEL_FILE


class Registry:
    def __init__(self, root: Path, cache_dir: Path | None = None) -> None:
        self.root = Path(root)
        self.cache_dir = cache_dir

    @classmethod
    def of(cls, settings) -> "Registry":
        return cls(settings.models_dir, settings.cache_dir)

    # --- reading ---------------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        out = [self.get(name) for name in dlib_entry.MANIFESTS]
        if self.root.is_dir():
            for folder in sorted(self.root.iterdir()):
                if (folder / MANIFEST_FILE).is_file() and folder.name not in dlib_entry.MANIFESTS:
                    out.append(self.get(folder.name))
        return out

    def get(self, name: str) -> ModelEntry:
        name = name.partition("@")[0]
        folder = self.root / name
        if name in dlib_entry.MANIFESTS:
            return ModelEntry(dlib_entry.MANIFESTS[name], dlib_entry.model_id(name, self.cache_dir), True, folder)
        if not (folder / MANIFEST_FILE).is_file() or not (folder / MODEL_FILE).is_file():
            known = ", ".join(m.name for m in self.entries())
            raise ModelNotFoundError(f"no model named {name!r} (known: {known}); add one with `faceledger models add`")
        manifest = Manifest.load(folder / MANIFEST_FILE)
        digest = files.file_sha256(folder / MODEL_FILE, self.cache_dir)[:12]
        return ModelEntry(manifest, files.ModelId(manifest.name, digest), False, folder)

    def default_name(self, flip: bool = True) -> str:
        marker = self.root / DEFAULT_FILE
        if marker.is_file():
            name = marker.read_text().strip()
            if name:
                return name
        return "dlib-resnet-v1-flip" if flip else "dlib-resnet-v1"

    def resolve(self, settings) -> ModelEntry:
        """The model the settings choose: ``model`` when set, else this registry's default."""
        return self.get(settings.model or self.default_name(settings.embed_flip))

    # --- changing --------------------------------------------------------------------------------

    def add(self, onnx_path: Path, manifest: Manifest, *, check: Callable[[ModelEntry], None] | None = None,
            replace: bool = False) -> ModelEntry:
        """Copy the model in, after its manifest is checked against the graph and ``check`` (which
        runs it on real faces) passes on the staged copy; nothing is left behind when either fails."""
        if manifest.name in dlib_entry.MANIFESTS:
            raise ResourceAlreadyExistsError(f"{manifest.name} is built in; choose another name")
        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            raise InvalidParameterError(f"{onnx_path} is not a file")
        target = self.root / manifest.name
        if target.exists() and not replace:
            raise ResourceAlreadyExistsError(f"a model named {manifest.name!r} exists; remove it first")
        check_against_graph(manifest, onnx_path)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.name}.", dir=self.root))
        try:
            shutil.copyfile(onnx_path, staging / MODEL_FILE)
            (staging / MANIFEST_FILE).write_text(manifest.dumps())
            staged = ModelEntry(manifest, files.ModelId(manifest.name, files.file_sha256(staging / MODEL_FILE)[:12]),
                                False, staging)
            if check is not None:
                check(staged)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.get(manifest.name)

    def remove(self, name: str) -> None:
        entry = self.get(name)
        if entry.builtin:
            raise InvalidParameterError(f"{name} is built in and cannot be removed")
        if self.default_name() == entry.name:
            (self.root / DEFAULT_FILE).unlink()
        shutil.rmtree(entry.folder)

    def set_default(self, name: str) -> ModelEntry:
        entry = self.get(name)
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".default.")
        with os.fdopen(fd, "w") as fh:
            fh.write(entry.name + "\n")
        os.replace(tmp, self.root / DEFAULT_FILE)
        return entry

    # --- running ---------------------------------------------------------------------------------

    def embedder(self, entry: ModelEntry, *, backend: str = "onnx", threads: int = 0):
        """The embedder for an entry; ``backend = dlib`` runs dlib's own network (the reference)."""
        from faceledger.models.onnx_embedder import OnnxEmbedder

        if entry.builtin and backend == "dlib":
            dlib_entry.check_backend(entry.name, backend)
            from faceledger.models.embedding import DlibResnetEmbedder

            return DlibResnetEmbedder(entry.manifest.flip)
        if backend not in ("onnx", "dlib"):
            raise InvalidParameterError(f"embedder must be onnx or dlib, not {backend!r}")
        return OnnxEmbedder(entry.manifest, entry.onnx_path(self.cache_dir), entry.id, threads=threads,
                            cache_dir=self.cache_dir)



def model_id(settings) -> files.ModelId:
    """The id of the model the settings choose (``settings.model``, else the registry's default)."""
    return Registry.of(settings).resolve(settings).id
