"""The ledger on a real PostgreSQL server: one chain under concurrent writers, tampering caught."""

from __future__ import annotations

import json
import multiprocessing as mp

import psycopg
import pytest
from typer.testing import CliRunner

from faceledger import errors
from faceledger.governance.gate import Gate
from faceledger.governance.ledger_pg import PostgresLedger
from faceledger.governance.policy import Context, Policy, Principal

def _append_many(url: str, worker: int, n: int) -> None:
    ledger = PostgresLedger(url)
    for i in range(n):
        ledger.append({"operation": "DetectFaces", "worker": worker, "i": i})


def test_concurrent_writers_from_several_processes_keep_one_chain(fresh_db):
    PostgresLedger(fresh_db)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(fresh_db, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    count, problems = PostgresLedger(fresh_db).verify()
    assert count == 160 and problems == []
    workers = {e.body["worker"] for e in PostgresLedger(fresh_db).entries()}
    assert workers == {0, 1, 2, 3}


def test_tampering_in_postgres_is_caught(fresh_db):
    ledger = PostgresLedger(fresh_db)
    for i in range(12):
        ledger.append({"operation": "SearchFacesByImage", "principal": "p", "i": i})
    with psycopg.connect(fresh_db, autocommit=True) as db:
        db.execute("UPDATE entries SET body = replace(body, '\"principal\":\"p\"', '\"principal\":\"q\"') WHERE seq = 5")
    _, problems = ledger.verify()
    assert problems and problems[0].seq == 5 and problems[0].kind == "broken"


def test_the_gate_records_allowed_and_denied_requests_in_postgres(fresh_db, settings, engine, tmp_path):
    from faceledger.governance.app import open_service

    service = open_service(settings.replace(store=tmp_path / "s.sqlite"), engine=engine)
    gate = Gate(service, Policy.load("moratorium"), PostgresLedger(fresh_db))
    user = Context(Principal("bob", ("user",), ()), None, None)
    gate.call(user, "ListCollections", lambda: service.list_collections())
    with pytest.raises(errors.AccessDeniedError):
        gate.call(user, "SearchFacesByImage", lambda **x: None)
    ops = [(e.body["operation"], e.body.get("phase"), e.body.get("outcome")) for e in gate.ledger.entries()]
    assert ops == [("PolicyChange", None, None), ("ListCollections", "intent", None), ("ListCollections", "outcome", "ok"),
                   ("SearchFacesByImage", None, "AccessDeniedException")]


def test_cli_verifies_a_postgres_ledger(fresh_db, monkeypatch, tmp_path):
    from faceledger.governance.ledger import HeadLog
    from faceledger.interfaces.cli.main import app

    ledger = PostgresLedger(fresh_db, HeadLog(tmp_path / "heads"))
    for i in range(3):
        ledger.append({"operation": "DetectFaces", "i": i})
    monkeypatch.setenv("FACELEDGER_LEDGER_DATABASE", fresh_db)
    monkeypatch.setenv("FACELEDGER_LEDGER_HEADS", str(tmp_path / "heads"))
    monkeypatch.setenv("FACELEDGER_LEDGER_KEY", str(tmp_path / "k.pem"))
    monkeypatch.setenv("FACELEDGER_LEDGER_PUBLIC_KEY", str(tmp_path / "k.pem.pub"))
    runner = CliRunner()
    assert runner.invoke(app, ["ledger", "keygen"]).exit_code == 0
    assert runner.invoke(app, ["ledger", "sign-heads"]).exit_code == 0
    r = runner.invoke(app, ["ledger", "verify", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["entries"] == 3 and json.loads(r.stdout)["intact"]
