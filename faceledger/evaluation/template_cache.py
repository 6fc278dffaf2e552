"""A cache of templates computed from image files, so evaluations and audits re-run in seconds.

Keyed by the model, the acquisition recipe (detectors, limits, face choice) and the SHA-256 of
the file's bytes, so an edited image or a different model never reuses a stale template.
Failures to acquire are cached too (as NULL), since they are results, not errors.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    model TEXT NOT NULL,
    recipe TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    vector BLOB,
    detector TEXT NOT NULL,
    PRIMARY KEY (model, recipe, sha256)
)
"""


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class TemplateCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def get(self, model: str, recipe: str, sha256: str) -> tuple[np.ndarray | None, str] | None:
        row = self._db.execute(
            "SELECT vector, detector FROM templates WHERE model=? AND recipe=? AND sha256=?",
            (model, recipe, sha256),
        ).fetchone()
        if row is None:
            return None
        vector = None if row[0] is None else np.frombuffer(row[0], dtype=np.float32).copy()
        return vector, row[1]

    def put_many(self, model: str, recipe: str, rows: list[tuple[str, np.ndarray | None, str]]) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO templates VALUES (?, ?, ?, ?, ?)",
                [(model, recipe, sha, None if v is None else np.asarray(v, np.float32).tobytes(), det) for sha, v, det in rows],
            )

    def close(self) -> None:
        self._db.close()
