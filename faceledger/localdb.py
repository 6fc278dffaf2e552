"""One SQLite connection per thread, in WAL mode.

The server's small side files (console sessions, the ledger's index, video jobs) are read and
written from several threads, and a sqlite3 connection belongs to the thread that made it.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class ThreadLocalSQLite:
    """Call it for this thread's connection (autocommit, WAL, a 30 s busy wait, ``pragmas``)."""

    def __init__(self, path: Path, *, pragmas: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.pragmas = pragmas
        self._local = threading.local()

    def __call__(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            for pragma in self.pragmas:
                db.execute(f"PRAGMA {pragma}")
            self._local.db = db
        return db
