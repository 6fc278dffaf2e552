"""The ledger: an append-only, hash-chained record of every request, allowed or denied.

Entry n stores its body (canonical JSON: sorted keys, no spaces) and
``hash_n = SHA-256(hash_{n-1} || n || body_n)``, hash_0 being 64 zeros. Changing, deleting,
inserting or reordering any entry breaks the chain at that entry, which ``verify`` names.
Recomputing every later hash would hide an edit from the chain alone, so checkpoints sign
(seq, hash) with the operator's Ed25519 key: an edit before a signed checkpoint cannot be
re-chained without the private key, and a checkpoint beyond the last entry reveals truncation.

Appends are serialised by SQLite's write lock (BEGIN IMMEDIATE: read the last hash and insert
in one transaction), so concurrent writers, threads or processes, keep one linear chain. The
interface (append, entries, verify) is what a PostgreSQL ledger for several replicas implements
with a table lock in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from faceledger.errors import FaceledgerError, InvalidParameterError, ResourceNotFoundError

GENESIS = "0" * 64
CHECKPOINT_EVERY = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, operation TEXT NOT NULL, body TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_operation ON entries (operation, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, time TEXT NOT NULL, key_id TEXT NOT NULL, signature TEXT NOT NULL
);
"""


class LedgerError(FaceledgerError):
    """The ledger cannot be written or read."""

    code = "InternalServerError"
    http_status = 500


def canonical(body: dict) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def chain_hash(prev: str, seq: int, body_text: str) -> str:
    return hashlib.sha256(f"{prev}|{seq}|{body_text}".encode()).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Entry:
    seq: int
    body: dict
    hash: str


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # broken, deleted, checkpoint, truncated, signature
    detail: str


class Signer:
    """The operator's Ed25519 key (a PEM file, mode 0600) that signs checkpoints."""

    def __init__(self, private_key) -> None:
        from cryptography.hazmat.primitives import serialization

        self.private_key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_hex = raw.hex()
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def generate(cls, path: Path) -> "Signer":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if path.exists():
            raise InvalidParameterError(f"{path} exists: a ledger key is never overwritten")
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> "Signer":
        from cryptography.hazmat.primitives import serialization

        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidParameterError(f"{path}: not a readable Ed25519 private key ({exc})") from None
        return cls(key)

    def sign(self, message: bytes) -> str:
        return self.private_key.sign(message).hex()


