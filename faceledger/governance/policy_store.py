"""The policy in force, kept in the shared database so that every replica decides by the same one.

Versions are appended, never replaced: `faceledger policy set` adds one, and each replica picks
up the newest within ``REFRESH_S`` seconds (its gate then writes a PolicyChange entry to the
ledger, as at start-up). An empty table takes the ``policy`` setting as its first version.
"""

from __future__ import annotations

import time

from faceledger.governance.policy import Policy
from faceledger.pg import SCHEMA_LOCK

REFRESH_S = 2.0
_SCHEMA = ("CREATE TABLE IF NOT EXISTS policies (version BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, "
           "digest TEXT NOT NULL, text TEXT NOT NULL, origin TEXT NOT NULL, set_at DOUBLE PRECISION NOT NULL)")


class PolicyStore:
    def __init__(self, db, default_spec: str) -> None:
        self.db = db
        with db.transaction(SCHEMA_LOCK) as c:
            c.execute(_SCHEMA)
            if c.execute("SELECT 1 FROM policies LIMIT 1").fetchone() is None:
                self._insert(c, *Policy.source(default_spec))
        self._cached: Policy | None = None
        self._checked = 0.0

    @staticmethod
    def _insert(c, text: str, origin: str) -> Policy:
        policy = Policy.parse(text, origin)  # refuse an invalid policy before it reaches any replica
        c.execute("INSERT INTO policies (name, digest, text, origin, set_at) VALUES (%s, %s, %s, %s, %s)",
                  (policy.name, policy.digest, text, origin, time.time()))
        return policy

    def set(self, spec: str) -> Policy:
        with self.db.transaction(SCHEMA_LOCK) as c:
            return self._insert(c, *Policy.source(spec))

    def newest(self) -> tuple[int, Policy, str, float]:
        """(version, policy, origin, set at)."""
        row = self.db.fetchone("SELECT version, text, origin, set_at FROM policies ORDER BY version DESC LIMIT 1")
        return row[0], Policy.parse(row[1], row[2]), row[2], row[3]

    def current(self) -> Policy:
        """The newest version, looked up at most every REFRESH_S seconds (its digest first: the
        text is read and parsed only when it changed)."""
        now = time.monotonic()
        if self._cached is None or now - self._checked >= REFRESH_S:
            self._checked = now
            digest = self.db.fetchone("SELECT digest FROM policies ORDER BY version DESC LIMIT 1")[0]
            if self._cached is None or self._cached.digest != digest:
                self._cached = self.newest()[1]
        return self._cached
