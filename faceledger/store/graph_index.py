"""The approximate index of large collections: an HNSW graph (faiss ``IndexHNSWFlat``, M 32) whose
labels map to the store's keys, with removal that leaves nothing of a removed template behind.

Why a graph: the templates of a million people are not clustered enough for an inverted file.
IVF1024,SQ8 had to scan 22% of its lists (~220,000 codes a query, ~3 ms of CPU) to reach
recall@10 0.99, and 4,096 lists needed 12.5% for 0.988; the graph reaches it with a few thousand
distance computations (bench/bench_search.py, docs/evaluation.md). A single query's graph walk
runs on the calling thread (faiss opens no parallel region for one query), so a search never waits
on a pool's other threads.

Removal: faiss cannot take a node out of an HNSW graph, so a removed template becomes a
tombstone: its vector in the graph's storage is overwritten with zeros, its own neighbour lists
are emptied, every other node's link to it is cut (the lists are compacted, since a walk stops at
the first empty slot), its label maps to no key, and a new entry point is chosen if it was the
entry point. Nothing then reaches it, and a saved graph holds neither its vector nor its links
(which would give its position away: the mean of its neighbours approximates it). Tombstones cost
a little recall; past ``REBUILD_FRACTION`` of the nodes the graph is rebuilt from the live
templates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceledger.models.threads import faiss_module

#: Graph degree (2 M links a node at the bottom layer), the build's and the search's beam widths.
M = 32
EF_CONSTRUCTION = 40
EF_SEARCH = 256
#: Rebuild once this share of the graph's nodes are tombstones.
REBUILD_FRACTION = 0.2


class GraphIndex:
    """Keys -> unit vectors, searched by inner product through an HNSW graph."""

    def __init__(self, ndim: int, index=None, *, keep=None) -> None:
        faiss = faiss_module()
        if index is None:
            inner = faiss.IndexHNSWFlat(ndim, M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = EF_CONSTRUCTION
            index = faiss.IndexIDMap(inner)  # the wrapper keeps a reference to inner
            self._inner = inner
        else:
            self._inner = faiss.downcast_index(index.index)
        self._keep = keep  # the object that owns a read index's memory
        self._inner.hnsw.efSearch = EF_SEARCH
        self.index = index
        self.ndim = ndim

    @property
    def nodes(self) -> int:
        """Graph nodes, tombstones included."""
        return self.index.ntotal

    def dead(self) -> int:
        return int((self._ids() < 0).sum())

    def live_keys(self) -> np.ndarray:
        ids = self._ids()
        return ids[ids >= 0].copy()

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(keys, dtype=np.int64))

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        """The keys of the (about) k nearest live templates, best first; the walk's beam is
        max(EF_SEARCH, k)."""
        _, ids = self.index.search(q.reshape(1, self.ndim), k)
        return ids[0][ids[0] >= 0]

    def remove(self, keys) -> int:
        """Tombstone these keys' nodes (see the module's docstring); returns how many were found."""
        ids = self._ids()
        labels = np.flatnonzero(np.isin(ids, np.asarray(list(keys), dtype=np.int64)))
        if not len(labels):
            return 0
        hnsw = self._inner.hnsw
        faiss = faiss_module()
        n = self.index.ntotal
        vectors = faiss.rev_swig_ptr(faiss.downcast_index(self._inner.storage).get_xb(), n * self.ndim).reshape(n, self.ndim)
        vectors[labels] = 0.0
        nb = faiss.rev_swig_ptr(hnsw.neighbors.data(), hnsw.neighbors.size())
        offsets = faiss.rev_swig_ptr(hnsw.offsets.data(), hnsw.offsets.size()).astype(np.int64)
        for label in labels:  # its own lists
            nb[offsets[label] : offsets[label + 1]] = -1
        gone = np.zeros(n, dtype=bool)
        gone[labels] = True
        hits = np.flatnonzero(gone[np.maximum(nb, 0)] & (nb >= 0))  # links to it
        if len(hits):
            nb[hits] = -1
            cum = faiss.vector_to_array(hnsw.cum_nneighbor_per_level).astype(np.int64)
            node = np.searchsorted(offsets, hits, side="right") - 1
            level = np.searchsorted(cum, hits - offsets[node], side="right") - 1
            for start, end in set(zip((offsets[node] + cum[level]).tolist(), (offsets[node] + cum[level + 1]).tolist())):
                seg = nb[start:end]
                kept = seg[seg >= 0].copy()
                seg[:] = -1
                seg[: len(kept)] = kept
        ids[labels] = -1
        if gone[hnsw.entry_point]:
            levels = faiss.rev_swig_ptr(hnsw.levels.data(), hnsw.levels.size())
            alive = np.where(ids >= 0, levels, 0)
            ep = int(np.argmax(alive))
            if alive[ep] > 0:
                hnsw.entry_point = ep
                hnsw.max_level = int(levels[ep]) - 1
            else:  # nothing alive: an empty graph walks nowhere
                hnsw.entry_point = -1
                hnsw.max_level = -1
        return len(labels)

    def _ids(self) -> np.ndarray:
        """Label -> key (-1: tombstone), a view into the index's own map."""
        faiss = faiss_module()
        id_map = self.index.id_map
        if id_map.size() == 0:
            return np.zeros(0, np.int64)
        return faiss.rev_swig_ptr(id_map.data(), id_map.size())

    def write(self, path: Path) -> None:
        faiss_module().write_index(self.index, str(path))

    @classmethod
    def read(cls, path: Path, ndim: int) -> "GraphIndex":
        faiss = faiss_module()
        raw = faiss.read_index(str(path))
        index = faiss.downcast_index(raw)
        if not isinstance(index, faiss.IndexIDMap) or index.d != ndim or not isinstance(
                faiss.downcast_index(index.index), faiss.IndexHNSWFlat):
            raise ValueError(f"{path} is not a graph index of {ndim}-D templates")
        return cls(ndim, index, keep=raw)