def verify_signature(public_hex: str, message: bytes, signature_hex: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False


def _checkpoint_message(seq: int, hash_: str) -> bytes:
    return f"faceledger-checkpoint|{seq}|{hash_}".encode()


class Ledger:
    """The embedded ledger (SQLite). PostgresLedger (ledger_pg.py) overrides only the storage
    hooks below: connecting, the schema, taking the append lock, the placeholder style."""

    _errors: tuple = (sqlite3.Error,)

    def __init__(self, path: Path, signer: Signer | None = None, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        self.path = Path(path)
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._create_schema()

    @property
    def where(self) -> str:
        return str(self.path)

    def _create_schema(self) -> None:
        self._db().executescript(_SCHEMA)

    def _q(self, sql: str) -> str:
        return sql

    def _begin(self, db) -> None:
        """Start the transaction that serialises appends: whoever holds it reads the chain's end."""
        db.execute("BEGIN IMMEDIATE")

    def _in_transaction(self, db) -> bool:
        return db.in_transaction

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # an acknowledged entry survives a crash
            self._local.db = db
        return db

    def append(self, body: dict) -> Entry:
        """Add one entry at the end of the chain (atomic: all of it or nothing)."""
        body = {"time": now(), **body}
        text = canonical(body)
        db = self._db()
        try:
            self._begin(db)
            row = db.execute(self._q("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")).fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            digest = chain_hash(prev, seq, text)
            db.execute(self._q("INSERT INTO entries (seq, operation, body, hash) VALUES (?, ?, ?, ?)"),
                       (seq, str(body.get("operation", "")), text, digest))
            if self.signer and seq % self.checkpoint_every == 0:
                self._checkpoint(db, seq, digest)
            db.execute("COMMIT")
        except self._errors as exc:
            if self._in_transaction(db):
                db.execute("ROLLBACK")
            raise self._failure(exc) from exc
        return Entry(seq, body, digest)

    def _failure(self, exc: Exception) -> Exception:
        return LedgerError(f"the ledger {self.where} could not be written ({exc}); the request was not served")

    def _checkpoint(self, db, seq: int, digest: str) -> None:
        sig = self.signer.sign(_checkpoint_message(seq, digest))
        db.execute(self._q("DELETE FROM checkpoints WHERE seq = ?"), (seq,))
        db.execute(self._q("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)"), (seq, digest, now(), self.signer.public_hex, sig))

    def checkpoint(self) -> int:
        """Sign the current end of the chain now; returns its sequence number."""
        if self.signer is None:
            raise InvalidParameterError("no ledger key: create one with `faceledger ledger keygen`")
        db = self._db()
        self._begin(db)
        try:
            row = db.execute(self._q("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")).fetchone()
            if row is None:
                raise InvalidParameterError("the ledger is empty: nothing to sign")
            self._checkpoint(db, row[0], row[1])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return row[0]

    def _one(self, sql: str, args: tuple):
        """One row of a read on the request path (a storage hook: PostgreSQL retries it once)."""
        return self._db().execute(self._q(sql), args).fetchone()

    def get(self, seq: int) -> Entry:
        row = self._one("SELECT seq, body, hash FROM entries WHERE seq = ?", (seq,))
        if row is None:
            raise ResourceNotFoundError(f"no ledger entry {seq}")
        return Entry(row[0], json.loads(row[1]), row[2])

    def entries(self, since: str | None = None, after_seq: int = 0) -> Iterator[Entry]:
        """In chain order; ``since``: an ISO 8601 time, entries at or after it."""
        cur = self._db().execute(self._q("SELECT seq, body, hash FROM entries WHERE seq > ? ORDER BY seq"), (after_seq,))
        for seq, text, digest in cur:
            body = json.loads(text)
            if since is None or body.get("time", "") >= since:
                yield Entry(seq, body, digest)

    def entries_of(self, operation: str) -> Iterator[Entry]:
        for seq, text, digest in self._db().execute(
                self._q("SELECT seq, body, hash FROM entries WHERE operation = ? ORDER BY seq"), (operation,)).fetchall():
            yield Entry(seq, json.loads(text), digest)

    def last(self, operation: str) -> Entry | None:
        """The latest entry of an operation (for example the policy in force)."""
        row = self._one("SELECT seq, body, hash FROM entries WHERE operation = ? ORDER BY seq DESC LIMIT 1", (operation,))
        return Entry(row[0], json.loads(row[1]), row[2]) if row else None

    def verify(self, public_hex: str | None = None) -> tuple[int, list[Problem]]:
        """Recompute the chain: (entries checked, problems in chain order). ``public_hex``: the
        operator's public key; checkpoints signed by another key are reported."""
        problems: list[Problem] = []
        prev, expected_seq, count, hashes = GENESIS, 1, 0, {}
        for seq, op, text, digest in self._db().execute("SELECT seq, operation, body, hash FROM entries ORDER BY seq"):
            count += 1
            if seq != expected_seq:
                problems.append(Problem(expected_seq, "deleted", f"entries {expected_seq}..{seq - 1} are missing"))
            recomputed = chain_hash(prev, seq, text)
            if recomputed != digest or not _operation_matches(text, op):
                problems.append(Problem(seq, "broken", "its content or its place in the chain was changed "
                                                       "(modified, inserted or reordered entry)"))
            hashes[seq] = recomputed
            prev, expected_seq = digest, seq + 1
        for seq, digest, _, key, sig in self._db().execute(
                "SELECT seq, hash, time, key_id, signature FROM checkpoints ORDER BY seq").fetchall():
            if seq not in hashes:
                problems.append(Problem(seq, "truncated", f"a checkpoint signs entry {seq}, which is gone"))
            elif hashes[seq] != digest:
                problems.append(Problem(seq, "checkpoint", "the chain was rewritten: it no longer ends in the signed hash"))
            if not verify_signature(key, _checkpoint_message(seq, digest), sig):
                problems.append(Problem(seq, "signature", "the checkpoint's signature is not valid"))
            elif public_hex and key != public_hex:
                problems.append(Problem(seq, "signature", "the checkpoint is signed by another key"))
        problems.sort(key=lambda p: p.seq)
        return count, problems


def _operation_matches(text: str, column: str) -> bool:
    """The lookup column must say what the hashed body says."""
    try:
        return str(json.loads(text).get("operation", "")) == column
    except (ValueError, AttributeError):
        return False


def since_time(text: str) -> str:
    """A --since value (ISO date or time, or seconds ago as '3600s') as an ISO 8601 string."""
    if re.fullmatch(r"[0-9]+s", text):
        return datetime.fromtimestamp(time.time() - int(text[:-1]), timezone.utc).isoformat(timespec="microseconds")
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameterError(f"--since {text!r}: give an ISO 8601 date or time, or seconds ago as 3600s") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")
