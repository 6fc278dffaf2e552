"""Nearest-neighbour search over unit templates: a rebuildable cache of what SQLite holds.

Small collections are searched exactly (a matrix product). From ``EXACT_BELOW`` templates on, an
HNSW graph (faceledger/store/graph_index.py) proposes the candidates and they are re-scored
exactly in float32 from the matrix, so scores are the same as an exact search's. At 1M templates
the graph replaced an IVF1024,SQ8 inverted file (nprobe 224: ~220,000 codes scanned a query for
recall@10 0.994); figures in docs/evaluation.md, from bench/bench_search.py.

Removal is real: a removed template leaves the float32 matrix (its row is overwritten) and the
graph (its node becomes a tombstone with a zeroed vector and no links), so a saved index never
holds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from faceledger.store.graph_index import REBUILD_FRACTION, GraphIndex

#: Below this many templates, search is exact.
EXACT_BELOW = 50_000
#: Templates added to a new graph at a time (bounds the build's extra memory).
BUILD_CHUNK = 100_000

#: ``ivf.tmp``: an IVF index's temporary from versions before the graph.
TEMPORARY_KINDS = ("tmp.npz", "hnsw.tmp", "ivf.tmp", "jtmp")


def temporary(path: Path, kind: str) -> Path:
    """Where ``save`` writes before its atomic rename: ``<stem>.<pid>.<kind>``."""
    return path.with_name(f"{path.stem}.{os.getpid()}.{kind}")


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporary files whose writer is gone (killed mid-save), and unnamed ones from older versions."""
    stale = []
    for f in folder.iterdir() if folder.is_dir() else ():
        if not f.name.endswith(TEMPORARY_KINDS):
            continue
        parts = f.name.split(".")
        pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
        if pid is None or not _alive(pid):
            stale.append(f)
    return stale


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class VectorIndex:
    def __init__(self, ndim: int, *, exact_below: int | None = None) -> None:
        self.ndim = ndim
        self.exact_below = max(EXACT_BELOW if exact_below is None else exact_below, 1)
        self._vecs = np.zeros((0, ndim), np.float32)
        self._keys = np.zeros(0, np.int64)
        self._n = 0
        self._row: dict[int, int] = {}
        self._graph: GraphIndex | None = None

    def __len__(self) -> int:
        return self._n

    def __contains__(self, key: int) -> bool:
        return int(key) in self._row

    def keys(self) -> np.ndarray:
        return self._keys[: self._n].copy()

    def add(self, keys, vectors: np.ndarray, *, new: bool = False) -> None:
        """Add templates; keys already present are skipped (replaying a change log is idempotent)."""
        keys = np.asarray(keys, dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(keys), self.ndim)
        if not new:
            fresh = np.array([int(k) not in self._row for k in keys], dtype=bool)
            keys, vectors = keys[fresh], vectors[fresh]
        if not len(keys):
            return
        self._grow(self._n + len(keys))
        start = self._n
        self._vecs[start : start + len(keys)] = vectors
        self._keys[start : start + len(keys)] = keys
        self._row.update({int(k): start + i for i, k in enumerate(keys)})
        self._n += len(keys)
        if self._graph is not None:
            self._graph.add(keys, vectors)
        elif self._n >= self.exact_below:
            self._build_graph()

    def remove(self, keys) -> None:
        gone = [int(k) for k in keys if int(k) in self._row]
        if not gone:
            return
        for key in gone:
            row = self._row.pop(key)
            last = self._n - 1
            if row != last:  # move the last template into the freed row
                self._vecs[row] = self._vecs[last]
                self._keys[row] = self._keys[last]
                self._row[int(self._keys[row])] = row
            self._vecs[last] = 0.0  # the removed template's bytes do not linger
            self._keys[last] = 0
            self._n -= 1
        if self._graph is not None:
            self._graph.remove(gone)
            if self._graph.nodes - self._n > REBUILD_FRACTION * self._graph.nodes:
                self._build_graph()  # tombstones cost recall: a fresh graph of the live templates

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, cosine scores), best first."""
        if self._n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.asarray(vector, np.float32).reshape(self.ndim)
        k = min(k, self._n)
        if self._graph is None:
            rows = np.arange(self._n)
        else:
            rows = np.array([self._row[int(i)] for i in self._graph.search(q, k) if int(i) in self._row], dtype=np.int64)
            if len(rows) < k:  # the walk found too few (a graph cut up by removals): fall back to exact
                rows = np.arange(self._n)
        scores = self._vecs[rows] @ q
        top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-scores[top])]
        return self._keys[rows[top]].copy(), scores[top]

    def _grow(self, need: int) -> None:
        if need <= len(self._vecs):
            return
        cap = max(need, 2 * len(self._vecs), 1024)
        vecs = np.zeros((cap, self.ndim), np.float32)
        keys = np.zeros(cap, np.int64)
        vecs[: self._n] = self._vecs[: self._n]
        keys[: self._n] = self._keys[: self._n]
        self._vecs, self._keys = vecs, keys

    def _build_graph(self) -> None:
        """A new graph of the live templates (2 cores: ~N s at 1M, docs/evaluation.md)."""
        graph = GraphIndex(self.ndim)
        for i in range(0, self._n, BUILD_CHUNK):
            end = min(i + BUILD_CHUNK, self._n)  # the arrays' capacity runs past the templates
            graph.add(self._keys[i:end], self._vecs[i:end])
        self._graph = graph

    # --- persistence -------------------------------------------------------------------------------

    def save(self, path: Path, meta: dict) -> None:
        """Write the templates (and the graph), then the metadata, each atomically.

        Temporary files are named ``<stem>.<pid>.<kind>``: a crash mid-save leaves one that names
        its dead writer, which :func:`stale_temporaries` finds (it holds every template)."""
        tmp = temporary(path, "tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=self._keys[: self._n], vectors=self._vecs[: self._n])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        path.with_suffix(".ivf").unlink(missing_ok=True)  # an older version's inverted file
        graph_path = path.with_suffix(".hnsw")
        if self._graph is not None:
            tmp_graph = temporary(path, "hnsw.tmp")
            self._graph.write(tmp_graph)
            os.replace(tmp_graph, graph_path)
        else:
            graph_path.unlink(missing_ok=True)
        meta_path = path.with_suffix(".json")
        tmp_meta = temporary(path, "jtmp")
        tmp_meta.write_text(json.dumps({**meta, "count": self._n, "graph": self._graph is not None}))
        os.replace(tmp_meta, meta_path)

    @classmethod
    def load(cls, path: Path, ndim: int) -> tuple["VectorIndex", dict] | None:
        """The saved index and its metadata, or None when missing, partial or inconsistent."""
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(path) as saved:
                keys, vectors = saved["keys"], saved["vectors"]
            graph = GraphIndex.read(path.with_suffix(".hnsw"), ndim) if meta.get("graph") else None
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if vectors.shape != (len(keys), ndim) or len(keys) != meta.get("count"):
            return None
        if graph is not None and not np.array_equal(np.sort(graph.live_keys()), np.sort(keys)):
            return None
        out = cls(ndim)
        out._grow(len(keys))
        out._vecs[: len(keys)] = vectors
        out._keys[: len(keys)] = keys
        out._row = {int(k): i for i, k in enumerate(keys)}
        out._n = len(keys)
        if graph is not None:
            out._graph = graph
        elif out._n >= out.exact_below:  # saved before the graph (an IVF, or below the threshold then)
            out._build_graph()
        return out, meta
