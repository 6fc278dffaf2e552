"""A search index over the ledger and the review queue derived from it, for the console.

The ledger stores each entry as one canonical JSON body with an index on (operation, seq) only:
finding one principal's entries, or the identifications still awaiting review, would read every
body. This index keeps the columns people search by (time, principal, purpose, case, operation,
outcome, account) and the open review queue in a SQLite file of its own, filled from the ledger's
new rows on every read (``catch_up``). It is a cache, never a source of truth: pages select entry
numbers here and read the entries themselves from the ledger. When the ledger it indexed is gone
or replaced (the hash of the last entry indexed differs), it is rebuilt from the start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from faceledger.governance.ledger import Ledger
from faceledger.governance.policy import IDENTIFICATION
from faceledger.localdb import ThreadLocalSQLite
from faceledger.service.scope import DEFAULT_ACCOUNT

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, time TEXT, operation TEXT, principal TEXT, purpose TEXT, case_ref TEXT,
    account TEXT, outcome TEXT);
CREATE INDEX IF NOT EXISTS entries_time ON entries (time);
CREATE INDEX IF NOT EXISTS entries_principal ON entries (principal, seq);
CREATE INDEX IF NOT EXISTS entries_purpose ON entries (purpose, seq);
CREATE INDEX IF NOT EXISTS entries_case ON entries (case_ref, seq);
CREATE INDEX IF NOT EXISTS entries_operation ON entries (operation, seq);
CREATE INDEX IF NOT EXISTS entries_account ON entries (account, seq);
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY, time TEXT, account TEXT, purpose TEXT, case_ref TEXT, collection TEXT,
    principal TEXT, candidate_ids TEXT NOT NULL, decided INTEGER NOT NULL DEFAULT 0, open INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS queue_open ON queue (account, open, seq);
CREATE TABLE IF NOT EXISTS decided (seq INTEGER NOT NULL, candidate TEXT NOT NULL, PRIMARY KEY (seq, candidate));
"""

#: Filters the ledger page offers, each an indexed column.
FILTERS = ("principal", "purpose", "case_ref", "operation", "outcome")


@dataclass(frozen=True)
class Page:
    seqs: list[int]
    next_before: int | None  # pass as ``before`` for the next (older) page; None: this is the last


