"""The ledger on PostgreSQL, for several ``faceledger serve`` replicas sharing one chain.

Same entries, hashes, published tips and verification against signed heads as the embedded
ledger (ledger.py); only the storage differs. The heads directory stays a file outside the
database, as for SQLite. One linear chain under concurrent writers from any number of processes or
machines: each append runs in a transaction that first takes a transaction-scoped advisory lock
(``pg_advisory_xact_lock``), so reading the chain's end and inserting the next entry happen one
writer at a time; the lock is released at COMMIT or ROLLBACK, also if the writer dies. The
primary key on ``seq`` would refuse a second entry with the same number in any case.
"""

from __future__ import annotations

from faceledger.errors import BackendUnavailableError
from faceledger.governance.ledger import HeadLog, Ledger
from faceledger.pg import Database, redact

#: The advisory lock's key: any 64-bit number no other application on the database uses.
APPEND_LOCK = 0x66616365_6C656467  # "faceledg"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (seq BIGINT PRIMARY KEY, operation TEXT NOT NULL, body TEXT NOT NULL, "
    "hash TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_operation ON entries (operation, seq)",
)


class PostgresLedger(Ledger):
    def __init__(self, database: Database | str, heads: HeadLog | None = None, *, create: bool = True,
                 busy_ms: int = 10_000) -> None:
        import psycopg

        self.database = database if isinstance(database, Database) else Database(database)
        self._errors = (psycopg.Error,)
        self._lost = psycopg.OperationalError
        self._undefined = psycopg.errors.UndefinedTable
        self.url = self.database.url
        self.heads = heads
        self.create = create
        self.busy_ms = int(busy_ms)
        if create:
            self._create_schema()

    def exists(self) -> bool:
        """The database is there (a missing entries table reads as an empty ledger)."""
        return True

    def _table_missing(self, exc: Exception) -> bool:
        return isinstance(exc, self._undefined)

    @property
    def where(self) -> str:
        return redact(self.url)

    def _db(self):
        return self.database.connection()

    def _create_schema(self) -> None:
        with self.database.transaction(APPEND_LOCK) as db:  # replicas starting together
            for statement in _SCHEMA:
                db.execute(statement)

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _begin(self, db) -> None:
        db.execute("BEGIN")
        db.execute(f"SET LOCAL lock_timeout = {self.busy_ms}")  # a held lock: 503 after this, not a hung request
        db.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))

    def _in_transaction(self, db) -> bool:
        from psycopg import pq

        return not db.closed and db.info.transaction_status != pq.TransactionStatus.IDLE

    def _one(self, sql: str, args: tuple):
        return self.database.fetchone(self._q(sql), args)

    def _failure(self, exc: Exception) -> Exception:
        if isinstance(exc, self._lost):  # the transaction died with the connection: nothing was written
            self.database.close()
            return BackendUnavailableError(f"the ledger database {self.where} dropped the connection ({exc}); "
                                           "the entry was not written: retry")
        return super()._failure(exc)


def open_ledger(path, database: str | Database = "", heads: HeadLog | None = None, *, create: bool = True,
                busy_ms: int = 10_000) -> Ledger:
    """PostgreSQL when ``database`` names one (postgresql://...), else SQLite at ``path``.
    ``create``: False never creates a missing ledger (verification and the signer only read)."""
    if database:
        return PostgresLedger(database, heads, create=create, busy_ms=busy_ms)
    return Ledger(path, heads, create=create, busy_ms=busy_ms)
