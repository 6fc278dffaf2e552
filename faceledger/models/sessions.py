"""ONNX Runtime sessions that skip re-optimising the same graph in every process.

ONNX Runtime rewrites a graph each time a session is made (constant folding, fusions, the CPU's
blocked layouts); for the face network, the face mesh and BlazeFace that was ~60-80 ms of CPU in
every `faceledger compare` (issue 25). The rewritten graph is saved once into
``<cache_dir>/onnx-optimized`` and later sessions load it with optimisation off: ~20 ms for the
three. The rewrite may hold layouts for this CPU's vector units, so the saved file is named by the
source file's identity (path, device, inode, size, modification and change times, as
files.file_sha256 keys a digest: a source rewritten in place with its size and modification time
kept still moves its change time, and must never run its old graph), the ONNX Runtime version and
this CPU's feature flags; another CPU, version or source makes its own. A saved file whose digest
does not match the one recorded when it was saved (models/derived.py), or that fails to load, is
made again; a source that fails to load is a ModelFileError naming the file; where the
cache cannot be written, the session is made from the source as before. Outputs are the same: it
is the graph ONNX Runtime would have run anyway.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
from pathlib import Path

from faceledger.models import derived
from faceledger.models.threads import session_options

FOLDER = "onnx-optimized"


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def optimized_path(source: Path, cache_dir: Path) -> Path:
    """Where the optimised graph of ``source`` is kept for this ONNX Runtime and this CPU."""
    import onnxruntime as ort

    st = source.stat()
    key = hashlib.sha256("\n".join(map(str, (source.resolve(), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                              st.st_ctime_ns, ort.__version__, platform.machine(),
                                              _cpu_flags()))).encode()).hexdigest()[:16]
    return Path(cache_dir) / FOLDER / f"{source.stem}-{key}.onnx"


def open_session(source: Path, threads: int, cache_dir: Path | None = None):
    """A CPU session on ``source`` with :func:`threads.session_options`; through the optimised copy
    in ``cache_dir`` when one is given (made on first use)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if cache_dir is None:
        return _from_source(source, session_options(threads), providers)
    saved = optimized_path(Path(source), cache_dir)
    if derived.usable(saved, cache_dir):  # its digest matches the one recorded when it was saved
        options = session_options(threads)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(saved), options, providers=providers)
        except Exception:  # noqa: BLE001  onnxruntime's own Fail/InvalidGraph: a damaged copy, replaced below
            pass
    options = session_options(threads)
    try:
        saved.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=saved.parent, prefix=".opt-", suffix=".onnx")
        os.close(fd)
    except OSError:  # a read-only cache: optimise in memory, as before
        return _from_source(source, options, providers)
    options.optimized_model_filepath = tmp
    options.log_severity_level = 3  # its note that the saved layouts suit this CPU: why the name holds its flags
    try:
        session = _from_source(source, options, providers)
        derived.install(Path(tmp), saved)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return session


def _from_source(source: Path, options, providers: list[str]):
    """A session on the model file itself. A file ONNX Runtime cannot read (truncated, overwritten)
    is a ModelFileError naming it and the way out, not onnxruntime's traceback."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    try:
        return ort.InferenceSession(str(source), options, providers=providers)
    except (state.InvalidProtobuf, state.InvalidGraph, state.Fail, state.NoSuchFile, state.InvalidArgument) as exc:
        from faceledger.errors import ModelFileError

        raise ModelFileError(
            f"{source}: ONNX Runtime cannot load this model file, damaged or not a model ({str(exc).strip()}). "
            "A graph converted into the cache is converted again once the file is deleted; an added model "
            "is added again with `faceledger models add`"
        ) from None
