"""The embedded store: SQLite (WAL) is the source of truth, a vector index per collection a cache.

Every write goes to SQLite in one transaction together with a row in ``changes``, the log that
lets each process bring its in-memory index up to date before a search: so several processes
may write the same collection, and each search sees every write committed before it. Index
files are saved beside the database with the log position they include; on open an index is
loaded, the log replayed from that position, and the result checked against SQLite's count,
rebuilding from SQLite when they disagree (a crash between writing the two, a lost file).

Deletion is real: ``secure_delete`` overwrites freed pages, the WAL is checkpointed and truncated
after deletions (retried in the background while another process's read snapshot blocks it), the
collection's index files are dropped with any temporary a killed save left (and on open, every
temporary whose writer is dead and every file of a collection that no longer exists) (the next save writes them without the
deleted templates), and deleted keys leave every process's in-memory index before its next search.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from faceledger.errors import ConflictError, ResourceAlreadyExistsError, ResourceNotFoundError, StoreCorruptionError
from faceledger.store.base import CollectionInfo, NewFace, StoredFace, UserInfo
from faceledger.store.vector_index import VectorIndex, stale_temporaries

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE NOT NULL,
    arn TEXT NOT NULL,
    model TEXT NOT NULL,
    ndim INTEGER NOT NULL,
    created REAL NOT NULL,
    store_images INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS faces (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    face_id TEXT UNIQUE NOT NULL,
    collection INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    image_id TEXT NOT NULL,
    external_image_id TEXT,
    box_left REAL NOT NULL, box_top REAL NOT NULL, box_width REAL NOT NULL, box_height REAL NOT NULL,
    confidence REAL NOT NULL,
    user_id TEXT,
    created REAL NOT NULL,
    vector BLOB NOT NULL,
    quality TEXT,
    image_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS faces_by_collection ON faces(collection, key);
CREATE INDEX IF NOT EXISTS faces_by_user ON faces(collection, user_id);
CREATE TABLE IF NOT EXISTS users (
    collection INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (collection, user_id)
);
CREATE TABLE IF NOT EXISTS images (
    image_id TEXT PRIMARY KEY,
    collection INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection INTEGER NOT NULL,
    key INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'del'))
);
CREATE INDEX IF NOT EXISTS changes_by_collection ON changes(collection, seq);
"""

_FACE_COLUMNS = ("face_id, image_id, external_image_id, box_left, box_top, box_width, box_height, confidence, user_id, "
                 "created, quality")

#: How long a deletion waits for readers before its WAL truncation is left to a background retry.
CHECKPOINT_WAIT_MS = 2_000
#: How long the background retry keeps trying (a reader holding a snapshot longer is a bug).
CHECKPOINT_RETRY_SECONDS = 600
BUSY_TIMEOUT_MS = 60_000
#: Save an index file after this many unsaved changes (and always on close).
SAVE_EVERY = 5_000


def _json(quality: dict | None) -> str | None:
    return None if quality is None else json.dumps(quality, separators=(",", ":"))


def _face(row, vectors: bool) -> StoredFace:
    """A face from a row of _FACE_COLUMNS (then the vector when asked)."""
    face_id, image_id, ext, l, t, w, h, conf, user, created, quality = row[:11]
    vec = np.frombuffer(row[11], dtype=np.float32).copy() if vectors else None
    return StoredFace(face_id, image_id, ext, (l, t, w, h), conf, user, created, vec,
                      json.loads(quality) if quality else None)


class _Loaded:
    """One collection's index in this process and the log position it reflects."""

    def __init__(self, index: VectorIndex, seq: int) -> None:
        self.index = index
        self.seq = seq
        self.unsaved = 0


