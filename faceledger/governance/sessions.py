"""Console sessions: signing in with a faceledger access key (its id and secret).

A session is a random 256-bit token in a cookie; only its SHA-256 is stored (a reader of the
sessions file cannot take one over). Each session has its own CSRF token, which every state-changing
request must echo (compared in constant time). A session ends after ``console_session_seconds``
without a request, ``console_session_max_seconds`` after sign-in however busy, at sign-out, and at
once when its key is revoked (checked on every request), so the same keys and roles as the API
decide everything the console shows.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from faceledger.errors import AccessDeniedError, InvalidSignatureError, UnrecognizedClientError
from faceledger.governance.keys import AccessKey
from faceledger.governance.policy import Context, Principal
from faceledger.localdb import ThreadLocalSQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY, key_id TEXT NOT NULL, csrf TEXT NOT NULL, created REAL NOT NULL, seen REAL NOT NULL);
"""


class SessionExpiredError(AccessDeniedError):
    """No session, or one that has ended: sign in again."""


@dataclass(frozen=True)
class Session:
    key: AccessKey
    csrf: str
    created: float
    seen: float

    def context(self) -> Context:
        """The key's principal, as the API would see it: same roles, purposes, account and standing case."""
        k = self.key
        principal = Principal(k.principal, k.roles, k.purposes, k.account)
        purpose = k.purposes[0] if len(k.purposes) == 1 and k.purposes[0] != "*" else None
        return Context(principal, purpose, k.case or None, "console")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: Path, keys, lifetime_seconds: int, clock=time.time, *, max_seconds: int = 43200) -> None:
        """``lifetime_seconds``: idle time that ends a session; ``max_seconds``: its age that ends
        it however busy (a script cannot keep a stolen cookie alive for ever)."""
        self.path = Path(path)
        self.keys = keys
        self.lifetime = int(lifetime_seconds)
        self.max_age = max(int(max_seconds), self.lifetime)
        self.clock = clock
        self._db = ThreadLocalSQLite(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db().executescript(_SCHEMA)
        self.path.chmod(0o600)

    def sign_in(self, key_id: str, secret: str) -> tuple[str, Session]:
        """A new session for a valid, unrevoked key: (cookie token, session). Wrong or revoked keys
        raise the API's own errors (UnrecognizedClient, InvalidSignature)."""
        expected = self.keys.secret(key_id.strip())
        if expected is None:
            raise UnrecognizedClientError("unknown or revoked access key")
        if not hmac.compare_digest(expected.encode(), secret.strip().encode()):
            raise InvalidSignatureError("the secret does not match the access key")
        key = self.keys.get(key_id.strip())
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self.clock()
        db = self._db()
        db.execute("DELETE FROM sessions WHERE seen < ? OR created < ?", (now - self.lifetime, now - self.max_age))
        db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (_digest(token), key.access_key_id, csrf, now, now))
        return token, Session(key, csrf, now, now)

    def session(self, token: str | None) -> Session:
        """The live session of a cookie, its idle time reset; SessionExpiredError otherwise."""
        if not token:
            raise SessionExpiredError("sign in to the console with an access key")
        db = self._db()
        row = db.execute("SELECT key_id, csrf, created, seen FROM sessions WHERE token_sha256 = ?",
                         (_digest(token),)).fetchone()
        now = self.clock()
        if row is None:
            raise SessionExpiredError("the session has ended: sign in again")
        key_id, csrf, created, seen = row
        if now - seen >= self.lifetime or now - created >= self.max_age or self.keys.secret(key_id) is None:
            db.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))
            raise SessionExpiredError("the session has ended (idle too long, too old, or its key was revoked): sign in again")
        db.execute("UPDATE sessions SET seen = ? WHERE token_sha256 = ?", (now, _digest(token)))
        return Session(self.keys.get(key_id), csrf, created, now)

    def sign_out(self, token: str | None) -> None:
        if token:
            self._db().execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))

    @staticmethod
    def check_csrf(session: Session, sent: str | None) -> None:
        """A state-changing request must carry the session's CSRF token (a form field)."""
        if not sent or not hmac.compare_digest(session.csrf.encode(), sent.encode()):
            raise AccessDeniedError("the form's CSRF token is missing or wrong: reload the page and try again")
