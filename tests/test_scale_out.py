"""Scale-out on real engines: service processes sharing PostgreSQL and a Milvus server, dropped
connections, the policy and keys every replica sees, and batch work on a local Ray cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from typer.testing import CliRunner

from faceledger import errors
from faceledger.governance.app import open_gate, open_service
from faceledger.governance.ledger_pg import APPEND_LOCK, PostgresLedger
from faceledger.governance.policy import Context, Principal

from .cluster import milvus_server, ray_head

FACELEDGER = str(Path(sys.executable).parent / "faceledger")


@pytest.fixture(scope="module")
def milvus():
    with milvus_server() as server:
        yield server


def _env(tmp_path: Path, **settings: str) -> dict:
    env = {**os.environ, "FACELEDGER_STORE": str(tmp_path / "unused.sqlite"), "FACELEDGER_POLICY": "open",
           "FACELEDGER_LEDGER": str(tmp_path / "unused-ledger.sqlite")}
    env.update({f"FACELEDGER_{k.upper()}": v for k, v in settings.items()})
    return env


def _copy_images(lfw, people: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for name in people:
        target = folder / f"{name}.jpg"
        target.write_bytes(lfw.image(name, 1).read_bytes())
        out.append(target)
    return out


def test_two_replicas_share_postgres_and_milvus(fresh_db, milvus, lfw, tmp_path):
    """Two processes index into one collection at once and search it; nothing is lost, the
    ledger is one chain that verifies, and each image has its IndexFaces entry."""
    env = _env(tmp_path, database=fresh_db, store_backend="milvus", milvus_uri=milvus.uri)
    run = dict(env=env, capture_output=True, text=True, timeout=300)
    assert subprocess.run([FACELEDGER, "collection", "create", "shared"], **run).returncode == 0
    people = [n for n, paths in sorted(lfw.people().items()) if len(paths) >= 2][:16]
    folders = [tmp_path / "a", tmp_path / "b"]
    _copy_images(lfw, people[:8], folders[0])
    _copy_images(lfw, people[8:], folders[1])
    procs = [subprocess.Popen([FACELEDGER, "index", "shared", str(f), "--json"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in folders]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outputs]
    summaries = [json.loads(o[0].strip().splitlines()[-1])["Summary"] for o in outputs]
    indexed = sum(s["FacesIndexed"] for s in summaries)
    assert indexed >= 16

    probes = [lfw.image(people[0], 2), lfw.image(people[12], 2)]
    searches = [subprocess.Popen([FACELEDGER, "search", "shared", str(p), "--max-fmr", "1e-3", "--purpose", "test",
                                  "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for p in probes]
    found = [json.loads(s.communicate(timeout=300)[0]) for s in searches]
    assert [f["FaceMatches"][0]["Face"]["ExternalImageId"] for f in found] == [people[0], people[12]]

    settings_env = {k[len("FACELEDGER_"):].lower(): v for k, v in env.items() if k.startswith("FACELEDGER_")}
    from faceledger.settings import Settings

    s = Settings.load(**{k: v for k, v in settings_env.items() if k in Settings.__dataclass_fields__})
    service = open_service(s)
    assert service.describe_collection("shared").face_count == indexed
    ledger = PostgresLedger(fresh_db)
    count, problems = ledger.verify()
    assert problems == []
    index_entries = [e for e in ledger.entries_of("IndexFaces") if e.body.get("phase") == "outcome"]
    assert len(index_entries) == 16 and all(e.body["outcome"] == "ok" for e in index_entries)
    assert len([e for e in ledger.entries_of("IndexFaces") if e.body.get("phase") == "intent"]) == 16  # written ahead
    recorded = {f for e in index_entries for f in e.body["result"]["indexed_face_ids"]}
    stored = {f.face_id for f in service.list_faces("shared", max_results=100).faces}
    assert recorded == stored  # every stored face is in the ledger, and nothing else
    assert len([e for e in ledger.entries_of("SearchFacesByImage") if e.body.get("phase") == "outcome"]) == 2
    key = tmp_path / "signer" / "key.pem"  # the signer, apart from the service: heads over the shared chain
    assert subprocess.run([FACELEDGER, "ledger", "keygen", "--out", str(key)], **run).returncode == 0
    run["env"] = {**env, "FACELEDGER_LEDGER_PUBLIC_KEY": str(key) + ".pub"}
    assert subprocess.run([FACELEDGER, "ledger", "sign-heads", "--key", str(key)], **run).returncode == 0
    r = subprocess.run([FACELEDGER, "ledger", "verify", "--json"], **run)
    assert r.returncode == 0 and json.loads(r.stdout)["intact"] is True


def test_keys_and_policy_are_shared_by_replicas(fresh_db, tmp_path, settings, engine, monkeypatch):
    from faceledger.governance import policy_store
    from faceledger.governance.keys import PostgresKeyStore, open_keys

    s = settings.replace(database=fresh_db, store=tmp_path / "s.sqlite", ledger=tmp_path / "unused.sqlite")
    env = _env(tmp_path, database=fresh_db)
    r = subprocess.run([FACELEDGER, "keys", "create", "--principal", "alice", "--role", "user", "--purpose",
                        "missing-person", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    replica_keys = open_keys(s)
    assert isinstance(replica_keys, PostgresKeyStore)
    key = replica_keys.get(made["AccessKeyId"])
    assert (key.principal, key.roles, key.purposes) == ("alice", ("user",), ("missing-person",))
    assert replica_keys.secret(key.access_key_id) == made["SecretAccessKey"]
    replica_keys.revoke(key.access_key_id)
    assert open_keys(s).secret(key.access_key_id) is None  # revoked everywhere

    monkeypatch.setattr(policy_store, "REFRESH_S", 0.0)
    first, second = open_gate(s, open_service(s, engine=engine)), open_gate(s, open_service(s, engine=engine))
    assert first.policy.name == second.policy.name == "moratorium"
    police = Context(Principal("p", ("user",), ("*",)), "law-enforcement", "case-1")
    with pytest.raises(errors.AccessDeniedError):
        second.call(police, "SearchFacesByImage", lambda **x: None)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'half a policy'\n[identification]\nmax_false_positive_identification_rate = 2\n")
    r = subprocess.run([FACELEDGER, "policy", "set", str(bad)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "max_false_positive_identification_rate" in r.stdout + r.stderr  # refused
    r = subprocess.run([FACELEDGER, "policy", "set", "open", "--json"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    second.call(police, "SearchFacesByImage", lambda **x: None)  # the new policy reached this replica
    first.call(police, "ListCollections", lambda: None)
    changes = [e.body["policy"]["name"] for e in first.ledger.entries_of("PolicyChange")]
    assert changes == ["moratorium", "open"]  # recorded once, by the first replica to see it
    assert first.ledger.verify()[1] == []


def test_a_dropped_postgres_connection_is_a_retryable_error_and_loses_nothing(fresh_db):
    ledger = PostgresLedger(fresh_db)
    ledger.append({"operation": "DetectFaces", "i": 0})
    holder = psycopg.connect(fresh_db, autocommit=True)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))  # the append will wait inside its transaction
    failure: list[Exception] = []

    def append() -> None:
        try:
            ledger.append({"operation": "DetectFaces", "i": 1})
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            failure.append(exc)

    writer = threading.Thread(target=append)
    writer.start()
    with psycopg.connect(fresh_db, autocommit=True) as admin:
        for _ in range(100):
            pids = [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                                "AND datname = current_database()").fetchall()]
            if pids:
                break
            time.sleep(0.05)
        assert pids, "the append never waited on the lock"
        admin.execute("SELECT pg_terminate_backend(%s)", (pids[0],))  # the connection drops mid-transaction
    writer.join(30)
    holder.execute("COMMIT")
    holder.close()
    assert len(failure) == 1 and isinstance(failure[0], errors.BackendUnavailableError)
    assert failure[0].http_status == 503 and failure[0].code == "ServiceUnavailableException"  # SDKs retry
    ledger.append({"operation": "DetectFaces", "i": 2})  # the next request reconnects
    assert [e.body["i"] for e in ledger.entries()] == [0, 2]
    assert ledger.verify()[1] == []

    with psycopg.connect(fresh_db, autocommit=True) as admin:  # every connection dropped while idle
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                      "AND datname = current_database()")
    assert ledger.get(1).body["i"] == 0  # a read retries once on a fresh connection


def test_a_milvus_server_that_goes_away_is_a_retryable_error(fresh_db, settings, engine, lfw, tmp_path):
    with milvus_server() as server:
        s = settings.replace(store=tmp_path / "s.sqlite", store_backend="milvus", milvus_uri=server.uri,
                             database=fresh_db)
        service = open_service(s, engine=engine)
        service.create_collection("c")
        face = service.index_faces("c", lfw.image("Tony_Blair", 1)).face_records[0].face.face_id
        server.kill()
        with pytest.raises(errors.BackendUnavailableError):
            service.search_faces_by_image("c", lfw.image("Tony_Blair", 2), max_false_match_rate=1e-2)
        server.start()  # same data: a restarted server has its collections released; the store loads them
        for _ in range(60):  # what a client's retries do: the store reconnects within seconds
            try:
                found = service.search_faces_by_image("c", lfw.image("Tony_Blair", 2), max_false_match_rate=1e-2)
                break
            except errors.BackendUnavailableError:
                time.sleep(0.5)
        assert [m.face.face_id for m in found.face_matches] == [face]
        service.store.close()


# --- Ray --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_address():
    with ray_head(cpus=2) as address:
        yield address


def _faces(store_path: Path, collection: str) -> dict:
    from faceledger.store import SQLiteStore

    store = SQLiteStore(store_path)
    faces, _ = store.list_faces(collection, None, 1000)
    full = store.get_faces(collection, [f.face_id for f in faces], vectors=True)
    store.close()
    return {f.external_image_id: (np.round(f.box, 6).tolist(), f.vector) for f in full.values()}


def test_index_on_ray_stores_what_a_local_run_stores(ray_address, lfw, tmp_path, monkeypatch):
    from faceledger.interfaces.cli.main import app

    images = _copy_images(lfw, sorted(lfw.people())[:20], tmp_path / "images")
    monkeypatch.setenv("FACELEDGER_POLICY", "open")
    results = {}
    for mode, extra in (("local", []), ("ray", ["--ray", ray_address])):
        monkeypatch.setenv("FACELEDGER_STORE", str(tmp_path / f"{mode}.sqlite"))
        monkeypatch.setenv("FACELEDGER_CACHE_DIR", str(tmp_path / f"cache-{mode}"))
        runner = CliRunner()
        assert runner.invoke(app, ["collection", "create", "c"]).exit_code == 0
        r = runner.invoke(app, ["index", "c", str(images[0].parent), "--json", *extra])
        assert r.exit_code == 0, r.output
        results[mode] = (json.loads(r.stdout.strip().splitlines()[-1])["Summary"], _faces(tmp_path / f"{mode}.sqlite", "c"))
    assert results["ray"][0] == results["local"][0]
    local, ray = results["local"][1], results["ray"][1]
    assert set(local) == set(ray) and len(local) >= 18
    for name in local:
        assert local[name][0] == ray[name][0]
        assert np.abs(local[name][1] - ray[name][1]).max() < 1e-5  # the same network, maybe other thread counts


def test_audit_images_on_ray_matches_a_local_run(ray_address, lfw, tmp_path, monkeypatch):
    from faceledger.interfaces.cli.main import app

    people = [n for n, paths in sorted(lfw.people().items()) if len(paths) >= 3][:8]
    rows = ["path,group,subject"] + [f"{p},{'A' if i % 2 else 'B'},{name}" for i, name in enumerate(people)
                                     for p in lfw.people()[name][:3]]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    reports = {}
    for mode, extra in (("local", ["--workers", "1"]), ("ray", ["--ray", ray_address])):
        monkeypatch.setenv("FACELEDGER_CACHE_DIR", str(tmp_path / f"cache-{mode}"))
        r = CliRunner().invoke(app, ["audit", "images", "--dataset", str(manifest), "--resamples", "20",
                                     "--json-out", str(tmp_path / f"{mode}.json"), *extra])
        assert r.exit_code == 0, r.output
        reports[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    local, ray = reports["local"], reports["ray"]
    assert ray["images"] == local["images"] == {"A": 12, "B": 12}
    assert (ray["mated"], ray["nonmated"]) == (local["mated"], local["nonmated"]) == (24, 252)
    for a, b in zip(local["curves"], ray["curves"], strict=True):
        assert a["group"] == b["group"] and a["eer"] == pytest.approx(b["eer"], abs=1e-6)
        assert a["nonmated_hist"] == b["nonmated_hist"] and a["mated_hist"] == b["mated_hist"]


def test_an_unreachable_ray_cluster_is_a_typed_error(tmp_path, monkeypatch):
    import ray

    from faceledger.interfaces.cli.main import app

    ray.shutdown()  # as in a fresh `faceledger` process: not connected to the tests' cluster

    monkeypatch.setenv("FACELEDGER_POLICY", "open")
    monkeypatch.setenv("FACELEDGER_STORE", str(tmp_path / "s.sqlite"))
    runner = CliRunner()
    assert runner.invoke(app, ["collection", "create", "c"]).exit_code == 0
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp_path / "img" / "one.png")  # an empty folder is refused before Ray is asked
    r = runner.invoke(app, ["index", "c", str(tmp_path / "img"), "--ray", "127.0.0.1:1", "--json"])
    assert r.exit_code != 0 and "ServiceUnavailableException" in r.output and "Ray cluster" in r.output


def test_a_milvus_outage_is_a_503_over_http_and_is_recorded(fresh_db, settings, engine, tmp_path):
    from fastapi.testclient import TestClient

    from faceledger.interfaces.http.app import create_app

    with milvus_server() as server:
        s = settings.replace(store=tmp_path / "s.sqlite", store_backend="milvus", milvus_uri=server.uri,
                             database=fresh_db, auth="none", policy="open")
        http = TestClient(create_app(s, open_service(s, engine=engine)))

        def call(operation: str, body: bytes):
            return http.post("/", content=body, headers={"X-Amz-Target": f"RekognitionService.{operation}",
                                                         "Content-Type": "application/x-amz-json-1.1"})

        assert call("CreateCollection", b'{"CollectionId": "c"}').status_code == 200
        server.kill()
        r = call("ListCollections", b"{}")
        assert r.status_code == 503 and "ServiceUnavailableException" in r.text  # what AWS SDKs retry
        last = list(PostgresLedger(fresh_db).entries())[-1].body
        assert (last["operation"], last["outcome"]) == ("ListCollections", "ServiceUnavailableException")
