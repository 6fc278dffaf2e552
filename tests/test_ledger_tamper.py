"""Someone who controls the ledger's database tries to rewrite history; `faceledger ledger verify`
must notice every time. Each tamper kind is done to a real ledger (SQLite file, and PostgreSQL
for the kinds that apply there) filled through the real gate, with heads signed by the real
`faceledger ledger sign-heads`, and judged by the real `faceledger ledger verify`."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.governance.gate import Gate
from faceledger.governance.ledger import GENESIS, HeadLog, Signer, canonical, chain_hash
from faceledger.governance.policy import Context, Policy, Principal
from faceledger.interfaces.cli.main import app

runner = CliRunner()
OTHER = Context(Principal("alice", ("admin",), ("*",)), None, "CASE-7", "http")


class Setup:
    """A ledger of 42 entries: heads signed at 10, 20, 30 and 31 (the end when signed), then 11
    entries the service appended after the last head (covered by published tips only)."""

    def __init__(self, root: Path, monkeypatch, database: str = "") -> None:
        self.root, self.database = root, database
        self.path = root / "data" / "ledger.sqlite"
        self.heads = HeadLog(root / "data" / "ledger-heads")
        env = {"FACELEDGER_LEDGER": str(self.path), "FACELEDGER_LEDGER_KEY": str(root / "signer" / "key.pem"),
               "FACELEDGER_LEDGER_PUBLIC_KEY": str(root / "signer" / "key.pem.pub"),
               "FACELEDGER_LEDGER_HEAD_ENTRIES": "10", "FACELEDGER_LEDGER_DATABASE": database}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        from faceledger.governance.app import ledger_of
        from faceledger.settings import Settings

        assert cli("ledger", "keygen").exit_code == 0
        self.ledger = ledger_of(Settings.load())
        gate = Gate(None, Policy.load("moratorium"), self.ledger)  # entry 1: PolicyChange
        for i in range(15):  # 2 entries each: intent, outcome
            gate.call(OTHER, "CreateCollection", lambda i=i: {"collection_arn": f"c{i}"}, collection=f"c{i}")
        assert cli("ledger", "sign-heads").exit_code == 0
        for i in range(3):
            gate.call(OTHER, "ListCollections", lambda: {})
        with pytest.raises(Exception):
            gate.call(OTHER, "SearchFacesByImage", lambda **x: None)  # denied: one entry
        gate.call(OTHER, "DeleteCollection", lambda: {}, collection="c1")
        gate.call(OTHER, "ListCollections", lambda: {})
        assert self.ledger.end()[0] == 42
        self.witness = root / "witness.jsonl"
        assert cli("ledger", "heads", "--export", "--out", str(self.witness)).exit_code == 0
        report = verify()
        assert report["intact"] and report["last_head"] == 31 and report["unsigned"] == 11, report

    # raw access, as an attacker with the database would have it
    def sql(self, statement: str, *args) -> list:
        if self.database:
            import psycopg

            with psycopg.connect(self.database, autocommit=True) as db:
                cur = db.execute(statement.replace("?", "%s"), args)
                return cur.fetchall() if cur.description else []
        db = sqlite3.connect(self.path)
        try:
            rows = db.execute(statement, args).fetchall()
            db.commit()
            return rows
        finally:
            db.close()

    def rechain(self, edit_seq: int | None = None, renumber_from: int | None = None) -> None:
        """Recompute every hash from the start (after editing an entry's body, or after closing a
        gap left by a deleted entry): the chain alone then looks intact."""
        rows = self.sql("SELECT seq, body FROM entries ORDER BY seq")
        self.sql("DELETE FROM entries")
        prev = GENESIS
        for n, (seq, text) in enumerate(rows, 1):
            body = json.loads(text)
            if seq == edit_seq:
                body["principal"] = "mallory"
            text = canonical(body)
            prev = chain_hash(prev, n, text)
            self.sql("INSERT INTO entries (seq, operation, body, hash) VALUES (?, ?, ?, ?)", n, body.get("operation", ""),
                     text, prev)

    def heads_lines(self) -> list[str]:
        return self.heads.heads_path.read_text().splitlines()

    def write_heads(self, lines: list[str]) -> None:
        self.heads.heads_path.write_text("".join(line + "\n" for line in lines))


def cli(*args: str):
    return runner.invoke(app, list(args))


def verify(*extra: str) -> dict:
    r = cli("ledger", "verify", "--json", *extra)
    data = json.loads(r.stdout)
    assert r.exit_code == (0 if data["intact"] else 1), r.output
    return data


def forged_heads(setup: Setup, seqs: list[int]) -> list[str]:
    """Heads over the current (tampered) chain, signed with a key that is not the signer's."""
    other = Signer.generate(setup.root / "mallory.pem")
    rows = {seq: digest for seq, digest in setup.sql("SELECT seq, hash FROM entries")}
    return [other.head(s, rows[s]).line() for s in seqs]


