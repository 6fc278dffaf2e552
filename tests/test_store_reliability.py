"""The store under crashes and concurrent writers: nothing reported is lost, nothing orphaned."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faceledger import errors
from faceledger.store import NewFace, SQLiteStore


def _env(store: Path) -> dict:
    return {**os.environ, "FACELEDGER_STORE": str(store)}


def _unit(rng, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _check_consistent(store: SQLiteStore, name: str) -> dict:
    report = store.verify(name, repair=False)
    assert report["missing"] == 0 and report["orphans"] == 0, report
    return report


def test_sigkill_during_bulk_index_loses_nothing_reported(lfw, tmp_path):
    """Kill `faceledger index` at random moments, 10 times; every face it reported survives."""
    store_path = tmp_path / "store.sqlite"
    with SQLiteStore(store_path) as s:
        from faceledger.models.embedding import DlibResnetEmbedder

        s.create_collection("bulk", str(DlibResnetEmbedder.model_id()))
    people = lfw.people()
    files = [str(p) for name, n in (("George_W_Bush", 200), ("Colin_Powell", 100), ("Tony_Blair", 100))
             for p in people[name][:n]]
    reported: dict[str, str] = {}  # face id -> image
    remaining = list(files)
    rng = random.Random(7)
    kills = 0
    while kills < 10 and remaining:
        proc = subprocess.Popen(
            [sys.executable, "-m", "faceledger.interfaces.cli.main", "index", "bulk", *remaining, "--json", "--quality-filter", "NONE"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(store_path), text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not lines and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # start-up time varies with load: kill only once indexing has begun
        time.sleep(rng.uniform(0.0, 1.0))  # then at a random moment, ~0.05 s per image
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(10)
        kills += proc.returncode == -signal.SIGKILL
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line the kill cut in half
            for rec in row.get("FaceRecords", []):
                reported[rec["Face"]["FaceId"]] = row["Image"]
            if "Image" in row and row["Image"] in remaining:
                remaining.remove(row["Image"])
    assert kills >= 8, "the runs finished before they could be killed"
    assert reported, "no run got far enough to report a face"
    # the same command once more, over every file: it resumes, and each image ends up indexed once,
    # even one whose commit a kill landed after but whose line it cut (idempotent by digest and id)
    done = subprocess.run([sys.executable, "-m", "faceledger.interfaces.cli.main", "index", "bulk", *files, "--json",
                           "--quality-filter", "NONE"], capture_output=True, env=_env(store_path), text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["Summary"]
    assert summary["AlreadyIndexed"] >= len(files) - len(remaining)
    with SQLiteStore(store_path) as s:
        faces = s.get_faces("bulk", list(reported), vectors=True)
        assert set(faces) == set(reported), "a face reported as indexed is missing"
        every, _ = s.list_faces("bulk", None, 4096)
        images_of: dict[str, set[str]] = {}
        for f in every:
            images_of.setdefault(f.external_image_id, set()).add(f.image_id)
        twice = {ext: ids for ext, ids in images_of.items() if len(ids) > 1}
        assert not twice, f"images indexed more than once: {sorted(twice)[:5]}"
        assert set(images_of) == {Path(f).stem for f in files} - _faceless(done.stdout)
        _check_consistent(s, "bulk")


def _faceless(jsonl: str) -> set[str]:
    """ExternalImageIds of the images a run found no face in (never stored, so never skipped)."""
    out = set()
    for line in jsonl.splitlines():
        row = json.loads(line)
        if "FaceRecords" in row and not row["FaceRecords"]:
            out.add(Path(row["Image"]).stem)
    return out


CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from faceledger.store import NewFace, SQLiteStore
    from faceledger.store import sqlite as backend
    backend.SAVE_EVERY = 7  # save the index file often, so kills land inside saves too
    rng = np.random.default_rng(int(sys.argv[2]))
    s = SQLiteStore(sys.argv[1])
    while True:
        v = rng.normal(size=(3, 128)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        stored = s.add_faces("c", [NewFace(x, (0.1, 0.1, 0.5, 0.5), 99.0) for x in v])
        s.search("c", v[0], 5)
        print(" ".join(f.face_id for f in stored), flush=True)
    """
)


