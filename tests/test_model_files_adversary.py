"""Model files changed behind the caches' backs (issue 25 review): a file rewritten in place with its
size and modification time put back (``touch -r``) must never keep what was cached for the old
contents, and a damaged file must say which file it is."""

from __future__ import annotations

import os

import numpy as np
import pytest

from faceledger.errors import ModelFileError
from faceledger.models import sessions

onnx = pytest.importorskip("onnx")


def _scale_model(path, factor: float) -> None:
    """A one-node graph y = x * w (w: 64 floats, stored raw: every factor gives a file of one size)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full(64, factor, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "scale",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    if path.exists():  # in place: the same inode, as an editor or `dd conv=notrunc` would write it
        assert len(data) == path.stat().st_size
        with open(path, "r+b") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def test_a_source_rewritten_in_place_with_its_times_put_back_never_runs_its_old_graph(tmp_path):
    source = tmp_path / "model.onnx"
    _scale_model(source, 2.0)
    x = np.ones((1, 64), np.float32)
    assert sessions.open_session(source, 1, tmp_path / "cache").run(None, {"x": x})[0][0, 0] == 2.0
    st = source.stat()
    _scale_model(source, 3.0)  # same size, same inode
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))  # touch -r: the modification time put back
    assert (source.stat().st_size, source.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    # the saved optimised copy of the old contents is not this file's: the new weights run
    assert sessions.open_session(source, 1, tmp_path / "cache").run(None, {"x": x})[0][0, 0] == 3.0


def test_a_damaged_source_is_a_model_file_error_naming_it(tmp_path):
    source = tmp_path / "model.onnx"
    _scale_model(source, 2.0)
    source.write_bytes(source.read_bytes()[:40])  # truncated
    for cache in (tmp_path / "cache", None):
        with pytest.raises(ModelFileError, match="model.onnx"):
            sessions.open_session(source, 1, cache)


def test_a_damaged_kept_digest_is_hashed_again(tmp_path, monkeypatch):
    """The digest kept for the weights (models/files.py) becomes the model id: an entry that is
    not a hex SHA-256 (a damaged cache) is not taken for one."""
    import hashlib
    import time

    from faceledger.models import files

    monkeypatch.setattr(files, "_SETTLED_NS", 0)  # kept at once: the settle time is another test's
    weights, cache = tmp_path / "w.dat", tmp_path / "cache"
    weights.write_bytes(b"a" * 4096)
    time.sleep(0.01)
    real = hashlib.sha256(b"a" * 4096).hexdigest()
    assert files.kept_sha256(weights, cache) == real
    (kept,) = (cache / "sha256").iterdir()
    stamp, _, digest = kept.read_text().rpartition(" ")
    assert digest == real
    for damaged in ("z" * 64, "\x00" * 64, real.upper()[:63] + " "):
        kept.write_text(f"{stamp} {damaged}")
        assert files.kept_sha256(weights, cache) == real


def test_a_damaged_added_model_says_so_once(tmp_path):
    """An added model's file that ONNX Runtime cannot read: the engine's error names it once."""
    from faceledger.models.files import ModelId
    from faceledger.models.manifest import Alignment, Manifest
    from faceledger.models.onnx_embedder import OnnxEmbedder

    source = tmp_path / "model.onnx"
    _scale_model(source, 2.0)
    source.write_bytes(source.read_bytes()[:40])
    manifest = Manifest(name="scale", dimension=64, input_size=(8, 8), alignment=Alignment("dlib-chip", 0.25),
                        input="rgb", licence="CC0-1.0", source="test")
    with pytest.raises(ModelFileError) as info:
        OnnxEmbedder(manifest, source, ModelId("scale", "0" * 12), threads=1, cache_dir=tmp_path / "cache")
    assert info.value.message.count("cannot load") == 1, info.value.message
