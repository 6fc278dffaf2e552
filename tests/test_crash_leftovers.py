"""Deleted templates are gone from every file under the store, after crashes and readers too.

Checked the way an adversary with the disk would: every file under the store's folder is
searched for the raw float32 bytes of each deleted template.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from faceledger.store import NewFace, SQLiteStore


def _templates(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _files_holding(folder: Path, vectors: np.ndarray) -> list[str]:
    """Files under ``folder`` that still hold any of ``vectors`` (as stored: float32 bytes)."""
    found = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            data = f.read_bytes()
            hits = sum(v.tobytes() in data for v in vectors)
            if hits:
                found.append(f"{f.name}: {hits} templates")
    return found


KILLED_MID_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from faceledger.store import NewFace, SQLiteStore
    from faceledger.store import sqlite as backend, vector_index
    sys.path.insert(0, sys.argv[3])
    from test_crash_leftovers import _templates
    real_replace = os.replace

    def replace(src, dst):  # the kill lands after the temporary is written, before the rename
        if str(src).endswith(".tmp.npz") and os.environ.get("ARMED"):
            print("killing", src, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)

    vector_index.os.replace = replace
    s = SQLiteStore(sys.argv[1])
    vectors = _templates(int(sys.argv[2]), 40)
    s.add_faces("gone", [NewFace(v, (0.1, 0.1, 0.5, 0.5), 99.0) for v in vectors[:20]])
    s.search("gone", vectors[0], 1)  # loads (and saves) the collection's index
    s.add_faces("gone", [NewFace(v, (0.1, 0.1, 0.5, 0.5), 99.0) for v in vectors[20:]])
    s.search("gone", vectors[0], 1)
    os.environ["ARMED"] = "1"
    s.close()  # saves the index: killed inside the save
    """
)


def test_a_kill_during_an_index_save_leaves_nothing_after_delete_collection(tmp_path):
    store = tmp_path / "store" / "s.sqlite"
    with SQLiteStore(store) as s:
        s.create_collection("gone", "m@1")
        s.create_collection("kept", "m@1")
        s.add_faces("kept", [NewFace(v, (0.1, 0.1, 0.5, 0.5), 99.0) for v in _templates(2, 5)])
    script = tmp_path / "child.py"
    script.write_text(KILLED_MID_SAVE)
    out = subprocess.run([sys.executable, str(script), str(store), "1", str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == -9 and "killing" in out.stdout, out.stderr[-2000:]
    gone = _templates(1, 40)
    assert any(f.name.endswith(".tmp.npz") for f in store.parent.rglob("*")), "the kill did not land in a save"
    assert _files_holding(store.parent, gone)  # the leftover does hold the templates
    with SQLiteStore(store) as s:
        s.delete_collection("gone")
        assert [f.face_id for f, _ in s.search("kept", _templates(2, 5)[0], 1)]  # the other collection is intact
    assert _files_holding(store.parent, gone) == []


def test_delete_collection_removes_a_live_save_leftover_of_its_own(tmp_path):
    """The temporary of a save killed in *this* store's lifetime (opened before the crash) goes with
    DeleteCollection too, not only at the next open."""
    store = tmp_path / "store" / "s.sqlite"
    with SQLiteStore(store) as s:
        s.create_collection("gone", "m@1")
    s = SQLiteStore(store)  # opened before the crash: its startup clean-up has already run
    script = tmp_path / "child.py"
    script.write_text(KILLED_MID_SAVE)
    out = subprocess.run([sys.executable, str(script), str(store), "3", str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == -9, out.stderr[-2000:]
    gone = _templates(3, 40)
    assert _files_holding(store.parent, gone)
    s.delete_collection("gone")
    s.close()
    assert _files_holding(store.parent, gone) == []


def test_a_readers_snapshot_does_not_keep_a_deleted_template(tmp_path):
    """A reader holding a WAL snapshot while faces are deleted: once it lets go, the deleted
    templates leave the WAL without waiting for some later delete."""
    store = tmp_path / "store" / "s.sqlite"
    s = SQLiteStore(store)
    s.create_collection("c", "m@1")
    vectors = _templates(5, 20)
    stored = s.add_faces("c", [NewFace(v, (0.1, 0.1, 0.5, 0.5), 99.0) for v in vectors])
    assert _files_holding(store.parent, vectors)
    reader = sqlite3.connect(store, isolation_level=None, check_same_thread=False)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM faces").fetchone()  # a snapshot from before the deletion

    release = threading.Timer(4.0, lambda: reader.execute("COMMIT"))
    release.start()
    start = time.monotonic()
    s.delete_faces("c", [f.face_id for f in stored])
    assert time.monotonic() - start < 10  # the delete does not wait for the reader for a minute
    release.join()
    deadline = time.monotonic() + 10
    while _files_holding(store.parent, vectors) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _files_holding(store.parent, vectors) == []
    reader.close()
    s.close()
