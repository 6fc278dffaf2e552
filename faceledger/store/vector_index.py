"""An approximate-nearest-neighbour index over unit templates: a rebuildable cache of SQLite.

usearch's HNSW graph (chosen by bench/bench_index.py against hnswlib and faiss: the only one of
the three with real deletion, a single-file save, and exact search in the same object), with
inner-product scores. Below ``exact_below`` vectors an exact scan is both faster and perfect.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from usearch.index import Index

#: HNSW parameters, measured in bench/bench_index.py at 1M face-like templates.
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 96
#: Collections smaller than this are searched exactly.
EXACT_BELOW = 20_000


class VectorIndex:
    def __init__(self, ndim: int, *, exact_below: int = EXACT_BELOW) -> None:
        self.ndim = ndim
        self.exact_below = exact_below
        self._index = self._new(ndim)

    @staticmethod
    def _new(ndim: int) -> Index:
        return Index(
            ndim=ndim, metric="ip", dtype="f32",
            connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH,
        )

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: int) -> bool:
        return bool(self._index.contains(int(key)))

    def add(self, keys: np.ndarray, vectors: np.ndarray, *, new: bool = False) -> None:
        """Add vectors; keys already present are skipped (replaying a change log is idempotent)
        unless ``new`` promises there are none."""
        keys = np.asarray(keys, dtype=np.uint64)
        if not len(keys):
            return
        if not new:
            fresh = np.array([int(k) not in self for k in keys], dtype=bool)
            keys, vectors = keys[fresh], vectors[fresh]
        if len(keys):
            self._index.add(keys, np.ascontiguousarray(vectors, dtype=np.float32))

    def remove(self, keys) -> None:
        for k in keys:
            if int(k) in self:
                self._index.remove(int(k))

    def keys(self) -> np.ndarray:
        return np.asarray(self._index.keys, dtype=np.int64)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, cosine scores), best first."""
        if len(self) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(k, len(self))
        m = self._index.search(np.asarray(vector, np.float32), k, exact=len(self) < self.exact_below)
        return np.asarray(m.keys, np.int64), 1.0 - np.asarray(m.distances, np.float32)

    def save(self, path: Path, meta: dict) -> None:
        """Write the index, then its metadata, each atomically (temp file + rename)."""
        tmp = path.with_suffix(".tmp")
        self._index.save(str(tmp))
        os.replace(tmp, path)
        meta_path = path.with_suffix(".json")
        tmp_meta = meta_path.with_suffix(".jtmp")
        tmp_meta.write_text(json.dumps({**meta, "count": len(self)}))
        os.replace(tmp_meta, meta_path)

    @classmethod
    def load(cls, path: Path, ndim: int) -> tuple["VectorIndex", dict] | None:
        """The saved index and its metadata, or None when missing, partial or inconsistent."""
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            raw = Index.restore(str(path))
        except (OSError, ValueError, RuntimeError):
            return None
        if raw is None or raw.ndim != ndim or len(raw) != meta.get("count"):
            return None
        out = cls(ndim)
        out._index = raw
        raw.expansion_search = EXPANSION_SEARCH
        return out, meta
