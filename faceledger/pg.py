"""PostgreSQL connections for shared state (catalog, keys, policy, ledger) across service replicas.

One connection per thread, opened on first use and again after the server dropped it. A lost
connection or an unreachable server is a BackendUnavailableError (retryable); a statement that
only reads is retried once on a fresh connection first, since a replica's pooled connection may
have died while idle (a server restart, a failover). A write is never retried here: its
transaction was rolled back, and the caller decides.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from faceledger.errors import BackendUnavailableError

T = TypeVar("T")
#: Serialises schema creation by replicas starting together (CREATE TABLE IF NOT EXISTS races).
SCHEMA_LOCK = 0x66616365_73636865  # "facesche"


def redact(url: str) -> str:
    """Where the database is, never its password."""
    return url.split("@")[-1]


class Database:
    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        self._psycopg = psycopg
        self._local = threading.local()

    def connection(self):
        db = getattr(self._local, "db", None)
        if db is None or db.closed:
            try:
                db = self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            except self._psycopg.OperationalError as exc:
                raise BackendUnavailableError(f"the database {redact(self.url)} cannot be reached ({exc}); retry") from exc
            self._local.db = db
        return db

    def _lost(self, exc: Exception) -> BackendUnavailableError:
        db = getattr(self._local, "db", None)
        if db is not None and not db.closed:
            db.close()
        return BackendUnavailableError(f"the database {redact(self.url)} dropped the connection ({exc}); "
                                       "nothing was written by this request: retry")

    def read(self, fn: Callable[..., T]) -> T:
        """``fn(connection)`` outside a transaction, retried once on a fresh connection."""
        for attempt in (0, 1):
            try:
                return fn(self.connection())
            except self._psycopg.OperationalError as exc:
                lost = self._lost(exc)
                if attempt:
                    raise lost from exc
        raise AssertionError("unreachable")

    def fetchall(self, sql: str, args: tuple = ()) -> list[tuple]:
        """The rows of a read (retried once, as ``read``)."""
        return self.read(lambda db: db.execute(sql, args).fetchall())

    def fetchone(self, sql: str, args: tuple = ()) -> tuple | None:
        return self.read(lambda db: db.execute(sql, args).fetchone())

    @contextmanager
    def transaction(self, lock: int | None = None) -> Iterator:
        """A transaction (serialised by a transaction-scoped advisory lock when ``lock`` is given):
        committed when the block ends, rolled back when it raises or the connection drops."""
        db = self.connection()
        try:
            with db.transaction():
                if lock is not None:
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                yield db
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
