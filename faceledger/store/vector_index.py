"""Nearest-neighbour search over unit templates: a rebuildable cache of what SQLite holds.

Small collections are searched exactly (a matrix product). From ``EXACT_BELOW`` templates on, an
inverted file proposes ``CANDIDATES`` candidates from ``NPROBE`` of its 1,024 lists and they are
re-scored exactly in float32, so scores are an exact search's. The file (faiss
``PCA64,IVF1024,PQ32x4fsr``) codes each template's 64 principal components as 32 4-bit codes
that faiss scans with SIMD lookups ("fast scan"): on a 1M gallery of face-like templates it
reaches recall@10 0.993 with a scan of ~1 ms of CPU, where the 8-bit scalar-quantised file it
replaced (IVF1024,SQ8, nprobe 224) scanned for ~3 ms, and an HNSW graph (faiss, M 32) needed a
beam past 384 (~750 s to build on 2 loaded cores) (bench/bench_search.py, docs/evaluation.md).
Face templates are barely clustered at this scale, so every inverted file scans about a quarter
of the gallery: what pays is making each code cheap to scan, not probing fewer lists.

Unit vectors rank the same by L2 distance as by inner product; the file uses L2 because a PCA
(which centres the data) keeps L2 distances, not inner products.

A single query runs on the calling thread (``parallel_mode`` 0: faiss parallelises over queries),
so it never waits on OpenMP's other threads (issue 25: a 2-thread pool on 2 cores with one busy
made p99 88 ms).

Removal is real: a removed template leaves the float32 matrix (its row is overwritten) and the
coded lists (faiss removes ids from inverted lists; a saved file is byte-for-byte the one saved
had the template been any other vector, tests/test_search_index.py), so a saved index never
holds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from faceledger.models.threads import faiss_module

#: Below this many templates, search is exact.
EXACT_BELOW = 50_000
#: Inverted-file parameters, measured by bench/bench_search.py.
NLIST = 1024
FACTORY = f"PCA64,IVF{NLIST},PQ32x4fsr"
NPROBE = 256
CANDIDATES = 500
TRAIN_SAMPLE = 100_000


TEMPORARY_KINDS = ("tmp.npz", "ivf.tmp", "jtmp")


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
    def __init__(self, ndim: int, *, exact_below: int = EXACT_BELOW) -> None:
        self.ndim = ndim
        self.exact_below = max(exact_below, NLIST * 39)  # faiss wants ~39 training points per list
        self._vecs = np.zeros((0, ndim), np.float32)
        self._keys = np.zeros(0, np.int64)
        self._n = 0
        self._row: dict[int, int] = {}
        self._ivf: faiss.Index | None = None

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
        if self._ivf is not None:
            self._ivf.add_with_ids(vectors, keys)
        elif self._n >= self.exact_below:
            self._train()

    def remove(self, keys) -> None:
        gone = [int(k) for k in keys if int(k) in self._row]
        if not gone:
            return
        if self._ivf is not None:  # the lists they were coded into, while their vectors are here
            lists = _lists_of(self._ivf, self._vecs[[self._row[k] for k in gone]])
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
        if self._ivf is not None:
            self._ivf.remove_ids(np.asarray(gone, dtype=np.int64))
            _scrub(self._ivf, lists)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, cosine scores), best first."""
        if self._n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.asarray(vector, np.float32).reshape(self.ndim)
        k = min(k, self._n)
        if self._ivf is None:
            rows = np.arange(self._n)
        else:
            _, ids = self._ivf.search(q[None, :], max(CANDIDATES, k))
            # keys -> rows without a Python int() per candidate (it cost ~0.8 ms at 500); -1 (none) maps to None
            rows = [r for r in map(self._row.get, ids[0].tolist()) if r is not None]
            rows = np.fromiter(rows, dtype=np.int64, count=len(rows))
            if len(rows) < k:  # too few candidates in the probed lists: fall back to exact
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

    def _train(self) -> None:
        data = self._vecs[: self._n]
        rng = np.random.default_rng(0)
        sample = data[rng.choice(self._n, min(self._n, TRAIN_SAMPLE), replace=False)]
        faiss = faiss_module()
        ivf = faiss.index_factory(self.ndim, FACTORY, faiss.METRIC_L2)
        ivf.train(sample)
        _tune(ivf)
        ivf.add_with_ids(data, self._keys[: self._n])
        self._ivf = ivf

    # --- persistence -------------------------------------------------------------------------------

    def save(self, path: Path, meta: dict) -> None:
        """Write the templates (and the trained IVF), then the metadata, each atomically.

        Temporary files are named ``<stem>.<pid>.<kind>``: a crash mid-save leaves one that names
        its dead writer, which :func:`stale_temporaries` finds (it holds every template)."""
        tmp = temporary(path, "tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=self._keys[: self._n], vectors=self._vecs[: self._n])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        ivf_path = path.with_suffix(".ivf")
        if self._ivf is not None:
            tmp_ivf = temporary(path, "ivf.tmp")
            faiss_module().write_index(self._ivf, str(tmp_ivf))
            os.replace(tmp_ivf, ivf_path)
        else:
            ivf_path.unlink(missing_ok=True)
        meta_path = path.with_suffix(".json")
        tmp_meta = temporary(path, "jtmp")
        tmp_meta.write_text(json.dumps({**meta, "count": self._n, "ivf": self._ivf is not None}))
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
            ivf = faiss_module().read_index(str(path.with_suffix(".ivf"))) if meta.get("ivf") else None
        except (OSError, ValueError, KeyError, RuntimeError):
            return None
        if vectors.shape != (len(keys), ndim) or len(keys) != meta.get("count"):
            return None
        if ivf is not None and ivf.ntotal != len(keys):
            return None
        out = cls(ndim)
        out._grow(len(keys))
        out._vecs[: len(keys)] = vectors
        out._keys[: len(keys)] = keys
        out._row = {int(k): i for i, k in enumerate(keys)}
        out._n = len(keys)
        if ivf is not None and ivf.metric_type != faiss_module().METRIC_L2:
            ivf = None  # an older version's IVF1024,SQ8 (inner product): replaced by a new file
        if ivf is not None:
            _tune(ivf)
            out._ivf = ivf
        elif out._n >= out.exact_below:
            out._train()
        return out, meta


def _lists_of(ivf, vectors: np.ndarray) -> set[int]:
    """The inverted lists these templates are (or were) coded into."""
    faiss = faiss_module()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    for i in range(ivf.chain.size()):
        x = ivf.chain.at(i).apply(x)
    return set(faiss.extract_index_ivf(ivf).quantizer.assign(x, 1).ravel().tolist())


def _scrub(ivf, lists: set[int]) -> None:
    """Zero the unused slots of these lists' last blocks. Fast-scan lists hold codes in blocks of
    32; removing one shortens its list but leaves the removed code's nibbles in the block, where
    a saved file would keep them (tests/test_search_index.py caught it)."""
    faiss = faiss_module()
    invlists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(ivf).invlists)
    per, size_b = invlists.n_per_block, invlists.block_size
    zero = np.zeros(invlists.packer.code_size, np.uint8)
    for lst in lists:
        size = invlists.list_size(lst)
        end = -(-size // per) * per
        if end == size:
            continue
        blocks = faiss.rev_swig_ptr(invlists.get_codes(lst), end // per * size_b).reshape(-1, size_b)
        for slot in range(size, end):
            invlists.packer.pack_1(zero, slot, blocks)


def _tune(ivf) -> None:
    inner = faiss_module().extract_index_ivf(ivf)
    inner.nprobe = NPROBE
    inner.parallel_mode = 0  # over queries: a single query stays on the calling thread
