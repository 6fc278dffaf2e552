"""The ledger on PostgreSQL, for several ``faceledger serve`` replicas sharing one chain.

Same entries, hashes, checkpoints and verification as the embedded ledger (ledger.py); only the
storage differs. One linear chain under concurrent writers from any number of processes or
machines: each append runs in a transaction that first takes a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), so reading the chain's end and inserting the next entry happen one
writer at a time; the lock is released at COMMIT or ROLLBACK, also if the writer dies. The
primary key on ``seq`` would refuse a second entry with the same number in any case.
"""

from __future__ import annotations

import threading

from .ledger import CHECKPOINT_EVERY, Ledger, LedgerError, Signer

#: The advisory lock's key: any 64-bit number no other application on the database uses.
APPEND_LOCK = 0x66616365_6C656467  # "faceledg"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (seq BIGINT PRIMARY KEY, operation TEXT NOT NULL, body TEXT NOT NULL, "
    "hash TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_operation ON entries (operation, seq)",
    "CREATE TABLE IF NOT EXISTS checkpoints (seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, time TEXT NOT NULL, "
    "key_id TEXT NOT NULL, signature TEXT NOT NULL)",
)


class PostgresLedger(Ledger):
    def __init__(self, url: str, signer: Signer | None = None, checkpoint_every: int = CHECKPOINT_EVERY) -> None:
        import psycopg

        self._errors = (psycopg.Error,)
        self.url = url
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self._local = threading.local()
        self._create_schema()

    @property
    def where(self) -> str:
        return self.url.split("@")[-1]  # never echo a password

    def _db(self):
        import psycopg

        db = getattr(self._local, "db", None)
        if db is None or db.closed:
            try:
                db = psycopg.connect(self.url, autocommit=True)  # transactions are explicit, as with SQLite
            except psycopg.Error as exc:
                raise LedgerError(f"the ledger database {self.where} cannot be reached ({exc})") from exc
            self._local.db = db
        return db

    def _create_schema(self) -> None:
        db = self._db()
        db.execute("BEGIN")
        db.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))  # replicas starting together
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute("COMMIT")

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _begin(self, db) -> None:
        db.execute("BEGIN")
        db.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))

    def _in_transaction(self, db) -> bool:
        from psycopg import pq

        return db.info.transaction_status != pq.TransactionStatus.IDLE


def open_ledger(path, database: str = "", signer: Signer | None = None) -> Ledger:
    """PostgreSQL when ``database`` names one (postgresql://...), else SQLite at ``path``."""
    if database:
        return PostgresLedger(database, signer)
    return Ledger(path, signer)
