"""The ledger: an append-only, hash-chained record of every request, allowed or denied.

Entry n stores its body (canonical JSON: sorted keys, no spaces) and
``hash_n = SHA-256(hash_{n-1} || n || body_n)``, hash_0 being 64 zeros. Changing, deleting,
inserting or reordering any entry breaks the chain at that entry, which ``verify`` names.

The chain alone cannot stop someone who controls the database: they can edit an entry and
recompute every later hash, or cut the end off. So the chain's state is published outside the
database, as Certificate Transparency publishes signed tree heads and CloudTrail digest files:

- signed heads (``heads.jsonl`` in the heads directory): (seq, chain hash, time) signed with an
  Ed25519 key that only the signer holds (``faceledger ledger sign-heads``, a separate process or
  an offline step). The service holds the public key only, so it cannot rewrite signed history.
  Verification requires the heads and checks the chain against every one of them; a copy of them
  (``ledger heads --export``) pinned by a remote witness catches heads deleted along with entries.
- tips (``tips.log`` beside the heads): the service appends (seq, hash) after each commit, outside
  the database, so cutting or rewriting entries newer than the last head is caught too by anyone
  who can change the database but not the heads directory.

Appends are serialised by SQLite's write lock (BEGIN IMMEDIATE: read the last hash and insert
in one transaction), so concurrent writers, threads or processes, keep one linear chain. The
interface (append, entries, verify) is what a PostgreSQL ledger for several replicas implements
with a table lock in the same transaction. docs/ledger.md states the trust model.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from faceledger.errors import BackendUnavailableError, FaceledgerError, InvalidParameterError, ResourceNotFoundError

log = logging.getLogger("faceledger.ledger")

GENESIS = "0" * 64
#: The signer's defaults: a head at least every this many entries and every this many seconds.
HEAD_EVERY_ENTRIES = 1000
HEAD_EVERY_SECONDS = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY, operation TEXT NOT NULL, body TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_operation ON entries (operation, seq);
"""


class LedgerError(FaceledgerError):
    """The ledger cannot be read."""

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
    kind: str  # broken, deleted, missing, unsigned, rewritten, truncated, signature, heads, witness
    detail: str


# --- signed heads -------------------------------------------------------------------------------------


def key_id_of(public_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(public_hex)).hexdigest()[:16]


@dataclass(frozen=True)
class Head:
    """A signed statement: "the chain's entry ``seq`` has hash ``hash``", made at ``time``."""

    seq: int
    hash: str
    time: str
    key_id: str
    signature: str

    def message(self) -> bytes:
        return f"faceledger-head|v1|{self.seq}|{self.hash}|{self.time}".encode()

    def valid_under(self, public_hex: str) -> bool:
        return self.key_id == key_id_of(public_hex) and verify_signature(public_hex, self.message(), self.signature)

    def line(self) -> str:
        return canonical(asdict(self))

    @classmethod
    def parse(cls, text: str) -> "Head":
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {"seq", "hash", "time", "key_id", "signature"}:
            raise ValueError("not a head")
        if not isinstance(data["seq"], int) or data["seq"] < 1 or not re.fullmatch(r"[0-9a-f]{64}", str(data["hash"])):
            raise ValueError("not a head")
        return cls(**{k: data[k] if k == "seq" else str(data[k]) for k in data})


