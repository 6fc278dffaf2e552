"""Bulk indexing's batched writes keep the gate's promises: every image has its own intent and
outcome entries, every intent of a batch is committed before any of its faces, a SIGKILL inside or
right after a batch's store transaction leaves no face without its intent, and the same command
run again resumes without indexing an image twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from faceledger import errors
from faceledger.governance.gate import Gate
from faceledger.governance.ledger import Ledger
from faceledger.governance.policy import Context, Policy, Principal
from faceledger.store import SQLiteStore

ADMIN = Context(Principal("op", ("admin",), ("*",)), None, None)
ITEMS = [{"collection": "c", "digests": ["a" * 64]}, {"collection": "c", "digests": ["b" * 64]}]


def test_a_batch_writes_every_intent_before_it_runs_and_an_outcome_for_each(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", busy_ms=200)
    gate = Gate(None, Policy.load("moratorium"), ledger)
    seen = []

    def run():
        seen.append(ledger.end()[0])  # what the ledger held when the batch was stored
        return [{"face_records": []}, errors.InvalidParameterError("bad ExternalImageId")]

    results = gate.call_batch(ADMIN, "IndexFaces", ITEMS, run)
    *_, i1, i2, o1, o2 = list(ledger.entries())
    assert seen == [i2.seq] and [i1.body["phase"], i2.body["phase"]] == ["intent", "intent"]
    assert [i1.body["image_sha256"], i2.body["image_sha256"]] == [["a" * 64], ["b" * 64]]
    assert (o1.body["intent"], o1.body["outcome"]) == (i1.seq, "ok")
    assert (o2.body["intent"], o2.body["outcome"]) == (i2.seq, "InvalidParameterException")
    assert isinstance(results[1], errors.InvalidParameterError) and results[1].ledger_recorded
    assert ledger.verify()[1] == []


def test_a_batch_is_refused_whole_when_the_ledger_cannot_take_its_intents(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", busy_ms=200)
    gate = Gate(None, Policy.load("moratorium"), ledger)
    ran = []
    blocker = sqlite3.connect(ledger.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holding the ledger
    try:
        with pytest.raises(errors.BackendUnavailableError):
            gate.call_batch(ADMIN, "IndexFaces", ITEMS, lambda: ran.append(1) or [None, None])
    finally:
        blocker.execute("ROLLBACK")
    assert ran == []  # nothing stored without its intents


def test_a_refused_batch_runs_nothing_and_records_each_image(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite")
    gate = Gate(None, Policy.load("moratorium"), ledger)
    nobody = Context(Principal("guest", ("reviewer",), ("*",)), None, None)
    with pytest.raises(errors.AccessDeniedError):
        gate.call_batch(nobody, "IndexFaces", ITEMS, lambda: pytest.fail("ran for a refused principal"))
    refused = [e.body for e in ledger.entries_of("IndexFaces")]
    assert [e["outcome"] for e in refused] == ["AccessDeniedException"] * 2
    assert [e["image_sha256"] for e in refused] == [["a" * 64], ["b" * 64]]


# A bulk index whose batch is killed by SIGKILL inside its store transaction (before COMMIT) or
# right after it (before the outcomes are written).
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from faceledger.settings import Settings
    from faceledger.governance.app import open_gate
    from faceledger.governance.bulk import BatchedIndex
    from faceledger.governance.policy import Context, Principal
    from faceledger.service.operations import prepare_index
    from faceledger.store import sqlite as backend

    when, paths = sys.argv[1], sys.argv[2:]
    gate = open_gate(Settings.load())
    gate.service.create_collection("c")
    ctx = Context(Principal("local:test", gate.policy.local_roles, ("*",)), None, None, "cli")
    prepared = [prepare_index(gate.service.engine, p, quality_filter="NONE") for p in paths]

    class Killed(backend._Transaction):
        def __exit__(self, kind, exc, tb):
            if when == "after-commit":
                super().__exit__(kind, exc, tb)
            os.kill(os.getpid(), signal.SIGKILL)

    store = gate.service.store
    store._tx = lambda: Killed(store._db)
    batch = BatchedIndex(gate, ctx, "c", size=len(paths))
    for p, prep in zip(paths, prepared):
        batch.add(p, prep, Path(p).stem)
    """
)