class SQLiteStore:
    def __init__(self, path: Path | str, *, region: str = "local", account: str = "000000000000") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.index_dir = self.path.parent / (self.path.stem + ".index")
        self.index_dir.mkdir(exist_ok=True)
        self._arn_prefix = f"arn:aws:rekognition:{region}:{account}:collection/"
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a returned write survives power loss too
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(faces)")}
            if "quality" not in columns:
                self._db.execute("ALTER TABLE faces ADD COLUMN quality TEXT")  # stores made before quality was kept
            if "image_sha256" not in columns:
                self._db.execute("ALTER TABLE faces ADD COLUMN image_sha256 TEXT")  # before images' digests were kept
            self._db.execute("CREATE INDEX IF NOT EXISTS faces_by_image ON faces(collection, image_sha256)")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreCorruptionError(
                f"{self.path} is not a usable faceledger store ({exc}); point FACELEDGER_STORE at another "
                "file, or restore this one from a backup"
            ) from exc
        self._loaded: dict[int, _Loaded] = {}
        self._closed = False
        self._checkpoint_pending = threading.Event()
        self._remove_leftovers()

    # --- plumbing ---------------------------------------------------------------------------------

    def _tx(self):
        return _Transaction(self._db)

    def _collection(self, name: str) -> tuple[int, str, int]:
        row = self._db.execute("SELECT id, model, ndim FROM collections WHERE name=?", (name,)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"collection {name!r} does not exist")
        return row

    def _info(self, row, counts: bool = True) -> CollectionInfo:
        cid, name, arn, model, created, store_images = row
        faces = users = None
        if counts:
            faces = self._db.execute("SELECT count(*) FROM faces WHERE collection=?", (cid,)).fetchone()[0]
            users = self._db.execute("SELECT count(*) FROM users WHERE collection=?", (cid,)).fetchone()[0]
        return CollectionInfo(name, arn, model, created, faces, users, bool(store_images))

    # --- collections -----------------------------------------------------------------------------

    def create_collection(self, name: str, model: str, *, store_images: bool = False, ndim: int = 128) -> CollectionInfo:
        with self._lock, self._tx():
            try:
                self._db.execute(
                    "INSERT INTO collections (name, arn, model, ndim, created, store_images) VALUES (?, ?, ?, ?, ?, ?)",
                    (name, self._arn_prefix + name, model, ndim, time.time(), int(store_images)),
                )
            except sqlite3.IntegrityError:
                raise ResourceAlreadyExistsError(f"collection {name!r} already exists") from None
        return self.get_collection(name)

    def get_collection(self, name: str, *, counts: bool = True) -> CollectionInfo:
        """``counts=False`` skips the face and user counts, which scan the collection: for hot paths."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, arn, model, created, store_images FROM collections WHERE name=?", (name,)
            ).fetchone()
            if row is None:
                raise ResourceNotFoundError(f"collection {name!r} does not exist")
            return self._info(row, counts)

    def list_collections(self, after: str | None, limit: int) -> tuple[list[CollectionInfo], str | None]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, name, arn, model, created, store_images FROM collections WHERE name > ? ORDER BY name LIMIT ?",
                (after or "", limit + 1),
            ).fetchall()
            items = [self._info(r) for r in rows[:limit]]
        return items, (items[-1].name if len(rows) > limit else None)

    def delete_collection(self, name: str) -> None:
        with self._lock:
            cid = self._collection(name)[0]
            with self._tx():
                self._db.execute("DELETE FROM changes WHERE collection=?", (cid,))
                self._db.execute("DELETE FROM collections WHERE id=?", (cid,))
            self._loaded.pop(cid, None)
            self._drop_index_files(cid)
            self._checkpoint()

    # --- faces -----------------------------------------------------------------------------------

    def add_faces(self, name: str, faces: Sequence[NewFace], image: bytes | None = None,
                  image_sha256: str | None = None) -> list[StoredFace]:
        return self.add_images(name, [(faces, image, image_sha256)])[0]

    def add_images(self, name: str, images: Sequence[tuple[Sequence[NewFace], bytes | None, str | None]]
                   ) -> list[list[StoredFace]]:
        """Several images' faces (each ``(faces, image bytes, image SHA-256)`` as add_faces takes
        them) in one transaction: all or none, one commit and one sync for the lot (bulk indexing)."""
        with self._lock:
            cid, _, ndim = self._collection(name)
            now = time.time()
            out = []
            with self._tx():
                store_images = self._db.execute("SELECT store_images FROM collections WHERE id=?", (cid,)).fetchone()[0]
                for faces, image, image_sha256 in images:
                    image_id = str(uuid.uuid4())
                    stored = []
                    if image is not None and store_images:
                        self._db.execute("INSERT INTO images VALUES (?, ?, ?)", (image_id, cid, image))
                    for f in faces:
                        vector = np.asarray(f.vector, dtype=np.float32)
                        if vector.shape != (ndim,):
                            raise ValueError(f"template has shape {vector.shape}, the collection holds ({ndim},)")
                        face_id = str(uuid.uuid4())
                        cur = self._db.execute(
                            f"INSERT INTO faces (collection, {_FACE_COLUMNS}, vector, image_sha256) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                            (cid, face_id, image_id, f.external_image_id, *f.box, f.confidence, now, _json(f.quality),
                             vector.tobytes(), image_sha256),
                        )
                        self._db.execute("INSERT INTO changes (collection, key, op) VALUES (?, ?, 'add')", (cid, cur.lastrowid))
                        stored.append(StoredFace(face_id, image_id, f.external_image_id, tuple(f.box), f.confidence, None, now,
                                                 quality=f.quality))
                    out.append(stored)
            return out

    def indexed_image(self, name: str, image_sha256: str, external_image_id: str | None) -> bool:
        with self._lock:
            cid, _, _ = self._collection(name)
            row = self._db.execute("SELECT 1 FROM faces WHERE collection=? AND image_sha256=? AND external_image_id IS ? "
                                   "LIMIT 1", (cid, image_sha256, external_image_id)).fetchone()
            return row is not None

    def _faces(self, where: str, args: tuple, vectors: bool = False) -> list[StoredFace]:
        cols = _FACE_COLUMNS + (", vector" if vectors else "") + ", key"
        out = []
        for row in self._db.execute(f"SELECT {cols} FROM faces WHERE {where}", args):
            out.append(_face(row, vectors))
        return out

    def get_faces(self, name: str, face_ids: Sequence[str], *, vectors: bool = False) -> dict[str, StoredFace]:
        with self._lock:
            cid = self._collection(name)[0]
            out: dict[str, StoredFace] = {}
            ids = list(dict.fromkeys(face_ids))
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for f in self._faces(f"collection=? AND face_id IN ({marks})", (cid, *chunk), vectors):
                    out[f.face_id] = f
            return out

    def list_faces(
        self, name: str, after: str | None, limit: int, *, user_id: str | None = None, face_ids: Sequence[str] | None = None
    ) -> tuple[list[StoredFace], str | None]:
        with self._lock:
            cid = self._collection(name)[0]
            where, args = "collection=? AND key>?", [cid, int(after or 0)]
            if user_id is not None:
                where += " AND user_id=?"
                args.append(user_id)
            if face_ids is not None:
                where += f" AND face_id IN ({','.join('?' * len(face_ids))})"
                args.extend(face_ids)
            rows = self._db.execute(
                f"SELECT key FROM faces WHERE {where} ORDER BY key LIMIT ?", (*args, limit + 1)
            ).fetchall()
            keys = [r[0] for r in rows]
            page = keys[:limit]
            faces = [face for _, face in self._by_keys(page)]
            return faces, (str(page[-1]) if len(keys) > limit else None)

    def _by_keys(self, keys: Sequence[int], vectors: bool = False) -> list[tuple[int, StoredFace]]:
        """Faces in the order of ``keys``, skipping keys no longer in SQLite."""
        if not len(keys):
            return []
        found: dict[int, StoredFace] = {}
        cols = _FACE_COLUMNS + (", vector" if vectors else "") + ", key"
        for i in range(0, len(keys), 500):
            chunk = [int(k) for k in keys[i : i + 500]]
            for row in self._db.execute(f"SELECT {cols} FROM faces WHERE key IN ({','.join('?' * len(chunk))})", chunk):
                found[row[-1]] = _face(row, vectors)
        return [(int(k), found[int(k)]) for k in keys if int(k) in found]

    def delete_faces(self, name: str, face_ids: Sequence[str]) -> list[str]:
        with self._lock:
            cid = self._collection(name)[0]
            deleted = []
            with self._tx():
                for face_id in dict.fromkeys(face_ids):
                    row = self._db.execute("SELECT key, image_id FROM faces WHERE collection=? AND face_id=?", (cid, face_id)).fetchone()
                    if row is None:
                        continue
                    self._db.execute("DELETE FROM faces WHERE key=?", (row[0],))
                    self._db.execute("INSERT INTO changes (collection, key, op) VALUES (?, ?, 'del')", (cid, row[0]))
                    left = self._db.execute("SELECT 1 FROM faces WHERE image_id=? LIMIT 1", (row[1],)).fetchone()
                    if left is None:  # the stored image goes with its last face
                        self._db.execute("DELETE FROM images WHERE image_id=?", (row[1],))
                    deleted.append(face_id)
            if deleted:
                self._checkpoint()
                self._drop_index_files(cid)
            return deleted

    def stored_image(self, name: str, image_id: str) -> bytes | None:
        with self._lock:
            cid = self._collection(name)[0]
            row = self._db.execute("SELECT data FROM images WHERE collection=? AND image_id=?", (cid, image_id)).fetchone()
            return None if row is None else bytes(row[0])

    # --- search ----------------------------------------------------------------------------------

    def face_count(self, name: str) -> int:
        """Faces in the collection, from the synced index (no scan): a search's gallery size."""
        with self._lock:
            cid, _, ndim = self._collection(name)
            return len(self._sync(cid, ndim).index)

    def search(self, name: str, vector: np.ndarray, k: int) -> list[tuple[StoredFace, float]]:
        """The k nearest faces with their cosine scores, best first."""
        with self._lock:
            cid, _, ndim = self._collection(name)
            keys, scores = self._sync(cid, ndim).index.search(vector, k)
            score_of = {int(key): float(score) for key, score in zip(keys, scores)}
            return [(face, score_of[key]) for key, face in self._by_keys(keys)]

    def _sync(self, cid: int, ndim: int) -> _Loaded:
        """Bring this process's index for ``cid`` up to the last committed change."""
        loaded = self._loaded.get(cid)
        if loaded is None:
            loaded = self._open_index(cid, ndim)
            self._loaded[cid] = loaded
        rows = self._db.execute(
            "SELECT seq, key, op FROM changes WHERE collection=? AND seq>? ORDER BY seq", (cid, loaded.seq)
        ).fetchall()
        if rows:
            self._replay(loaded, rows)
            if loaded.unsaved >= SAVE_EVERY:
                self._save(cid, loaded)
        return loaded

    def _replay(self, loaded: _Loaded, rows) -> None:
        adds = [key for _, key, op in rows if op == "add"]
        dels = {key for _, key, op in rows if op == "del"}
        vectors = self._vectors([k for k in adds if k not in dels])
        if vectors:
            keys = np.array(list(vectors), dtype=np.int64)
            loaded.index.add(keys, np.stack(list(vectors.values())))
        loaded.index.remove(dels)
        loaded.seq = rows[-1][0]
        loaded.unsaved += len(rows)

    def _vectors(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            for key, blob in self._db.execute(f"SELECT key, vector FROM faces WHERE key IN ({','.join('?' * len(chunk))})", chunk):
                out[key] = np.frombuffer(blob, dtype=np.float32)
        return out

    def _open_index(self, cid: int, ndim: int) -> _Loaded:
        saved = VectorIndex.load(self._index_path(cid), ndim)
        if saved is not None:
            index, meta = saved
            loaded = _Loaded(index, int(meta.get("seq", 0)))
            rows = self._db.execute(
                "SELECT seq, key, op FROM changes WHERE collection=? AND seq>? ORDER BY seq", (cid, loaded.seq)
            ).fetchall()
            if rows:
                self._replay(loaded, rows)
            count = self._db.execute("SELECT count(*) FROM faces WHERE collection=?", (cid,)).fetchone()[0]
            if len(loaded.index) == count:
                return loaded
        return self._rebuild(cid, ndim)

    def _build(self, cid: int, ndim: int) -> _Loaded:
        """A fresh index from SQLite, the source of truth, read in one snapshot."""
        self._db.execute("BEGIN")  # WAL snapshot: the faces read match the log position read
        try:
            seq = self._db.execute("SELECT coalesce(max(seq), 0) FROM changes WHERE collection=?", (cid,)).fetchone()[0]
            index = VectorIndex(ndim)
            cursor = self._db.execute("SELECT key, vector FROM faces WHERE collection=? ORDER BY key", (cid,))
            while batch := cursor.fetchmany(10_000):
                keys = np.array([k for k, _ in batch], dtype=np.int64)
                vecs = np.stack([np.frombuffer(b, dtype=np.float32) for _, b in batch])
                index.add(keys, vecs, new=True)
        finally:
            self._db.execute("COMMIT")
        return _Loaded(index, seq)

    def _rebuild(self, cid: int, ndim: int) -> _Loaded:
        loaded = self._build(cid, ndim)
        self._save(cid, loaded)
        return loaded

    def _save(self, cid: int, loaded: _Loaded) -> None:
        loaded.index.save(self._index_path(cid), {"seq": loaded.seq})
        loaded.unsaved = 0

    def _index_path(self, cid: int) -> Path:
        return self.index_dir / f"{cid}.npz"

    def _drop_index_files(self, cid: int) -> None:
        """Deleted templates must not outlive their deletion in an index file on disk: the files go
        at once (temporaries too: a save killed midway leaves one holding every template), and
        the next save writes them without the deleted templates."""
        for f in self.index_dir.glob(f"{cid}.*"):
            f.unlink(missing_ok=True)

    def _remove_leftovers(self) -> None:
        """On open: temporaries of saves whose process died, and the files of collections that no
        longer exist (deleted while another process was saving, or by a version that left them)."""
        live = {str(r[0]) for r in self._db.execute("SELECT id FROM collections")}
        for f in stale_temporaries(self.index_dir):
            f.unlink(missing_ok=True)
        for f in self.index_dir.iterdir():
            if f.name.split(".")[0] not in live and f.name.endswith((".npz", ".ivf", ".json")):
                f.unlink(missing_ok=True)

    def verify(self, name: str, *, repair: bool = True) -> dict:
        """Compare the index with SQLite key by key; rebuild it when they differ."""
        with self._lock:
            cid, _, ndim = self._collection(name)
            loaded = self._sync(cid, ndim)
            truth = {r[0] for r in self._db.execute("SELECT key FROM faces WHERE collection=?", (cid,))}
            held = set(int(k) for k in loaded.index.keys())
            report = {"faces": len(truth), "indexed": len(held), "missing": len(truth - held), "orphans": len(held - truth)}
            if (truth != held) and repair:
                self._loaded[cid] = self._rebuild(cid, ndim)
                report["rebuilt"] = True
            return report

    # --- users -----------------------------------------------------------------------------------

    def _user_info(self, cid: int, user_id: str) -> UserInfo:
        n = self._db.execute("SELECT count(*) FROM faces WHERE collection=? AND user_id=?", (cid, user_id)).fetchone()[0]
        return UserInfo(user_id, "ACTIVE" if n else "CREATED", n)

    def create_user(self, name: str, user_id: str) -> UserInfo:
        with self._lock:
            cid = self._collection(name)[0]
            with self._tx():
                try:
                    self._db.execute("INSERT INTO users VALUES (?, ?, ?)", (cid, user_id, time.time()))
                except sqlite3.IntegrityError:
                    raise ConflictError(f"user {user_id!r} already exists in collection {name!r}") from None
            return UserInfo(user_id, "CREATED", 0)

    def get_user(self, name: str, user_id: str) -> UserInfo:
        with self._lock:
            cid = self._collection(name)[0]
            if self._db.execute("SELECT 1 FROM users WHERE collection=? AND user_id=?", (cid, user_id)).fetchone() is None:
                raise ResourceNotFoundError(f"user {user_id!r} does not exist in collection {name!r}")
            return self._user_info(cid, user_id)

    def list_users(self, name: str, after: str | None, limit: int) -> tuple[list[UserInfo], str | None]:
        with self._lock:
            cid = self._collection(name)[0]
            rows = self._db.execute(
                "SELECT user_id FROM users WHERE collection=? AND user_id > ? ORDER BY user_id LIMIT ?",
                (cid, after or "", limit + 1),
            ).fetchall()
            items = [self._user_info(cid, r[0]) for r in rows[:limit]]
            return items, (items[-1].user_id if len(rows) > limit else None)

    def delete_user(self, name: str, user_id: str) -> None:
        with self._lock:
            cid = self._collection(name)[0]
            with self._tx():
                cur = self._db.execute("DELETE FROM users WHERE collection=? AND user_id=?", (cid, user_id))
                if cur.rowcount == 0:
                    raise ResourceNotFoundError(f"user {user_id!r} does not exist in collection {name!r}")
                self._db.execute("UPDATE faces SET user_id=NULL WHERE collection=? AND user_id=?", (cid, user_id))

    def set_user(self, name: str, face_ids: Sequence[str], user_id: str | None) -> None:
        with self._lock:
            cid = self._collection(name)[0]
            with self._tx():
                self._db.executemany(
                    "UPDATE faces SET user_id=? WHERE collection=? AND face_id=?", [(user_id, cid, f) for f in face_ids]
                )

    # --- lifecycle -------------------------------------------------------------------------------

    def _checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it, so deleted templates do not linger in
        the log file. A reader's snapshot (another process mid-search) blocks the truncation: then
        a background thread retries until the readers are gone, rather than leaving the deleted
        template in the WAL until some later delete happens to checkpoint."""
        if not self._try_checkpoint(self._db, CHECKPOINT_WAIT_MS):
            self._checkpoint_later()

    @staticmethod
    def _try_checkpoint(db: sqlite3.Connection, wait_ms: int) -> bool:
        db.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return busy == 0
        except sqlite3.OperationalError:
            return False
        finally:
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _checkpoint_later(self) -> None:
        if self._checkpoint_pending.is_set():
            return
        self._checkpoint_pending.set()

        def retry() -> None:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            try:
                deadline = time.monotonic() + CHECKPOINT_RETRY_SECONDS
                while time.monotonic() < deadline and not self._try_checkpoint(db, 200):
                    time.sleep(0.1)
            finally:
                db.close()
                self._checkpoint_pending.clear()

        threading.Thread(target=retry, name="faceledger-checkpoint", daemon=True).start()

    def close(self) -> None:
        """Save what the index files lack, then close. Closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cid, loaded in list(self._loaded.items()):
                ndim = self._db.execute("SELECT ndim FROM collections WHERE id=?", (cid,)).fetchone()
                if ndim is None:
                    continue
                self._sync(cid, ndim[0])  # never write a file that misses another process's deletions
                if loaded.unsaved:
                    self._save(cid, loaded)
            self._loaded.clear()
            self._db.close()

    def __enter__(self) -> "SQLiteStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, so concurrent writers queue on SQLite's lock instead of failing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