class LedgerIndex:
    def __init__(self, path: Path, ledger: Ledger) -> None:
        self.path = Path(path)
        self.ledger = ledger
        # a cache: a lost tail is re-read from the ledger, so synchronous=NORMAL is enough
        self._db = ThreadLocalSQLite(self.path, pragmas=("synchronous=NORMAL",))
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db().executescript(_SCHEMA)

    def _mark(self, db) -> tuple[int, str]:
        rows = dict(db.execute("SELECT k, v FROM meta").fetchall())
        return int(rows.get("seq", 0)), rows.get("hash", "")

    def catch_up(self) -> int:
        """Index the ledger's entries added since the last call; how many were added."""
        db = self._db()
        end_seq, _ = self.ledger.end()
        seq, hash_ = self._mark(db)
        if seq == end_seq and (seq == 0 or self.ledger.stored_hash(seq) == hash_):
            return 0
        db.execute("BEGIN IMMEDIATE")
        try:
            seq, hash_ = self._mark(db)
            if seq and self.ledger.stored_hash(seq) != hash_:  # another ledger, or a rewritten one: start over
                for table in ("entries", "queue", "decided", "meta"):
                    db.execute(f"DELETE FROM {table}")
                seq = 0
            added, last = 0, None
            for row_seq, _, text, digest in self.ledger.rows(seq):
                self._add(db, row_seq, json.loads(text))
                added, last = added + 1, (row_seq, digest)
            if last is not None:
                db.executemany("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", [("seq", str(last[0])), ("hash", last[1])])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return added

    def _add(self, db, seq: int, b: dict) -> None:
        op = str(b.get("operation", ""))
        db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (seq, b.get("time"), op, b.get("principal"), b.get("purpose"), b.get("case_reference"),
                    b.get("account") or "", b.get("outcome") or ("intent" if b.get("phase") == "intent" else None)))
        if b.get("outcome") != "ok" or b.get("phase") not in ("outcome", "results"):  # results: a video search job's candidates
            return
        if op in IDENTIFICATION:
            ids = list(dict.fromkeys(c.get("id") for c in b.get("result", {}).get("candidates", []) if c.get("id")))
            if ids:
                db.execute("INSERT OR REPLACE INTO queue (seq, time, account, purpose, case_ref, collection, principal, "
                           "candidate_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (seq, b.get("time"), b.get("account") or DEFAULT_ACCOUNT, b.get("purpose"),
                            b.get("case_reference"), b.get("collection"), b.get("principal"), json.dumps(ids)))
        elif op == "Review" and isinstance(b.get("reviews"), int):
            target = b["reviews"]
            row = db.execute("SELECT candidate_ids FROM queue WHERE seq = ?", (target,)).fetchone()
            if row is None:
                return
            ids = json.loads(row[0])
            about = [f for f in b.get("face_ids") or ids if f in ids]
            db.executemany("INSERT OR IGNORE INTO decided VALUES (?, ?)", [(target, f) for f in about])
            n = db.execute("SELECT COUNT(*) FROM decided WHERE seq = ?", (target,)).fetchone()[0]
            db.execute("UPDATE queue SET decided = ?, open = ? WHERE seq = ?", (n, int(n < len(ids)), target))

    # --- reads -------------------------------------------------------------------------------------------

    def search(self, account: str, *, since: str | None = None, until: str | None = None, before: int | None = None,
               limit: int = 50, **filters: str | None) -> Page:
        """Entry numbers, newest first, matching every filter given (exact values; times are ISO
        8601 prefixes compared as text). ``account``: only that account's entries; the default
        (local) account's also include the entries of no account (policy changes, requests
        refused before anyone was authenticated)."""
        where, args = ["account IN (?, ?)"], [account, "" if account == DEFAULT_ACCOUNT else account]
        for name, value in filters.items():
            if name not in FILTERS:
                raise ValueError(f"no ledger filter {name}")
            if value:
                where.append(f"{name} = ?")
                args.append(value)
        if since:
            where.append("time >= ?")
            args.append(since)
        if until:
            where.append("time < ?")
            args.append(until)
        if before:
            where.append("seq < ?")
            args.append(before)
        sql = "SELECT seq FROM entries" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?"
        seqs = [r[0] for r in self._db().execute(sql, (*args, limit + 1)).fetchall()]
        return Page(seqs[:limit], seqs[limit - 1] if len(seqs) > limit else None)

    def queue(self, account: str, *, case_ref: str | None = None, purpose: str | None = None,
              before: int | None = None, limit: int = 50) -> Page:
        """Identifications of ``account`` with candidates still awaiting a decision, newest first."""
        where, args = ["account = ?", "open = 1"], [account]
        for name, value in (("case_ref", case_ref), ("purpose", purpose)):
            if value:
                where.append(f"{name} = ?")
                args.append(value)
        if before:
            where.append("seq < ?")
            args.append(before)
        sql = f"SELECT seq FROM queue WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        seqs = [r[0] for r in self._db().execute(sql, (*args, limit + 1)).fetchall()]
        return Page(seqs[:limit], seqs[limit - 1] if len(seqs) > limit else None)

    def open_count(self, account: str) -> int:
        return self._db().execute("SELECT COUNT(*) FROM queue WHERE account = ? AND open = 1", (account,)).fetchone()[0]

    def open_seqs(self, account: str) -> list[int]:
        return [r[0] for r in self._db().execute("SELECT seq FROM queue WHERE account = ? AND open = 1", (account,))]

    def decided(self, seq: int) -> set[str]:
        return {r[0] for r in self._db().execute("SELECT candidate FROM decided WHERE seq = ?", (seq,)).fetchall()}

    def is_open(self, seq: int) -> bool:
        row = self._db().execute("SELECT open FROM queue WHERE seq = ?", (seq,)).fetchone()
        return bool(row and row[0])
