"""A FaceStore on Milvus: for galleries beyond one machine (pymilvus; Milvus Lite in tests).

Layout: every faceledger collection is one Milvus collection (``fl_`` + 24 hex digits of its
name's SHA-1) of faces with scalar fields (face id, image id, external id, box, confidence, user,
time) and the template; collection metadata and users are in a catalog (catalog.py): two small
Milvus collections, or PostgreSQL shared by several service replicas. Deletes are real deletes.
Every collection is created with consistency level Strong, so a read issued after a write
returns sees it, from any client: what the store interface promises; Bounded or Eventually
would be faster and break read-your-writes. Index type and parameters are settings (FLAT by
default: exact; HNSW or IVF_FLAT for large galleries). Stored images are not supported on this
backend (Milvus strings are capped at 64 KB): collections refuse ``store_images``. A Milvus
server that cannot be reached, or drops the connection, is a BackendUnavailableError (retryable).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
import uuid
from typing import Sequence

import numpy as np

from faceledger.errors import BackendUnavailableError, InvalidParameterError, ResourceNotFoundError
from faceledger.store.base import CollectionInfo, NewFace, StoredFace, UserInfo
from faceledger.store.catalog import MAX_ROWS, MilvusCatalog, quote

#: Per-search parameters by index type unless set (milvus_search_params).
SEARCH_DEFAULTS = {"HNSW": {"ef": 128}, "IVF_FLAT": {"nprobe": 32}, "IVF_SQ8": {"nprobe": 32}}  # nlist 128 by default
_FACE_FIELDS = ["key", "face_id", "image_id", "external_image_id", "left", "top", "width", "height", "confidence",
                "user_id", "created"]


#: Room for a face's quality as compact JSON (vision.quality.Quality: ten numbers).
QUALITY_LENGTH = 512


def _milvus_name(name: str) -> str:
    return "fl_" + hashlib.sha1(name.encode()).hexdigest()[:24]


_RELEASED = re.compile(r"[Cc]ollection '([A-Za-z0-9_]+)' is in state 'released'|collection not loaded.*?'([A-Za-z0-9_]+)'")


def _unavailable(method):
    """Milvus unreachable or gone mid-call -> BackendUnavailableError. Milvus writes are per-row
    atomic: a failed insert or delete leaves each row written or not, never half a row."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        loaded: set[str] = set()
        if self._broken:
            self._connect()
        while True:
            try:
                return method(self, *args, **kwargs)
            except self._milvus_errors as exc:
                released = _RELEASED.search(str(exc))
                name = released and (released.group(1) or released.group(2))
                if name and name not in loaded:  # a restarted server has its collections unloaded
                    self.client.load_collection(name)
                    loaded.add(name)
                    continue
                if not _is_connection_error(exc):
                    raise
                self._broken = True  # the next call starts from a fresh client
                raise BackendUnavailableError(f"Milvus at {self.where} cannot be reached ({exc}); retry") from exc

    return call


def _is_connection_error(exc: Exception) -> bool:
    import grpc

    if isinstance(exc, grpc.RpcError):
        return True
    text = str(exc).lower()
    return any(w in text for w in ("connect", "unavailable", "deadline", "closed channel", "socket"))


