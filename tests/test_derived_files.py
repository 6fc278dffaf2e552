"""Derived model files in the cache (converted and optimised ONNX graphs) altered after they were
written (issue 25 review): trusted by name, an altered copy ran silently under its source's model id.
Each is now checked against the digest recorded when it was written; a mismatch is made again from
its source, named on stderr. And `models prune` removes only what no current key names."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from faceledger.models import derived, sessions
from tests.test_model_files_adversary import _scale_model

onnx = pytest.importorskip("onnx")

X = np.ones((1, 64), np.float32)


def _alter_in_place(path, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` (same length) inside the file, on its inode, and put its size and
    modification time back, as `dd conv=notrunc` then `touch -r` would."""
    st = path.stat()
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    with open(path, "r+b") as fh:
        fh.write(data.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns, path.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


@pytest.fixture
def optimised(tmp_path):
    """A one-node source (y = 2x), its optimised copy saved in the cache, and the copy's path."""
    source, cache = tmp_path / "model.onnx", tmp_path / "cache"
    _scale_model(source, 2.0)
    assert sessions.open_session(source, 1, cache).run(None, {"x": X})[0][0, 0] == 2.0
    saved = sessions.optimized_path(source, cache)
    assert saved.is_file() and derived.record_path(saved).is_file()
    return source, cache, saved


def test_an_optimised_graph_altered_in_place_is_made_again_from_its_source(optimised, capsys):
    source, cache, saved = optimised
    _alter_in_place(saved, np.full(64, 2.0, np.float32).tobytes(), np.full(64, 5.0, np.float32).tobytes())
    assert sessions.optimized_path(source, cache) == saved  # the same name: trusted by name, it would run 5x
    capsys.readouterr()
    assert sessions.open_session(source, 1, cache).run(None, {"x": X})[0][0, 0] == 2.0  # the source's output
    err = capsys.readouterr().err
    assert str(saved) in err and "do not match" in err and err.count("\n") == 1
    assert derived.problem(saved, cache) is None  # rebuilt and recorded: the next open is quiet
    sessions.open_session(source, 1, cache)
    assert capsys.readouterr().err == ""


def test_a_forged_or_missing_record_is_made_again(optimised, capsys):
    source, cache, saved = optimised
    record = derived.record_path(saved)
    record.write_text(f"{'0' * 64}  {saved.name}\n")  # the record forged, the file untouched
    capsys.readouterr()
    assert sessions.open_session(source, 1, cache).run(None, {"x": X})[0][0, 0] == 2.0
    assert str(saved) in capsys.readouterr().err
    assert record.read_text().split()[0] != "0" * 64
    record.unlink()  # a copy from before records (or whose record was lost): not run unchecked
    sessions.open_session(source, 1, cache)
    assert "no digest recorded" in capsys.readouterr().err and record.is_file()


def test_a_converted_graph_altered_in_place_is_converted_again(tmp_path, capsys):
    """dlib's MMOD network converted into <cache>/onnx (the small one: the face network's conversion
    is test_onnx's); a weight altered in place with its size and time kept is converted again."""
    from faceledger.models.dlib.onnx_export import converted_model
    from faceledger.models.files import MMOD, model_path

    target = converted_model(model_path(MMOD), tmp_path)
    assert target.parent == tmp_path / "onnx" and derived.problem(target, tmp_path) is None
    good = target.read_bytes()
    model = onnx.load(str(target))
    weights = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    chunk = weights.raw_data[:64]
    _alter_in_place(target, chunk, bytes(64))
    capsys.readouterr()
    assert converted_model(model_path(MMOD), tmp_path) == target
    assert str(target) in capsys.readouterr().err
    assert target.read_bytes() == good  # the source's conversion again (deterministic)


def test_prune_removes_only_what_no_current_key_names(tmp_path):
    k = ["%016x" % i for i in range(1, 7)]
    onnx_dir, opt = tmp_path / "onnx", tmp_path / "onnx-optimized"
    onnx_dir.mkdir()
    opt.mkdir()
    today = [onnx_dir / f"a-{k[0]}.onnx", opt / f"a-{k[0]}-{k[1]}.onnx"]
    stale = [onnx_dir / f"a-{k[2]}.onnx", opt / f"a-{k[0]}-{k[3]}.onnx", opt / f"a-{k[2]}-{k[4]}.onnx"]
    unknown = [onnx_dir / f"bench-{k[5]}.onnx", onnx_dir / "notes.txt", opt / "b.onnx"]
    for p in today + stale + unknown:
        p.write_bytes(b"x" * 100)
    for p in today + stale[:1]:
        staged = p.with_name(".staged-" + p.name)
        staged.write_bytes(p.read_bytes())
        derived.install(staged, p)
    orphan = derived.record_path(onnx_dir / f"gone-{k[1]}.onnx")
    orphan.write_text("0" * 64 + "  gone\n")

    expected = 300 + derived.record_path(stale[0]).stat().st_size + orphan.stat().st_size
    removed = derived.prune(tmp_path, set(today), dry_run=True)
    assert {r.path for r in removed} == set(stale) | {orphan} and all(p.exists() for p in stale)
    removed = derived.prune(tmp_path, set(today))
    assert {r.path for r in removed} == set(stale) | {orphan}
    assert sum(r.bytes for r in removed) == expected
    assert all(p.exists() for p in today + unknown) and all(derived.record_path(p).exists() for p in today)
    assert not any(p.exists() for p in stale) and not derived.record_path(stale[0]).exists() and not orphan.exists()


def test_current_names_the_files_the_code_would_open(tmp_path):
    """`models prune`'s notion of today's files: a cache holding exactly those and their stale
    siblings loses the siblings only; an optimised copy follows its source file's identity."""
    from faceledger.models import blazeface, facemesh
    from faceledger.models.dlib.onnx_export import converted_path
    from faceledger.models.files import RESNET, model_path

    names = derived.current(tmp_path)
    assert {blazeface.onnx_path(tmp_path), facemesh.onnx_path(tmp_path),
            converted_path(model_path(RESNET), tmp_path)} <= names
    for p in names:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"graph")
    names = derived.current(tmp_path)  # now with the optimised copies of the files that exist
    for p in names - set(p for p in names if p.exists()):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"graph")
    assert names == derived.current(tmp_path)
    stale = tmp_path / "onnx" / f"facemesh-{'0' * 16}.onnx"
    stale.write_bytes(b"old")
    removed = derived.prune(tmp_path, names)
    assert [r.path for r in removed] == [stale] and all(p.exists() for p in names)