class Signer:
    """The signer's Ed25519 key (a PEM file, mode 0600). Only ``faceledger ledger sign-heads``
    loads it; the service never does (it is configured with the public key alone)."""

    def __init__(self, private_key) -> None:
        from cryptography.hazmat.primitives import serialization

        self.private_key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_hex = raw.hex()
        self.key_id = key_id_of(self.public_hex)

    @classmethod
    def generate(cls, path: Path) -> "Signer":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = Path(path)
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
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            hint = ("; make the signer's key with `faceledger ledger keygen` (docs/ledger.md)"
                    if isinstance(exc, FileNotFoundError) else "")
            raise InvalidParameterError(f"{path}: not a readable Ed25519 private key ({exc}){hint}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidParameterError(f"{path}: not an Ed25519 private key")
        return cls(key)

    def sign(self, message: bytes) -> str:
        return self.private_key.sign(message).hex()

    def head(self, seq: int, hash_: str) -> Head:
        unsigned = Head(seq, hash_, now(), self.key_id, "")
        return Head(seq, hash_, unsigned.time, self.key_id, self.sign(unsigned.message()))


def verify_signature(public_hex: str, message: bytes, signature_hex: str) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False


def public_key_hex(spec: str) -> str:
    """The signer's public key from a setting or option: 64 hex digits, or a file holding them
    (or a PEM public key)."""
    text = spec.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        try:
            text = Path(text).expanduser().read_text().strip()
        except OSError as exc:
            raise InvalidParameterError(f"ledger public key {spec!r}: neither 64 hex digits nor a readable file ({exc})") from None
        if text.startswith("-----BEGIN PUBLIC KEY-----"):
            from cryptography.hazmat.primitives import serialization

            try:
                key = serialization.load_pem_public_key(text.encode())
                text = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
            except (ValueError, TypeError) as exc:
                raise InvalidParameterError(f"{spec}: not an Ed25519 public key ({exc})") from None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise InvalidParameterError(f"ledger public key {spec!r}: expected 64 hex digits (an Ed25519 public key)")
    return text.lower()


class HeadLog:
    """The heads directory, outside the ledger database: ``heads.jsonl`` (signed heads, appended
    by the signer only) and ``tips.log`` (unsigned ``seq hash`` lines the service appends after
    each commit). Both are append-only: lines are added under an exclusive lock, never rewritten."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.heads_path = self.directory / "heads.jsonl"
        self.tips_path = self.directory / "tips.log"
        self._tips_fd: int | None = None
        self._tips_pid = 0
        self._tips_lock = threading.Lock()

    # the signer's side
    def read_heads(self) -> tuple[list[Head], list[Problem]]:
        """Every head in file order, and a problem for each line that is not a well-formed head."""
        try:
            text = self.heads_path.read_text()
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as exc:
            return [], [Problem(0, "heads", f"{self.heads_path} cannot be read ({exc})")]
        return parse_heads(text, str(self.heads_path))

    def append_head(self, head: Head) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.heads_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, (head.line() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    # the service's side
    def publish_tip(self, seq: int, hash_: str) -> None:
        """Append ``seq hash`` (one write of under 100 bytes with O_APPEND: lines of concurrent
        writers never interleave). Not fsynced: a tip lost in a power cut only weakens the check."""
        with self._tips_lock:
            if self._tips_fd is None or self._tips_pid != os.getpid():  # a forked worker opens its own
                self.directory.mkdir(parents=True, exist_ok=True)
                self._tips_fd = os.open(self.tips_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._tips_pid = os.getpid()
            os.write(self._tips_fd, f"{seq} {hash_}\n".encode())

    def read_tips(self) -> tuple[dict[int, str], list[Problem]]:
        tips: dict[int, str] = {}
        problems: list[Problem] = []
        try:
            text = self.tips_path.read_text()
        except FileNotFoundError:
            return tips, problems
        except (OSError, UnicodeDecodeError) as exc:
            return tips, [Problem(0, "heads", f"{self.tips_path} cannot be read ({exc})")]
        for n, line in enumerate(text.splitlines(), 1):
            m = re.fullmatch(r"([0-9]{1,18}) ([0-9a-f]{64})", line)
            if not m:
                problems.append(Problem(0, "heads", f"{self.tips_path} line {n} is not a published tip"))
                continue
            seq = int(m.group(1))
            if tips.get(seq, m.group(2)) != m.group(2):
                problems.append(Problem(seq, "rewritten", f"two different hashes were published for entry {seq}"))
            tips[seq] = m.group(2)
        return tips, problems


def parse_heads(text: str, where: str) -> tuple[list[Head], list[Problem]]:
    heads: list[Head] = []
    problems: list[Problem] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            heads.append(Head.parse(line))
        except (ValueError, TypeError, KeyError):
            problems.append(Problem(0, "heads", f"{where} line {n} is not a signed head"))
    return heads, problems


# --- the ledger ------------------------------------------------------------------------------------------


class Ledger:
    """The embedded ledger (SQLite). PostgresLedger (ledger_pg.py) overrides only the storage
    hooks below: connecting, the schema, taking the append lock, the placeholder style.

    ``heads``: where tips are published after each commit (None: nowhere). ``create``: False
    opens an existing ledger for reading and never creates one (verification, the signer)."""

    _errors: tuple = (sqlite3.Error,)

    def __init__(self, path: Path, heads: HeadLog | None = None, *, create: bool = True, busy_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.heads = heads
        self.create = create
        self.busy_ms = busy_ms
        self._local = threading.local()
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._create_schema()

    @property
    def where(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.is_file()

    def _create_schema(self) -> None:
        self._db().executescript(_SCHEMA)

    def _q(self, sql: str) -> str:
        return sql

    def _begin(self, db) -> None:
        """Start the transaction that serialises appends: whoever holds it reads the chain's end."""
        db.execute("BEGIN IMMEDIATE")

    def _in_transaction(self, db) -> bool:
        return db.in_transaction

    def _table_missing(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            if self.create:
                db = sqlite3.connect(self.path, timeout=self.busy_ms / 1000, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")  # an acknowledged entry survives a crash
            else:
                if not self.path.is_file():
                    raise ResourceNotFoundError(f"no ledger at {self.path}")
                db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True,
                                     timeout=self.busy_ms / 1000, isolation_level=None)
            self._local.db = db
        return db

    def append(self, body: dict) -> Entry:
        """Add one entry at the end of the chain (atomic: all of it or nothing), then publish its
        tip. A ledger that cannot be written (locked, read-only, unreachable) raises
        BackendUnavailableError: the caller must not go on with what the entry announces."""
        return self.append_many([body])[0]

    def append_many(self, bodies: list[dict]) -> list[Entry]:
        """Add consecutive entries in one transaction (all of them or none: one commit, one sync,
        where bulk indexing would otherwise pay one per entry), then publish their tips."""
        stamp = now()
        bodies = [{"time": stamp, **body} for body in bodies]
        db = self._db()
        out: list[Entry] = []
        try:
            self._begin(db)
            row = db.execute(self._q("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")).fetchone()
            seq, prev = (row[0], row[1]) if row else (0, GENESIS)
            for body in bodies:
                seq, text = seq + 1, canonical(body)
                prev = chain_hash(prev, seq, text)
                db.execute(self._q("INSERT INTO entries (seq, operation, body, hash) VALUES (?, ?, ?, ?)"),
                           (seq, str(body.get("operation", "")), text, prev))
                out.append(Entry(seq, body, prev))
            db.execute("COMMIT")
        except self._errors as exc:
            if self._in_transaction(db):
                db.execute("ROLLBACK")
            raise self._failure(exc) from exc
        if self.heads is not None:
            for entry in out:
                try:
                    self.heads.publish_tip(entry.seq, entry.hash)
                except OSError as exc:  # the entry is committed; only the outside copy of its tip is missing
                    log.warning("ledger tip %d not published to %s: %s", entry.seq, self.heads.tips_path, exc)
        return out

    def _failure(self, exc: Exception) -> Exception:
        return BackendUnavailableError(f"the ledger {self.where} could not be written ({exc}); "
                                       "the request was not served: retry")

    def _one(self, sql: str, args: tuple):
        """One row of a read on the request path (a storage hook: PostgreSQL retries it once)."""
        return self._db().execute(self._q(sql), args).fetchone()

    def get(self, seq: int) -> Entry:
        row = self._one("SELECT seq, body, hash FROM entries WHERE seq = ?", (seq,))
        if row is None:
            raise ResourceNotFoundError(f"no ledger entry {seq}")
        return Entry(row[0], json.loads(row[1]), row[2])

    def rows(self, after_seq: int = 0) -> Iterator[tuple[int, str, str, str]]:
        """(seq, operation, body text, stored hash) in seq order; none when the table is missing."""
        try:
            cur = self._db().execute(self._q("SELECT seq, operation, body, hash FROM entries WHERE seq > ? ORDER BY seq"),
                                     (after_seq,))
            yield from cur
        except self._errors as exc:
            if self._table_missing(exc):
                self._reset()
                return
            raise LedgerError(f"the ledger {self.where} cannot be read ({exc})") from exc

    def _reset(self) -> None:
        """After a failed read: nothing to undo on SQLite (PostgreSQL rolls its connection back)."""

    def end(self) -> tuple[int, str]:
        """(seq, stored hash) of the last entry; (0, GENESIS) when empty."""
        try:
            row = self._one("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1", ())
        except self._errors as exc:
            if self._table_missing(exc):
                self._reset()
                return 0, GENESIS
            raise LedgerError(f"the ledger {self.where} cannot be read ({exc})") from exc
        return (row[0], row[1]) if row else (0, GENESIS)

    def stored_hash(self, seq: int) -> str | None:
        row = self._one("SELECT hash FROM entries WHERE seq = ?", (seq,))
        return row[0] if row else None

    def entries(self, since: str | None = None, after_seq: int = 0) -> Iterator[Entry]:
        """In chain order; ``since``: an ISO 8601 time, entries at or after it."""
        for seq, _, text, digest in self.rows(after_seq):
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

    def walk(self, keep: Iterable[int] = (), after: tuple[int, str] = (0, GENESIS)) -> "Walk":
        """Recompute the chain from ``after`` (seq, hash) on, noting the recomputed hash of each
        seq in ``keep`` (what the heads and tips are checked against)."""
        wanted = set(keep)
        walk = Walk()
        (expected, prev) = after
        expected += 1
        for seq, op, text, digest in self.rows(after[0]):
            walk.count += 1
            if seq != expected:
                walk.problems.append(Problem(expected, "deleted", f"entries {expected}..{seq - 1} are missing"))
            recomputed = chain_hash(prev, seq, text)
            if recomputed != digest or not _operation_matches(text, op):
                walk.problems.append(Problem(seq, "broken", "its content or its place in the chain was changed "
                                                            "(modified, inserted or reordered entry)"))
            if seq in wanted:
                walk.hashes[seq] = recomputed
            prev, expected = digest, seq + 1
            walk.end = (seq, digest)
        return walk

    def verify(self) -> tuple[int, list[Problem]]:
        """The chain alone: (entries checked, problems in chain order). It cannot see a chain
        recomputed after an edit, or its end cut off: ``verify_ledger`` checks the signed heads."""
        walk = self.walk()
        return walk.count, walk.problems


@dataclass
class Walk:
    count: int = 0
    end: tuple[int, str] = (0, GENESIS)
    hashes: dict[int, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _operation_matches(text: str, column: str) -> bool:
    """The lookup column must say what the hashed body says."""
    try:
        return str(json.loads(text).get("operation", "")) == column
    except (ValueError, AttributeError):
        return False


# --- verification against the heads -------------------------------------------------------------------


@dataclass
class Report:
    entries: int
    heads: int
    last_head: int
    unsigned: int  # entries after the last head (not yet covered by a signature)
    problems: list[Problem]

    @property
    def intact(self) -> bool:
        return not self.problems


def _check_heads(heads: list[Head], public_hex: str, label: str) -> list[Problem]:
    problems = []
    previous: Head | None = None
    for h in heads:
        if not h.valid_under(public_hex):
            problems.append(Problem(h.seq, "signature", f"{label} for entry {h.seq} is not signed by the signer's key "
                                                        f"{key_id_of(public_hex)} (forged or altered head)"))
            continue
        if previous is not None and (h.seq < previous.seq or h.time < previous.time or
                                     (h.seq == previous.seq and h.hash != previous.hash)):
            problems.append(Problem(h.seq, "heads", f"{label} for entry {h.seq} goes back on an earlier head "
                                                    f"(entry {previous.seq}): heads were reordered or forked"))
        previous = h
    return problems


def verify_ledger(ledger: Ledger, log_: HeadLog, public_hex: str | None, witness: list[Head] | None = None,
                  require_heads: bool = True) -> Report:
    """Check the chain and every signed head (and a witness's pinned copy of them, and the
    service's published tips). Heads are read before the chain, so appends made meanwhile
    never look like a rewrite."""
    heads, problems = log_.read_heads()
    tips, tip_problems = log_.read_tips()
    problems += tip_problems
    if (heads or witness) and public_hex is None:
        raise InvalidParameterError("verification needs the signer's public key: --public-key HEX|FILE or the "
                                    "ledger_public_key setting (keep it apart from the ledger)")
    problems += _check_heads(heads, public_hex, "head") if heads else []
    valid = [h for h in heads if public_hex and h.valid_under(public_hex)]
    pinned = []
    if witness is not None:
        pinned = [h for h in witness if public_hex and h.valid_under(public_hex)]
        problems += _check_heads(witness, public_hex, "the witness's head") if public_hex else []
        local = {(h.seq, h.hash) for h in valid}
        for h in pinned:
            if (h.seq, h.hash) not in local:
                problems.append(Problem(h.seq, "witness", f"the witness pinned a head for entry {h.seq} that the heads "
                                                          "file no longer holds (heads deleted or replaced)"))
    if not ledger.exists():
        walk = Walk()
        problems.append(Problem(0, "missing", f"no ledger at {ledger.where}"))
    else:
        walk = ledger.walk(keep=[h.seq for h in valid + pinned] + list(tips))
        problems += walk.problems
        if walk.count == 0 and (heads or tips or pinned):
            problems.append(Problem(0, "missing", "the ledger is empty but signed heads or published tips exist: "
                                                  "its entries were deleted"))
    if require_heads and walk.count and not valid:
        problems.append(Problem(1, "unsigned", "no valid signed head covers this ledger: heads are required "
                                               f"(missing {log_.heads_path}?). A ledger never signed cannot be told "
                                               "from one whose heads were deleted: sign it with `faceledger ledger "
                                               "keygen` (once, as the signer), then `faceledger ledger sign-heads`, "
                                               "and verify with the public key it printed (docs/ledger.md)"))
    length = walk.end[0]
    for label, published in (("head", [(h.seq, h.hash) for h in valid]), ("witness head", [(h.seq, h.hash) for h in pinned]),
                              ("published tip", sorted(tips.items()))):
        if walk.count == 0:
            break
        beyond = [seq for seq, _ in published if seq > length]
        if beyond:
            problems.append(Problem(beyond[0], "truncated", f"the chain ends at entry {length}, but a {label} covers entry "
                                                            f"{max(beyond)}: entries were cut off"))
        for seq, hash_ in published:
            if seq <= length and walk.hashes.get(seq) != hash_:
                problems.append(Problem(seq, "rewritten", f"the chain no longer ends in the {label}'s hash at entry "
                                                          f"{seq}: history was rewritten"))
                break  # the first is enough: every later one follows from it
    last = max((h.seq for h in valid), default=0)
    unique = {(p.seq, p.kind, p.detail): p for p in problems}
    return Report(walk.count, len(heads), last, max(0, length - last), sorted(unique.values(), key=lambda p: p.seq))


# --- the signer ------------------------------------------------------------------------------------------


class TamperedError(FaceledgerError):
    """The signer found the ledger disagreeing with what it signed or saw: it signs nothing more."""

    code = "LedgerTampered"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0]
        super().__init__(f"the ledger does not verify (entry {first.seq}, {first.kind}: {first.detail}); "
                         "no head was signed")


class HeadSigner:
    """Signs heads: at every multiple of ``every_entries`` and, when entries are waiting, once
    ``every_seconds`` have passed since the last head. It signs only a chain it verified itself:
    the whole chain against the existing heads at start, then each new entry as it appears, and
    it stops (TamperedError) if the chain it already saw was changed or cut."""

    def __init__(self, ledger: Ledger, log_: HeadLog, signer: Signer, every_entries: int = HEAD_EVERY_ENTRIES,
                 every_seconds: float = HEAD_EVERY_SECONDS, memory: Path | None = None) -> None:
        """``memory``: the signer's own copy of every head it signed (in its own domain, beside its
        key), checked as a witness: deleting heads along with a rewrite does not fool it."""
        if every_entries < 1 or every_seconds <= 0:
            raise InvalidParameterError("heads are signed at least every N >= 1 entries and every T > 0 seconds")
        self.ledger, self.log, self.signer = ledger, log_, signer
        self.every_entries, self.every_seconds = every_entries, every_seconds
        self.memory = HeadLog(memory) if memory else None
        remembered = self.memory.read_heads()[0] if self.memory else None
        report = verify_ledger(ledger, log_, signer.public_hex, witness=remembered, require_heads=False)
        if report.problems:
            raise TamperedError(report.problems)
        heads = [h for h in log_.read_heads()[0]]
        self.last_head = heads[-1] if heads else None
        self.last_head_at = time.monotonic() if heads else float("-inf")
        self.seen = (0, GENESIS)
        self.signed: list[Head] = []
        self._catch_up()

    def _catch_up(self) -> list[Head]:
        """Verify the entries after what was seen; sign at each multiple of every_entries."""
        if self.seen[0] and self.ledger.stored_hash(self.seen[0]) != self.seen[1]:
            raise TamperedError([Problem(self.seen[0], "rewritten", "an entry the signer already saw was changed "
                                                                    "or removed")])
        signed = []
        boundary = {s for s in range(self.seen[0] + 1, self.ledger.end()[0] + 1) if s % self.every_entries == 0}
        walk = self.ledger.walk(keep=boundary, after=self.seen)
        if walk.problems:
            raise TamperedError(walk.problems)
        last = self.last_head.seq if self.last_head else 0
        for seq in sorted(walk.hashes):
            if seq > last:
                signed.append(self._sign(seq, walk.hashes[seq]))
        if walk.count:
            self.seen = walk.end
        return signed

    def _sign(self, seq: int, hash_: str) -> Head:
        head = self.signer.head(seq, hash_)
        if self.memory:
            self.memory.append_head(head)
        self.log.append_head(head)
        self.signed.append(head)
        self.last_head, self.last_head_at = head, time.monotonic()
        return head

    def round(self, force: bool = False) -> list[Head]:
        """One pass: new entries verified, heads due signed. ``force``: sign the end now if unsigned."""
        signed = self._catch_up()
        end = self.seen
        due = force or time.monotonic() - self.last_head_at >= self.every_seconds
        if end[0] and (self.last_head is None or end[0] > self.last_head.seq) and due:
            signed.append(self._sign(*end))
        return signed

    def watch(self, poll: float = 1.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            for head in self.round():
                log.info("signed head %d %s", head.seq, head.hash)
            stop.wait(min(poll, self.every_seconds))


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