# --- the tamper kinds: (name, what the attacker does, the problem kind verify must report) ------------------


def modify(s):  # change a body, leave its hash
    body = json.loads(s.sql("SELECT body FROM entries WHERE seq = 5")[0][0])
    s.sql("UPDATE entries SET body = ? WHERE seq = 5", canonical({**body, "principal": "mallory"}))


def modify_and_rehash(s):  # change a body and recompute its own hash
    prev = s.sql("SELECT hash FROM entries WHERE seq = 4")[0][0]
    body = canonical({**json.loads(s.sql("SELECT body FROM entries WHERE seq = 5")[0][0]), "principal": "mallory"})
    s.sql("UPDATE entries SET body = ?, hash = ? WHERE seq = 5", body, chain_hash(prev, 5, body))


def rechain(s):  # change a body and recompute every later hash
    s.rechain(edit_seq=5)


def operation_column(s):  # the lookup column no longer says what the hashed body says
    s.sql("UPDATE entries SET operation = 'ListCollections' WHERE seq = 5")


def delete(s):
    s.sql("DELETE FROM entries WHERE seq = 12")


def delete_and_renumber(s):  # delete, close the gap, re-chain
    s.sql("DELETE FROM entries WHERE seq = 12")
    s.rechain()


def insert(s):  # shift entries up and slip a forged one in
    s.sql("UPDATE entries SET seq = seq + 1000 WHERE seq >= 7")
    s.sql("UPDATE entries SET seq = seq - 999 WHERE seq >= 1000")
    s.sql("INSERT INTO entries VALUES (7, 'ListCollections', '{\"operation\":\"ListCollections\"}', ?)", "0" * 64)


def insert_and_rechain(s):
    insert(s)
    s.rechain()


def swap(s):
    (b7, h7), (b8, h8) = s.sql("SELECT body, hash FROM entries WHERE seq IN (7, 8) ORDER BY seq")
    s.sql("UPDATE entries SET body = ?, hash = ? WHERE seq = 7", b8, h8)
    s.sql("UPDATE entries SET body = ?, hash = ? WHERE seq = 8", b7, h7)


def truncate_before_last_head(s):  # the chain is cut below signed heads
    s.sql("DELETE FROM entries WHERE seq > 25")


def truncate_after_last_head(s):  # only entries no head signed yet are cut
    s.sql("DELETE FROM entries WHERE seq > 35")


def truncate_start(s):  # the oldest entries are cut
    s.sql("DELETE FROM entries WHERE seq <= 5")


def rewrite_unsigned_tail(s):  # rewrite an entry after the last head, re-chain the tail
    s.rechain(edit_seq=36)


def rechain_with_heads_deleted(s):
    s.rechain(edit_seq=5)
    s.heads.heads_path.unlink()
    s.heads.tips_path.unlink()


def rechain_with_later_heads_cut(s):  # heads after the edit removed too: the witness's copy still has them
    s.rechain(edit_seq=25)
    s.write_heads(s.heads_lines()[:2])
    s.heads.tips_path.unlink()


def forged_head(s):  # a head over the rewritten chain, signed with another key
    s.rechain(edit_seq=5)
    s.write_heads(s.heads_lines() + forged_heads(s, [40]))


def heads_resigned_with_another_key(s):
    s.rechain(edit_seq=5)
    s.write_heads(forged_heads(s, [10, 20, 30, 40]))
    s.heads.tips_path.unlink()


def head_altered(s):  # a head's hash replaced by the rewritten chain's
    s.rechain(edit_seq=5)
    lines = s.heads_lines()
    h = json.loads(lines[0])
    h["hash"] = s.sql("SELECT hash FROM entries WHERE seq = 10")[0][0]
    s.write_heads([canonical(h)] + lines[1:])


def heads_reordered(s):
    lines = s.heads_lines()
    s.write_heads([lines[1], lines[0]] + lines[2:])


def emptied(s):  # every row deleted
    s.sql("DELETE FROM entries")


def table_dropped(s):
    s.sql("DROP TABLE entries")


def file_deleted(s):
    for suffix in ("", "-wal", "-shm"):
        Path(str(s.path) + suffix).unlink(missing_ok=True)


def file_zeroed(s):
    for suffix in ("-wal", "-shm"):
        Path(str(s.path) + suffix).unlink(missing_ok=True)
    s.path.write_bytes(b"")