def test_models_prune_command_reports_json(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from faceledger.interfaces.cli.main import app

    monkeypatch.setenv("FACELEDGER_CACHE_DIR", str(tmp_path))
    stale = tmp_path / "onnx" / f"facemesh-{'0' * 16}.onnx"
    stale.parent.mkdir()
    stale.write_bytes(b"old" * 10)
    (tmp_path / "onnx" / f"facemesh-{'1' * 16}.onnx").write_bytes(b"x")  # not today's either: pruned too
    r = CliRunner().invoke(app, ["models", "prune", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["BytesFreed"] == 31 and not stale.exists() and len(out["Removed"]) == 2


def test_a_damaged_converted_graph_that_cannot_be_made_again_is_a_model_file_error_naming_it(tmp_path, capsys):
    from faceledger.errors import ModelFileError
    from faceledger.models import facemesh

    target = facemesh.onnx_path(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the mesh")  # no record: it would have run (and failed, or worse) unchecked
    with pytest.raises(ModelFileError, match=target.name) as info:
        facemesh.onnx_file(tmp_path / "no-packages", tmp_path, allow_download=False)
    assert "models download" in info.value.message
    assert str(target) in capsys.readouterr().err


def test_a_file_failing_its_check_stays_in_place_until_replaced(tmp_path):
    """Another process may be opening it (two index workers start together on a fresh cache): the
    check names it and lets the caller replace it by rename, never unlinks it under them."""
    target = tmp_path / "onnx" / f"m-{'1' * 16}.onnx"
    target.parent.mkdir()
    staged = tmp_path / "onnx" / ".staged"
    staged.write_bytes(b"good" * 100)
    derived.install(staged, target)
    assert derived.usable(target, tmp_path) and not staged.exists()
    inode = target.stat().st_ino
    with open(target, "r+b") as fh:  # altered in place: same inode and size
        fh.write(b"bad!")
    assert not derived.usable(target, tmp_path)
    assert target.is_file() and target.stat().st_ino == inode and derived.record_path(target).is_file()
    staged.write_bytes(b"good" * 100)
    derived.install(staged, target)
    assert derived.usable(target, tmp_path) and target.read_bytes() == b"good" * 100
