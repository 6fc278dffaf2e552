"""A FaceStore on Milvus: for galleries beyond one machine (pymilvus; Milvus Lite in tests).

Layout: every faceledger collection is one Milvus collection (``fl_`` + 24 hex digits of its
name's SHA-1) of faces with scalar fields (face id, image id, external id, box, confidence, user,
time) and the template; collection metadata and users are two small Milvus collections of their
own (Milvus requires a vector field in every collection: they carry a 2-d placeholder). Deletes
are real deletes. Every collection is created with consistency level Strong, so a read issued
after a write returns sees it, from any client: what the store interface promises; Bounded or
Eventually would be faster and break read-your-writes. Index type and parameters are settings
(FLAT by default: exact; HNSW or IVF_FLAT for large galleries). Stored images are not
supported on this backend (Milvus strings are capped at 64 KB): collections refuse
``store_images``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Sequence

import numpy as np

from ..errors import ConflictError, InvalidParameterError, ResourceAlreadyExistsError, ResourceNotFoundError
from .base import CollectionInfo, NewFace, StoredFace, UserInfo

META, USERS = "faceledger_collections", "faceledger_users"
_PLACEHOLDER = [0.0, 0.0]
_FACE_FIELDS = ["key", "face_id", "image_id", "external_image_id", "left", "top", "width", "height", "confidence",
                "user_id", "created"]
_MAX_ROWS = 16_384  # Milvus's query window


def _milvus_name(name: str) -> str:
    return "fl_" + hashlib.sha1(name.encode()).hexdigest()[:24]


def _user_key(name: str, user_id: str) -> str:
    return name + "/" + user_id  # neither a collection name nor a user id may hold "/"


def _quote(value: str) -> str:
    return json.dumps(value)  # a Milvus filter string literal, escapes included


class MilvusStore:
    def __init__(self, uri: str, *, region: str = "us-east-1", index_type: str = "FLAT",
                 index_params: dict | None = None) -> None:
        from pymilvus import DataType, MilvusClient

        self._types = DataType
        self.client = MilvusClient(uri)
        self.index_type, self.index_params = index_type, index_params or {}
        self._arn_prefix = f"aws:rekognition:{region}:000000000000:collection/"
        for name, fields in ((META, [("name", 255, True), ("arn", 512, False), ("model", 128, False)]),
                             (USERS, [("id", 512, True), ("collection", 255, False), ("user_id", 128, False)])):
            if not self.client.has_collection(name):
                schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
                for field, size, primary in fields:
                    schema.add_field(field, DataType.VARCHAR, max_length=size, is_primary=primary)
                if name == META:
                    schema.add_field("created", DataType.DOUBLE)
                    schema.add_field("store_images", DataType.BOOL)
                    schema.add_field("ndim", DataType.INT64)
                else:
                    schema.add_field("created", DataType.DOUBLE)
                schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
                index = self.client.prepare_index_params()
                index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
                self.client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")

    # --- collections -----------------------------------------------------------------------------

    def _meta(self, name: str) -> dict:
        rows = self.client.query(META, filter=f"name == {_quote(name)}", output_fields=["name", "arn", "model", "created",
                                                                                          "store_images", "ndim"])
        if not rows:
            raise ResourceNotFoundError(f"collection {name!r} does not exist")
        return rows[0]

    def _info(self, row: dict, counts: bool) -> CollectionInfo:
        faces = users = None
        if counts:
            faces = self.face_count(row["name"])
            users = len(self._user_rows(row["name"]))
        return CollectionInfo(row["name"], row["arn"], row["model"], row["created"], faces, users, row["store_images"])

    def create_collection(self, name: str, model: str, *, store_images: bool = False, ndim: int = 128) -> CollectionInfo:
        if store_images:
            raise InvalidParameterError("the Milvus store keeps templates only: store_images is not supported")
        if self.client.query(META, filter=f"name == {_quote(name)}", output_fields=["name"]):
            raise ResourceAlreadyExistsError(f"collection {name!r} already exists")
        t = self._types
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", t.INT64, is_primary=True)
        for field, size in (("face_id", 64), ("image_id", 64), ("external_image_id", 255), ("user_id", 128)):
            schema.add_field(field, t.VARCHAR, max_length=size)
        for field in ("left", "top", "width", "height", "confidence"):
            schema.add_field(field, t.FLOAT)
        schema.add_field("created", t.DOUBLE)
        schema.add_field("vector", t.FLOAT_VECTOR, dim=ndim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="vector", index_type=self.index_type, metric_type="IP", params=self.index_params)
        self.client.create_collection(_milvus_name(name), schema=schema, index_params=index, consistency_level="Strong")
        self.client.insert(META, [{"name": name, "arn": self._arn_prefix + name, "model": model, "created": time.time(),
                                   "store_images": False, "ndim": ndim, "placeholder": _PLACEHOLDER}])
        return self.get_collection(name)

    def get_collection(self, name: str, *, counts: bool = True) -> CollectionInfo:
        return self._info(self._meta(name), counts)

    def list_collections(self, after: str | None, limit: int) -> tuple[list[CollectionInfo], str | None]:
        rows = self.client.query(META, filter=f"name > {_quote(after or '')}", limit=_MAX_ROWS,
                                 output_fields=["name", "arn", "model", "created", "store_images", "ndim"])
        rows.sort(key=lambda r: r["name"])
        items = [self._info(r, True) for r in rows[:limit]]
        return items, (items[-1].name if len(rows) > limit else None)

    def delete_collection(self, name: str) -> None:
        self._meta(name)
        self.client.drop_collection(_milvus_name(name))
        self.client.delete(USERS, filter=f"collection == {_quote(name)}")
        self.client.delete(META, filter=f"name == {_quote(name)}")

    # --- faces -----------------------------------------------------------------------------------

    @staticmethod
    def _face(row: dict, vectors: bool = False) -> StoredFace:
        return StoredFace(row["face_id"], row["image_id"], row["external_image_id"] or None,
                          (row["left"], row["top"], row["width"], row["height"]), row["confidence"],
                          row["user_id"] or None, row["created"],
                          np.asarray(row["vector"], np.float32) if vectors else None)

    def add_faces(self, name: str, faces: Sequence[NewFace], image: bytes | None = None) -> list[StoredFace]:
        meta = self._meta(name)
        image_id, now, rows, stored = str(uuid.uuid4()), time.time(), [], []
        for f in faces:
            vector = np.asarray(f.vector, dtype=np.float32)
            if vector.shape != (meta["ndim"],):
                raise ValueError(f"template has shape {vector.shape}, the collection holds ({meta['ndim']},)")
            face_id = str(uuid.uuid4())
            rows.append({"key": uuid.uuid4().int >> 65, "face_id": face_id, "image_id": image_id,
                         "external_image_id": f.external_image_id or "", "left": f.box[0], "top": f.box[1],
                         "width": f.box[2], "height": f.box[3], "confidence": f.confidence, "user_id": "",
                         "created": now, "vector": vector.tolist()})
            stored.append(StoredFace(face_id, image_id, f.external_image_id, tuple(f.box), f.confidence, None, now))
        if rows:
            self.client.insert(_milvus_name(name), rows)
        return stored

    def _rows(self, name: str, filter: str, vectors: bool = False) -> list[dict]:
        self._meta(name)
        fields = _FACE_FIELDS + (["vector"] if vectors else [])
        return self.client.query(_milvus_name(name), filter=filter, output_fields=fields, limit=_MAX_ROWS)

    def get_faces(self, name: str, face_ids: Sequence[str], *, vectors: bool = False) -> dict[str, StoredFace]:
        ids = list(dict.fromkeys(face_ids))
        if not ids:
            self._meta(name)
            return {}
        rows = self._rows(name, f"face_id in {json.dumps(ids)}", vectors)
        return {r["face_id"]: self._face(r, vectors) for r in rows}

    def list_faces(
        self, name: str, after: str | None, limit: int, *, user_id: str | None = None, face_ids: Sequence[str] | None = None
    ) -> tuple[list[StoredFace], str | None]:
        where = f"key > {int(after or -1)}"
        if user_id is not None:
            where += f" and user_id == {_quote(user_id)}"
        if face_ids is not None:
            where += f" and face_id in {json.dumps(list(face_ids))}"
        rows = sorted(self._rows(name, where), key=lambda r: r["key"])
        page = rows[:limit]
        return [self._face(r) for r in page], (str(page[-1]["key"]) if len(rows) > limit else None)

    def delete_faces(self, name: str, face_ids: Sequence[str]) -> list[str]:
        found = self.get_faces(name, face_ids)
        if found:
            self.client.delete(_milvus_name(name), filter=f"face_id in {json.dumps(list(found))}")
        return [f for f in dict.fromkeys(face_ids) if f in found]

    def search(self, name: str, vector: np.ndarray, k: int) -> list[tuple[StoredFace, float]]:
        self._meta(name)
        hits = self.client.search(_milvus_name(name), data=[np.asarray(vector, np.float32).tolist()], limit=k,
                                  output_fields=_FACE_FIELDS, search_params={"metric_type": "IP"})[0]
        return [(self._face(h["entity"]), float(h["distance"])) for h in hits]

    def face_count(self, name: str) -> int:
        self._meta(name)
        return int(self.client.query(_milvus_name(name), filter="", output_fields=["count(*)"])[0]["count(*)"])

    def stored_image(self, name: str, image_id: str) -> bytes | None:
        self._meta(name)
        return None

    # --- users -----------------------------------------------------------------------------------

    def _user_rows(self, name: str) -> list[dict]:
        return self.client.query(USERS, filter=f"collection == {_quote(name)}", output_fields=["user_id", "created"],
                                 limit=_MAX_ROWS)

    def _user_info(self, name: str, user_id: str) -> UserInfo:
        n = len(self._rows(name, f"user_id == {_quote(user_id)}"))
        return UserInfo(user_id, "ACTIVE" if n else "CREATED", n)

    def create_user(self, name: str, user_id: str) -> UserInfo:
        self._meta(name)
        key = _user_key(name, user_id)
        if self.client.query(USERS, filter=f"id == {_quote(key)}", output_fields=["id"]):
            raise ConflictError(f"user {user_id!r} already exists in collection {name!r}")
        self.client.insert(USERS, [{"id": key, "collection": name, "user_id": user_id, "created": time.time(),
                                    "placeholder": _PLACEHOLDER}])
        return UserInfo(user_id, "CREATED", 0)

    def get_user(self, name: str, user_id: str) -> UserInfo:
        self._meta(name)
        if not self.client.query(USERS, filter=f"id == {_quote(_user_key(name, user_id))}", output_fields=["id"]):
            raise ResourceNotFoundError(f"user {user_id!r} does not exist in collection {name!r}")
        return self._user_info(name, user_id)

    def list_users(self, name: str, after: str | None, limit: int) -> tuple[list[UserInfo], str | None]:
        self._meta(name)
        ids = sorted(r["user_id"] for r in self._user_rows(name) if r["user_id"] > (after or ""))
        items = [self._user_info(name, u) for u in ids[:limit]]
        return items, (items[-1].user_id if len(ids) > limit else None)

    def delete_user(self, name: str, user_id: str) -> None:
        self.get_user(name, user_id)
        self.client.delete(USERS, filter=f"id == {_quote(_user_key(name, user_id))}")
        faces = self._rows(name, f"user_id == {_quote(user_id)}")
        self.set_user(name, [f["face_id"] for f in faces], None)

    def set_user(self, name: str, face_ids: Sequence[str], user_id: str | None) -> None:
        """Milvus has no update: the faces are rewritten whole (upsert on their primary key)."""
        rows = self._rows(name, f"face_id in {json.dumps(list(face_ids))}", vectors=True) if face_ids else []
        for r in rows:
            r["user_id"] = user_id or ""
            r["vector"] = [float(x) for x in r["vector"]]
        if rows:
            self.client.upsert(_milvus_name(name), rows)

    def close(self) -> None:
        self.client.close()