KINDS = [
    (modify, "broken"), (modify_and_rehash, "broken"), (rechain, "rewritten"), (operation_column, "broken"),
    (delete, "deleted"), (delete_and_renumber, "rewritten"), (insert, "broken"), (insert_and_rechain, "rewritten"),
    (swap, "broken"), (truncate_before_last_head, "truncated"), (truncate_after_last_head, "truncated"),
    (truncate_start, "deleted"), (rewrite_unsigned_tail, "rewritten"), (rechain_with_heads_deleted, "unsigned"),
    (rechain_with_later_heads_cut, "witness"), (forged_head, "signature"), (heads_resigned_with_another_key, "signature"),
    (head_altered, "signature"), (heads_reordered, "heads"), (emptied, "missing"), (table_dropped, "missing"),
    (file_deleted, "missing"), (file_zeroed, "missing"),
]
SQLITE_ONLY = {file_deleted, file_zeroed}


@pytest.mark.parametrize("tamper, kind", KINDS, ids=[t.__name__ for t, _ in KINDS])
def test_tampering_is_detected_on_sqlite(tmp_path, monkeypatch, tamper, kind):
    s = Setup(tmp_path, monkeypatch)
    tamper(s)
    report = verify("--witness", str(s.witness))
    assert not report["intact"] and kind in {p["kind"] for p in report["problems"]}, report
    if tamper in (file_deleted,):
        assert not s.path.exists(), "verify must never create a missing ledger"
    # the signer refuses to sign over it, and signs nothing
    before = s.heads.heads_path.read_bytes() if s.heads.heads_path.exists() else b""
    assert cli("ledger", "sign-heads").exit_code == 1
    assert (s.heads.heads_path.read_bytes() if s.heads.heads_path.exists() else b"") == before


@pytest.mark.parametrize("tamper, kind", [k for k in KINDS if k[0] not in SQLITE_ONLY],
                         ids=[t.__name__ for t, _ in KINDS if t not in SQLITE_ONLY])
def test_tampering_is_detected_on_postgres(tmp_path, monkeypatch, fresh_db, tamper, kind):
    s = Setup(tmp_path, monkeypatch, fresh_db)
    tamper(s)
    report = verify("--witness", str(s.witness))
    assert not report["intact"] and kind in {p["kind"] for p in report["problems"]}, report


def test_verify_without_heads_or_key_fails_and_never_creates_a_ledger(tmp_path, monkeypatch):
    path = tmp_path / "nowhere" / "ledger.sqlite"
    monkeypatch.setenv("FACELEDGER_LEDGER", str(path))
    monkeypatch.delenv("FACELEDGER_LEDGER_PUBLIC_KEY", raising=False)
    r = cli("ledger", "verify")
    assert r.exit_code == 1 and "no ledger" in r.stdout and not path.exists() and not path.parent.exists()
    from faceledger.governance.ledger import Ledger

    Ledger(path).append({"operation": "ListCollections"})
    r = cli("ledger", "verify")
    assert r.exit_code == 1 and "heads are required" in r.stdout  # entries, but no head signs them


def test_the_service_cannot_sign_heads(tmp_path, monkeypatch):
    """The service's wiring never reads the private key: with only the public key configured,
    what it writes is covered by heads only once the separate signer signed them."""
    import inspect

    from faceledger.governance import app as wiring, gate

    assert "Signer" not in inspect.getsource(wiring) and "Signer" not in inspect.getsource(gate)
    s = Setup(tmp_path, monkeypatch)
    s.ledger.append({"operation": "ListCollections"})
    assert verify()["unsigned"] == 12


def test_the_watching_signer_signs_every_n_entries_and_every_t_seconds_and_stops_on_tampering(tmp_path, monkeypatch):
    """`sign-heads --watch` as the separate signer process: heads at each multiple of N, the
    waiting tail within T seconds, and no more heads once the chain it saw was cut."""
    import subprocess
    import sys
    import time

    s = Setup(tmp_path, monkeypatch)
    signer = subprocess.Popen([sys.executable, "-m", "faceledger.interfaces.cli.main", "ledger", "sign-heads", "--watch",
                               "--every-entries", "5", "--every-seconds", "1", "--poll", "0.2"],
                              env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(8):
            s.ledger.append({"operation": "ListCollections"})
        deadline = time.time() + 30
        while time.time() < deadline and json.loads(s.heads_lines()[-1])["seq"] != 50:
            time.sleep(0.2)
        seqs = [json.loads(line)["seq"] for line in s.heads_lines()]
        assert seqs[:4] == [10, 20, 30, 31] and {35, 40, 45, 50} <= set(seqs) and seqs[-1] == 50, seqs
        assert verify()["unsigned"] == 0
        s.sql("DELETE FROM entries WHERE seq > 48")
        s.ledger.append({"operation": "ListCollections"})  # 49: a different entry where the signer saw another
        out, _ = signer.communicate(timeout=30)
        assert signer.returncode == 1 and "no head signed" in out
        assert json.loads(s.heads_lines()[-1])["seq"] == 50
    finally:
        if signer.poll() is None:
            signer.kill()
