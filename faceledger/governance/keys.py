"""Access keys for Signature Version 4: created, listed and revoked by `faceledger keys`.

SigV4 is a shared-secret HMAC scheme, so the server must be able to read each secret: they live
in one JSON file readable only by its owner (mode 0600, checked on every load), written
atomically; or, for several replicas, in the shared PostgreSQL database (``database`` setting),
whose access control then guards them. Revoked keys stay listed (with their revocation time)
but can no longer sign.

Each key belongs to an account (a tenant, 12 digits as in an AWS ARN): it sees and changes only
that account's collections. Keys made without one belong to the default local account, which is
also the CLI's, so single-user use needs no configuration.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import string
import time
from dataclasses import dataclass
from pathlib import Path

from faceledger.errors import FaceledgerError, InvalidParameterError, ResourceNotFoundError
from faceledger.service.scope import DEFAULT_ACCOUNT, check_account

_ID_ALPHABET = string.ascii_uppercase + "234567"


class KeyFileError(FaceledgerError):
    """The key file is unreadable or readable by others."""


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    created: float
    description: str
    revoked: float | None = None
    principal: str = ""
    roles: tuple[str, ...] = ("user",)
    purposes: tuple[str, ...] = ()
    account: str = DEFAULT_ACCOUNT
    #: A standing case reference: requests signed with the key state it unless they send their own
    #: (X-Faceledger-Case), so unchanged clients can identify for a purpose that needs a case.
    case: str = ""


def default_roles(purposes) -> tuple[str, ...]:
    """A key made for a purpose is made to identify for it: ``user`` (collections, indexing) and
    ``investigator`` (search); without a purpose, ``user`` alone. The policy still decides each
    request: purpose allowed, not denied, case reference where one is needed."""
    return ("user", "investigator") if purposes else ("user",)


def new_account() -> str:
    """A fresh account id: 12 random digits, never the default local account's."""
    while (account := "".join(secrets.choice(string.digits) for _ in range(12))) == DEFAULT_ACCOUNT:
        pass
    return account


def _new_key() -> tuple[str, str]:
    key_id = "AKIA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
    return key_id, secrets.token_urlsafe(30)[:40]


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _load(self) -> dict:
        if not self.path.exists():
            return {"keys": {}}
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{self.path} is readable by other users (mode {mode:o}); run `chmod 600 {self.path}`"
            )
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"{self.path} cannot be read ({exc})") from exc

    def _save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def create(self, description: str = "", *, principal: str | None = None, roles=("user",),
               purposes=(), account: str = DEFAULT_ACCOUNT, case: str = "") -> tuple[AccessKey, str]:
        """A new key id (AKIA + 16 characters) and its 40-character secret, shown once. The key
        acts as ``principal`` (default: its id) with ``roles``, for ``purposes`` (identification
        is refused for any purpose a key does not carry), in ``account``, under a standing
        ``case`` if given."""
        check_account(account)
        data = self._load()
        key_id, secret = _new_key()
        data["keys"][key_id] = {"secret": secret, "created": time.time(), "description": description, "revoked": None,
                                "principal": principal or key_id, "roles": list(roles), "purposes": list(purposes),
                                "account": account}
        if case:
            data["keys"][key_id]["case"] = case
        self._save(data)
        return self._key(key_id, data["keys"][key_id]), secret

    @staticmethod
    def _key(key_id: str, v: dict) -> AccessKey:
        return AccessKey(key_id, v["created"], v.get("description", ""), v.get("revoked"), v.get("principal") or key_id,
                         tuple(v.get("roles", ("user",))), tuple(v.get("purposes", ())), v.get("account") or DEFAULT_ACCOUNT,
                         v.get("case", ""))

    def get(self, key_id: str) -> AccessKey:
        entry = self._load()["keys"].get(key_id)
        if entry is None:
            raise ResourceNotFoundError(f"no access key {key_id}")
        return self._key(key_id, entry)

    def list(self) -> list[AccessKey]:
        return [self._key(k, v) for k, v in sorted(self._load()["keys"].items())]

    def revoke(self, key_id: str) -> None:
        data = self._load()
        if key_id not in data["keys"]:
            raise ResourceNotFoundError(f"no access key {key_id}")
        if data["keys"][key_id].get("revoked"):
            raise InvalidParameterError(f"access key {key_id} is already revoked")
        data["keys"][key_id]["revoked"] = time.time()
        self._save(data)

    def secret(self, key_id: str) -> str | None:
        """The secret of an active key; None for unknown or revoked ones."""
        entry = self._load()["keys"].get(key_id)
        if entry is None or entry.get("revoked"):
            return None
        return entry["secret"]


