"""Where the Milvus store keeps collection metadata and users: the catalog.

The templates live in Milvus either way; the catalog is the small, transactional part. Two
implementations: Milvus itself (two small collections: nothing else to run) and PostgreSQL
(``database`` setting), which several service replicas share with their keys, policy and
ledger. A collection's name is claimed in the catalog before its Milvus collection is made, so
two replicas creating the same name cannot both succeed.
"""

from __future__ import annotations

import json
from typing import Protocol

from faceledger.errors import ConflictError, ResourceAlreadyExistsError, ResourceNotFoundError
from faceledger.pg import SCHEMA_LOCK

COLUMNS = ("name", "arn", "model", "created", "store_images", "ndim")
META, USERS = "faceledger_collections", "faceledger_users"
_PLACEHOLDER = [0.0, 0.0]
MAX_ROWS = 16_384  # Milvus's query window


class Catalog(Protocol):
    def create(self, row: dict) -> None: ...  # raises ResourceAlreadyExistsError
    def get(self, name: str) -> dict: ...  # COLUMNS; raises ResourceNotFoundError
    def list(self, after: str, limit: int) -> list[dict]: ...  # by name, names > after
    def delete(self, name: str) -> None: ...  # with its users
    def users(self, name: str) -> list[str]: ...
    def has_user(self, name: str, user_id: str) -> bool: ...
    def add_user(self, name: str, user_id: str, created: float) -> None: ...  # raises ConflictError
    def remove_user(self, name: str, user_id: str) -> None: ...


def _missing(name: str) -> ResourceNotFoundError:
    return ResourceNotFoundError(f"collection {name!r} does not exist")


def quote(value: str) -> str:
    return json.dumps(value)  # a Milvus filter string literal, escapes included


def _user_key(name: str, user_id: str) -> str:
    return name + "/" + user_id  # neither a collection name nor a user id may hold "/"


class MilvusCatalog:
    """Two small Milvus collections (Milvus requires a vector field: they carry a 2-d placeholder)."""

    def __init__(self, client) -> None:
        from pymilvus import DataType

        self.client = client
        for name, fields in ((META, [("name", 255, True), ("arn", 512, False), ("model", 128, False)]),
                             (USERS, [("id", 512, True), ("collection", 255, False), ("user_id", 128, False)])):
            if client.has_collection(name):
                continue
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            for field, size, primary in fields:
                schema.add_field(field, DataType.VARCHAR, max_length=size, is_primary=primary)
            schema.add_field("created", DataType.DOUBLE)
            if name == META:
                schema.add_field("store_images", DataType.BOOL)
                schema.add_field("ndim", DataType.INT64)
            schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
            index = client.prepare_index_params()
            index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
            client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")

    def create(self, row: dict) -> None:
        if self.client.query(META, filter=f"name == {quote(row['name'])}", output_fields=["name"]):
            raise ResourceAlreadyExistsError(f"collection {row['name']!r} already exists")
        self.client.insert(META, [{**row, "placeholder": _PLACEHOLDER}])

    def get(self, name: str) -> dict:
        rows = self.client.query(META, filter=f"name == {quote(name)}", output_fields=list(COLUMNS))
        if not rows:
            raise _missing(name)
        return rows[0]

    def list(self, after: str, limit: int) -> list[dict]:
        rows = self.client.query(META, filter=f"name > {quote(after)}", limit=MAX_ROWS, output_fields=list(COLUMNS))
        return sorted(rows, key=lambda r: r["name"])[:limit]

    def delete(self, name: str) -> None:
        self.client.delete(USERS, filter=f"collection == {quote(name)}")
        self.client.delete(META, filter=f"name == {quote(name)}")

    def users(self, name: str) -> list[str]:
        rows = self.client.query(USERS, filter=f"collection == {quote(name)}", output_fields=["user_id"], limit=MAX_ROWS)
        return sorted(r["user_id"] for r in rows)

    def has_user(self, name: str, user_id: str) -> bool:
        return bool(self.client.query(USERS, filter=f"id == {quote(_user_key(name, user_id))}", output_fields=["id"]))

    def add_user(self, name: str, user_id: str, created: float) -> None:
        if self.has_user(name, user_id):
            raise ConflictError(f"user {user_id!r} already exists in collection {name!r}")
        self.client.insert(USERS, [{"id": _user_key(name, user_id), "collection": name, "user_id": user_id,
                                    "created": created, "placeholder": _PLACEHOLDER}])

    def remove_user(self, name: str, user_id: str) -> None:
        self.client.delete(USERS, filter=f"id == {quote(_user_key(name, user_id))}")


_PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY, arn TEXT NOT NULL, model TEXT NOT NULL, "
    "created DOUBLE PRECISION NOT NULL, store_images BOOLEAN NOT NULL, ndim BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS collection_users (collection TEXT NOT NULL REFERENCES collections ON DELETE CASCADE, "
    "user_id TEXT NOT NULL, created DOUBLE PRECISION NOT NULL, PRIMARY KEY (collection, user_id))",
)


class PostgresCatalog:
    def __init__(self, db) -> None:
        import psycopg

        self.db, self._unique, self._orphan = db, psycopg.errors.UniqueViolation, psycopg.errors.ForeignKeyViolation
        with db.transaction(SCHEMA_LOCK) as c:
            for statement in _PG_SCHEMA:
                c.execute(statement)

    def create(self, row: dict) -> None:
        try:
            with self.db.transaction() as c:
                c.execute("INSERT INTO collections (name, arn, model, created, store_images, ndim) "
                          "VALUES (%(name)s, %(arn)s, %(model)s, %(created)s, %(store_images)s, %(ndim)s)", row)
        except self._unique:
            raise ResourceAlreadyExistsError(f"collection {row['name']!r} already exists") from None

    def get(self, name: str) -> dict:
        rows = self.db.fetchall(f"SELECT {', '.join(COLUMNS)} FROM collections WHERE name = %s", (name,))
        if not rows:
            raise _missing(name)
        return dict(zip(COLUMNS, rows[0]))

    def list(self, after: str, limit: int) -> list[dict]:
        rows = self.db.fetchall(f"SELECT {', '.join(COLUMNS)} FROM collections WHERE name > %s ORDER BY name COLLATE \"C\" "
                          "LIMIT %s", (after, limit))
        return [dict(zip(COLUMNS, r)) for r in rows]

    def delete(self, name: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM collections WHERE name = %s", (name,))  # users cascade

    def users(self, name: str) -> list[str]:
        rows = self.db.fetchall("SELECT user_id FROM collection_users WHERE collection = %s ORDER BY user_id COLLATE \"C\"",
                          (name,))
        return [r[0] for r in rows]

    def has_user(self, name: str, user_id: str) -> bool:
        return bool(self.db.fetchall("SELECT 1 FROM collection_users WHERE collection = %s AND user_id = %s", (name, user_id)))

    def add_user(self, name: str, user_id: str, created: float) -> None:
        try:
            with self.db.transaction() as c:
                c.execute("INSERT INTO collection_users (collection, user_id, created) VALUES (%s, %s, %s)",
                          (name, user_id, created))
        except self._unique:
            raise ConflictError(f"user {user_id!r} already exists in collection {name!r}") from None
        except self._orphan:  # the collection was deleted meanwhile
            raise _missing(name) from None

    def remove_user(self, name: str, user_id: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM collection_users WHERE collection = %s AND user_id = %s", (name, user_id))