class MilvusStore:
    def __init__(self, uri: str, *, region: str = "us-east-1", index_type: str = "FLAT",
                 index_params: dict | None = None, search_params: dict | None = None, catalog_database=None) -> None:
        """``catalog_database``: a pg.Database for the catalog; None keeps it in Milvus.
        ``search_params``: per-search parameters of the index (HNSW ``ef``, IVF ``nprobe``);
        None: SEARCH_DEFAULTS (docs/deploy.md says how to choose them for a large gallery)."""
        import grpc
        from pymilvus import DataType
        from pymilvus.exceptions import MilvusException

        self._types = DataType
        self._milvus_errors = (MilvusException, grpc.RpcError)
        self.uri, self.where = uri, uri.split("@")[-1]
        self.catalog = None
        self._optional_fields: dict[str, set[str]] = {}  # fields newer than some collections
        self._connect()
        self.index_type, self.index_params = index_type, index_params or {}
        self.search_params = dict(SEARCH_DEFAULTS.get(index_type.upper(), {}), **(search_params or {}))
        self._arn_prefix = f"aws:rekognition:{region}:000000000000:collection/"
        if catalog_database is not None:
            from faceledger.store.catalog import PostgresCatalog

            self.catalog = PostgresCatalog(catalog_database)
        else:
            self.catalog = MilvusCatalog(self.client)

    def _connect(self) -> None:
        from pymilvus import MilvusClient

        try:
            self.client = MilvusClient(self.uri)
        except self._milvus_errors as exc:
            self._broken = True
            raise BackendUnavailableError(f"Milvus at {self.where} cannot be reached ({exc}); retry") from exc
        self._broken = False
        if isinstance(self.catalog, MilvusCatalog):
            self.catalog.client = self.client

    # --- collections -----------------------------------------------------------------------------

    def _meta(self, name: str) -> dict:
        return self.catalog.get(name)

    def _info(self, row: dict, counts: bool) -> CollectionInfo:
        faces = users = None
        if counts:
            faces = self.face_count(row["name"])
            users = len(self.catalog.users(row["name"]))
        return CollectionInfo(row["name"], row["arn"], row["model"], row["created"], faces, users, row["store_images"])

    @_unavailable
    def create_collection(self, name: str, model: str, *, store_images: bool = False, ndim: int = 128) -> CollectionInfo:
        if store_images:
            raise InvalidParameterError("the Milvus store keeps templates only: store_images is not supported")
        self.catalog.create({"name": name, "arn": self._arn_prefix + name, "model": model, "created": time.time(),
                             "store_images": False, "ndim": ndim})  # claims the name first
        try:
            t = self._types
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", t.INT64, is_primary=True)
            for field, size in (("face_id", 64), ("image_id", 64), ("external_image_id", 255), ("user_id", 128)):
                schema.add_field(field, t.VARCHAR, max_length=size)
            for field in ("left", "top", "width", "height", "confidence"):
                schema.add_field(field, t.FLOAT)
            schema.add_field("created", t.DOUBLE)
            schema.add_field("quality", t.VARCHAR, max_length=QUALITY_LENGTH)
            schema.add_field("image_sha256", t.VARCHAR, max_length=64)
            schema.add_field("vector", t.FLOAT_VECTOR, dim=ndim)
            index = self.client.prepare_index_params()
            index.add_index(field_name="vector", index_type=self.index_type, metric_type="IP", params=self.index_params)
            self.client.create_collection(_milvus_name(name), schema=schema, index_params=index,
                                          consistency_level="Strong")
        except BaseException:
            self.catalog.delete(name)
            raise
        return self.get_collection(name)

    @_unavailable
    def get_collection(self, name: str, *, counts: bool = True) -> CollectionInfo:
        return self._info(self._meta(name), counts)

    @_unavailable
    def list_collections(self, after: str | None, limit: int) -> tuple[list[CollectionInfo], str | None]:
        rows = self.catalog.list(after or "", limit + 1)
        items = [self._info(r, True) for r in rows[:limit]]
        return items, (items[-1].name if len(rows) > limit else None)

    @_unavailable
    def delete_collection(self, name: str) -> None:
        self._meta(name)
        self.client.drop_collection(_milvus_name(name))
        self.catalog.delete(name)
        self._optional_fields.pop(name, None)

    # --- faces -----------------------------------------------------------------------------------

    @staticmethod
    def _face(row: dict, vectors: bool = False) -> StoredFace:
        return StoredFace(row["face_id"], row["image_id"], row["external_image_id"] or None,
                          (row["left"], row["top"], row["width"], row["height"]), row["confidence"],
                          row["user_id"] or None, row["created"],
                          np.asarray(row["vector"], np.float32) if vectors else None,
                          json.loads(row["quality"]) if row.get("quality") else None)

    def _fields(self, name: str) -> list[str]:
        """The scalar fields of the collection's faces: collections made before face quality or
        images' digests were kept have no such field."""
        if name not in self._optional_fields:
            described = self.client.describe_collection(_milvus_name(name))
            self._optional_fields[name] = {f["name"] for f in described["fields"]} & {"quality", "image_sha256"}
        return _FACE_FIELDS + sorted(self._optional_fields[name])  # read back whole: set_user rewrites rows

    @_unavailable
    def indexed_image(self, name: str, image_sha256: str, external_image_id: str | None) -> bool:
        """Collections made before images' digests were kept answer False: a resumed index repeats."""
        self._meta(name)
        self._fields(name)
        if "image_sha256" not in self._optional_fields[name] or not re.fullmatch(r"[0-9a-f]{64}", image_sha256):
            return False
        ext = (external_image_id or "").replace("\\", "\\\\").replace('"', '\\"')
        rows = self.client.query(_milvus_name(name), filter=f'image_sha256 == "{image_sha256}" and '
                                 f'external_image_id == "{ext}"', output_fields=["key"], limit=1)
        return bool(rows)

    def add_images(self, name: str, images: Sequence[tuple[Sequence[NewFace], bytes | None, str | None]]
                   ) -> list[list[StoredFace]]:
        """Several images' faces, each image written as add_faces writes it (one insert each)."""
        return [self.add_faces(name, faces, image, sha) for faces, image, sha in images]

    @_unavailable
    def add_faces(self, name: str, faces: Sequence[NewFace], image: bytes | None = None,
                  image_sha256: str | None = None) -> list[StoredFace]:
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
            if "quality" in self._fields(name):
                rows[-1]["quality"] = json.dumps(f.quality, separators=(",", ":")) if f.quality else ""
            if "image_sha256" in self._optional_fields[name]:
                rows[-1]["image_sha256"] = image_sha256 or ""
            stored.append(StoredFace(face_id, image_id, f.external_image_id, tuple(f.box), f.confidence, None, now,
                                     quality=f.quality))
        if rows:
            self.client.insert(_milvus_name(name), rows)
        return stored

    def _rows(self, name: str, filter: str, vectors: bool = False) -> list[dict]:
        self._meta(name)
        fields = self._fields(name) + (["vector"] if vectors else [])
        return self.client.query(_milvus_name(name), filter=filter, output_fields=fields, limit=MAX_ROWS)

    @_unavailable
    def get_faces(self, name: str, face_ids: Sequence[str], *, vectors: bool = False) -> dict[str, StoredFace]:
        ids = list(dict.fromkeys(face_ids))
        if not ids:
            self._meta(name)
            return {}
        rows = self._rows(name, f"face_id in {json.dumps(ids)}", vectors)
        return {r["face_id"]: self._face(r, vectors) for r in rows}

    @_unavailable
    def list_faces(
        self, name: str, after: str | None, limit: int, *, user_id: str | None = None, face_ids: Sequence[str] | None = None
    ) -> tuple[list[StoredFace], str | None]:
        where = f"key > {int(after or -1)}"
        if user_id is not None:
            where += f" and user_id == {quote(user_id)}"
        if face_ids is not None:
            where += f" and face_id in {json.dumps(list(face_ids))}"
        rows = sorted(self._rows(name, where), key=lambda r: r["key"])
        page = rows[:limit]
        return [self._face(r) for r in page], (str(page[-1]["key"]) if len(rows) > limit else None)

    @_unavailable
    def delete_faces(self, name: str, face_ids: Sequence[str]) -> list[str]:
        found = self.get_faces(name, face_ids)
        if found:
            self.client.delete(_milvus_name(name), filter=f"face_id in {json.dumps(list(found))}")
        return [f for f in dict.fromkeys(face_ids) if f in found]

    @_unavailable
    def search(self, name: str, vector: np.ndarray, k: int) -> list[tuple[StoredFace, float]]:
        self._meta(name)
        hits = self.client.search(_milvus_name(name), data=[np.asarray(vector, np.float32).tolist()], limit=k,
                                  output_fields=self._fields(name),
                                  search_params={"metric_type": "IP", "params": self.search_params})[0]
        return [(self._face(h["entity"]), float(h["distance"])) for h in hits]

    @_unavailable
    def face_count(self, name: str) -> int:
        self._meta(name)
        return int(self.client.query(_milvus_name(name), filter="", output_fields=["count(*)"])[0]["count(*)"])

    def stored_image(self, name: str, image_id: str) -> bytes | None:
        self._meta(name)
        return None

    # --- users -----------------------------------------------------------------------------------

    def _user_info(self, name: str, user_id: str) -> UserInfo:
        n = len(self._rows(name, f"user_id == {quote(user_id)}"))
        return UserInfo(user_id, "ACTIVE" if n else "CREATED", n)

    @_unavailable
    def create_user(self, name: str, user_id: str) -> UserInfo:
        self._meta(name)
        self.catalog.add_user(name, user_id, time.time())
        return UserInfo(user_id, "CREATED", 0)

    @_unavailable
    def get_user(self, name: str, user_id: str) -> UserInfo:
        self._meta(name)
        if not self.catalog.has_user(name, user_id):
            raise ResourceNotFoundError(f"user {user_id!r} does not exist in collection {name!r}")
        return self._user_info(name, user_id)

    @_unavailable
    def list_users(self, name: str, after: str | None, limit: int) -> tuple[list[UserInfo], str | None]:
        self._meta(name)
        ids = [u for u in self.catalog.users(name) if u > (after or "")]
        items = [self._user_info(name, u) for u in ids[:limit]]
        return items, (items[-1].user_id if len(ids) > limit else None)

    @_unavailable
    def delete_user(self, name: str, user_id: str) -> None:
        self.get_user(name, user_id)
        self.catalog.remove_user(name, user_id)
        faces = self._rows(name, f"user_id == {quote(user_id)}")
        self.set_user(name, [f["face_id"] for f in faces], None)

    @_unavailable
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