_PG_SCHEMA = ("CREATE TABLE IF NOT EXISTS access_keys (key_id TEXT PRIMARY KEY, secret TEXT NOT NULL, "
              "created DOUBLE PRECISION NOT NULL, description TEXT NOT NULL, revoked DOUBLE PRECISION, "
              "principal TEXT NOT NULL, roles TEXT NOT NULL, purposes TEXT NOT NULL)")
_PG_ACCOUNT = f"ALTER TABLE access_keys ADD COLUMN IF NOT EXISTS account TEXT NOT NULL DEFAULT '{DEFAULT_ACCOUNT}'"
_PG_CASE = "ALTER TABLE access_keys ADD COLUMN IF NOT EXISTS case_reference TEXT NOT NULL DEFAULT ''"
_PG_COLUMNS = "key_id, created, description, revoked, principal, roles, purposes, account, case_reference"


class PostgresKeyStore:
    """The same keys in the shared database, so that every replica verifies every key."""

    def __init__(self, db) -> None:
        from faceledger.pg import SCHEMA_LOCK

        self.db = db
        with db.transaction(SCHEMA_LOCK) as c:
            c.execute(_PG_SCHEMA)
            c.execute(_PG_ACCOUNT)
            c.execute(_PG_CASE)

    @staticmethod
    def _key(row) -> AccessKey:
        key_id, created, description, revoked, principal, roles, purposes, account, case = row
        return AccessKey(key_id, created, description, revoked, principal, tuple(json.loads(roles)),
                         tuple(json.loads(purposes)), account, case or "")

    def create(self, description: str = "", *, principal: str | None = None, roles=("user",),
               purposes=(), account: str = DEFAULT_ACCOUNT, case: str = "") -> tuple[AccessKey, str]:
        check_account(account)
        key_id, secret = _new_key()
        row = (key_id, time.time(), description, None, principal or key_id, json.dumps(list(roles)),
               json.dumps(list(purposes)), account, case)
        with self.db.transaction() as c:
            c.execute(f"INSERT INTO access_keys ({_PG_COLUMNS}, secret) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                      (*row, secret))
        return self._key(row), secret

    def _row(self, key_id: str):
        return self.db.fetchone(f"SELECT {_PG_COLUMNS}, secret FROM access_keys WHERE key_id = %s", (key_id,))

    def get(self, key_id: str) -> AccessKey:
        row = self._row(key_id)
        if row is None:
            raise ResourceNotFoundError(f"no access key {key_id}")
        return self._key(row[:-1])

    def list(self) -> list[AccessKey]:
        rows = self.db.fetchall(f"SELECT {_PG_COLUMNS} FROM access_keys ORDER BY key_id")
        return [self._key(r) for r in rows]

    def revoke(self, key_id: str) -> None:
        key = self.get(key_id)
        if key.revoked:
            raise InvalidParameterError(f"access key {key_id} is already revoked")
        with self.db.transaction() as c:
            c.execute("UPDATE access_keys SET revoked = %s WHERE key_id = %s AND revoked IS NULL", (time.time(), key_id))

    def secret(self, key_id: str) -> str | None:
        row = self._row(key_id)
        return None if row is None or row[3] else row[-1]


def open_keys(settings):
    """The key store the settings name: the shared database when there is one, else the file."""
    if settings.database:
        from faceledger.governance.app import shared_database

        return PostgresKeyStore(shared_database(settings))
    return KeyStore(settings.keys_file)