@pytest.mark.parametrize("when", ["in-transaction", "after-commit"])
def test_a_kill_in_a_batch_leaves_no_face_without_its_intent_and_resumes(when, tmp_path, lfw):
    paths = [str(lfw.image(p, 1)) for p in ("Colin_Powell", "Tony_Blair", "Serena_Williams", "Hugo_Chavez")]
    env = {**os.environ, "FACELEDGER_STORE": str(tmp_path / "s.sqlite"), "FACELEDGER_LEDGER": str(tmp_path / "l.sqlite"),
           "FACELEDGER_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, when, *paths], env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    ledger = Ledger(tmp_path / "l.sqlite", create=False)
    assert ledger.verify()[1] == []
    entries = list(ledger.entries_of("IndexFaces"))
    intents = {d for e in entries if e.body.get("phase") == "intent" for d in e.body["image_sha256"]}
    assert not [e for e in entries if e.body.get("phase") == "outcome"]  # the kill came before them
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        faces, _ = store.list_faces("c", None, 100)
        digests = {row[0] for row in store._db.execute("SELECT image_sha256 FROM faces")}
    assert digests <= intents, "a face was stored without its image's intent entry"
    assert len(intents) == len(paths)
    if when == "in-transaction":
        assert faces == []  # the batch's store transaction is all or nothing
        return
    assert len(digests) == len(paths)
    done = subprocess.run([sys.executable, "-m", "faceledger.interfaces.cli.main", "index", "c", *paths, "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["Summary"]
    assert summary["AlreadyIndexed"] == len(paths) and summary["FacesIndexed"] == 0
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        assert len(store.list_faces("c", None, 100)[0]) == len(faces)  # nothing indexed twice
    assert Path(tmp_path / "s.sqlite").exists()


def test_images_prepared_together_get_the_templates_they_get_one_by_one(engine, lfw, tmp_path):
    """Workers detect a task's images step by step over all of them (FaceEngine.detect_many) and
    embed their faces in one batch: the same templates, faces, landmarks and quality as one image
    at a time; an unreadable or missing image gives its error in its place and spoils no other."""
    import numpy as np

    from faceledger.service.operations import prepare_index, prepare_index_many

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    missing = tmp_path / "missing.jpg"
    paths = [lfw.image("Colin_Powell", 1), broken, lfw.image("Alejandro_Toledo", 39), missing, lfw.image("Tony_Blair", 2),
             lfw.image("Serena_Williams", 1)]  # Toledo 39: three faces
    together = prepare_index_many(engine, paths, quality_filter="NONE")
    assert isinstance(together[1], errors.FaceledgerError) and isinstance(together[3], FileNotFoundError)
    for path, batched in ((p, t) for p, t in zip(paths, together) if p not in (broken, missing)):
        alone = prepare_index(engine, path, quality_filter="NONE")
        assert batched.sha256 == alone.sha256 and len(batched.indexed) == len(alone.indexed) >= 1
        assert [d.bounding_box for d in batched.indexed] == [d.bounding_box for d in alone.indexed]
        assert [d.landmarks for d in batched.indexed] == [d.landmarks for d in alone.indexed]
        assert batched.qualities == alone.qualities
        assert np.abs(batched.vectors - alone.vectors).max() < 1e-5


def test_images_detected_together_stay_within_the_decode_budget(settings, lfw):
    """detect_many holds every image of a task decoded at once: when they would not fit in the
    decode budget together, they are detected one at a time (the same faces), and an image over
    the budget alone is refused in its place, before it is decoded (planted: holding the whole
    task's pixels regardless -> the batch is refused whole and the test fails)."""
    from faceledger.vision.engine import FaceEngine
    from faceledger.vision.imaging import decode_cost

    paths = [lfw.image("Colin_Powell", 1), lfw.image("Tony_Blair", 2)]
    one = decode_cost(paths[0].read_bytes())
    tight = FaceEngine(settings.replace(decode_budget_bytes=int(one * 1.5), landmark_model="none"))
    together = tight.detect_many(paths)
    assert [len(d.faces) for d in together] == [len(tight.detect(p).faces) for p in paths] == [1, 1]
    assert [d.faces[0].bounding_box for d in together] == [tight.detect(p).faces[0].bounding_box for p in paths]
    small = FaceEngine(settings.replace(decode_budget_bytes=one // 2, landmark_model="none"))
    refused = small.detect_many(paths)
    assert all(isinstance(r, errors.TooManyPixelsError) for r in refused)