def test_sigkill_during_writes_and_index_saves(tmp_path):
    """A writer killed anywhere (mid-transaction, mid-index-save) leaves a consistent store."""
    store_path = tmp_path / "s.sqlite"
    with SQLiteStore(store_path) as s:
        s.create_collection("c", "m@1")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    acknowledged: set[str] = set()
    rng = random.Random(3)
    for run in range(12):
        proc = subprocess.Popen([sys.executable, str(script), str(store_path), str(run)], stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.6, 1.5))
        proc.kill()
        stdout, _ = proc.communicate()
        for line in stdout.splitlines()[:-1]:  # the last line may be cut
            acknowledged.update(line.split())
        with SQLiteStore(store_path) as s:  # every reopen must find a consistent store
            _check_consistent(s, "c")
    with SQLiteStore(store_path) as s:
        present = s.get_faces("c", list(acknowledged))
        assert set(present) == acknowledged
        assert s.get_collection("c").face_count >= len(acknowledged)
    assert len(acknowledged) > 100


def test_two_processes_indexing_one_collection_lose_nothing(lfw, tmp_path):
    store_path = tmp_path / "store.sqlite"
    from faceledger.models.embedding import DlibResnetEmbedder

    with SQLiteStore(store_path) as s:
        s.create_collection("shared", str(DlibResnetEmbedder.model_id()))
    a = [str(p) for p in lfw.people()["George_W_Bush"][:12]]
    b = [str(p) for p in lfw.people()["Gerhard_Schroeder"][:12]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "faceledger.interfaces.cli.main", "index", "shared", *files, "--json", "--quality-filter", "NONE"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(store_path), text=True,
        )
        for files in (a, b)
    ]
    reported = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        rows = [json.loads(line) for line in stdout.splitlines()]
        reported += [r["Face"]["FaceId"] for row in rows for r in row.get("FaceRecords", [])]
    assert len(reported) >= 24
    with SQLiteStore(store_path) as s:
        assert s.get_collection("shared").face_count == len(reported)
        assert set(s.get_faces("shared", reported)) == set(reported)
        _check_consistent(s, "shared")


def test_a_write_in_one_process_is_seen_by_a_search_in_another(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "s.sqlite"
    writer, reader = SQLiteStore(path), SQLiteStore(path)
    writer.create_collection("c", "m@1")
    v = _unit(rng, 20)
    stored = writer.add_faces("c", [NewFace(x, (0, 0, 1, 1), 99.0) for x in v[:10]])
    assert reader.search("c", v[3], 1)[0][0].face_id == stored[3].face_id
    more = writer.add_faces("c", [NewFace(x, (0, 0, 1, 1), 99.0) for x in v[10:]])
    assert reader.search("c", v[15], 1)[0][0].face_id == more[5].face_id
    writer.delete_faces("c", [more[5].face_id])
    assert more[5].face_id not in [f.face_id for f, _ in reader.search("c", v[15], 20)]
    writer.close()
    reader.close()


def test_a_lost_or_damaged_index_file_is_rebuilt_from_sqlite(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as s:
        s.create_collection("c", "m@1")
        v = _unit(rng, 50)
        stored = s.add_faces("c", [NewFace(x, (0, 0, 1, 1), 99.0) for x in v])
        s.search("c", v[0], 1)  # builds and (on close) saves the index
    (index_file,) = (tmp_path / "s.index").glob("*.npz")
    index_file.write_bytes(b"garbage")
    with SQLiteStore(path) as s:
        assert s.search("c", v[7], 1)[0][0].face_id == stored[7].face_id
        _check_consistent(s, "c")
    index_file.unlink()
    with SQLiteStore(path) as s:
        assert s.search("c", v[9], 1)[0][0].face_id == stored[9].face_id


def test_a_file_that_is_not_a_store(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(errors.StoreCorruptionError):
        SQLiteStore(bad)


def test_large_collections_use_the_quantised_index_and_still_find_and_forget(tmp_path):
    """Past EXACT_BELOW the IVF index serves searches; stored faces find themselves, removed ones
    are gone from it and from the saved files, and a save/load round trip keeps the trained index."""
    from faceledger.store.vector_index import VectorIndex

    rng = np.random.default_rng(5)
    data = _unit(rng, 42_000)
    ix = VectorIndex(128, exact_below=40_000)
    ix.add(np.arange(1, 42_001), data[:42_000], new=True)
    assert ix._ivf is not None
    keys, scores = ix.search(data[123], 5)
    assert keys[0] == 124 and scores[0] > 0.999
    ix.remove([124])
    assert 124 not in ix.search(data[123], 50)[0]
    path = tmp_path / "i.npz"
    ix.save(path, {"seq": 1})
    for f in tmp_path.iterdir():
        assert data[123].tobytes() not in f.read_bytes(), f
    loaded, meta = VectorIndex.load(path, 128)  # keeps the saved, trained IVF
    assert meta["seq"] == 1 and len(loaded) == 41_999 and loaded._ivf is not None
    assert loaded.search(data[7], 1)[0][0] == 8
