"""ANN search at 1M face templates: the store's index (faiss inverted file + exact re-scoring), and on
request HNSW graphs (usearch, hnswlib, faiss), against exact numpy brute force (the baseline),
all in one run.

The 1M templates are drawn from a Gaussian with the mean and full covariance of this engine's
real templates (LFW from the template cache, plus FairFace chips), then unit-normalised, so the
spread is that of real faces. Isotropic random unit vectors, the hardest case, are reported too.

    .venv/bin/python bench/bench_index.py [--n 1000000] [--queries 1000] [--ef 128,192]
    .venv/bin/pip install -e '.[bench]'   # for --libraries faceledger,usearch,hnswlib,faiss
"""

from __future__ import annotations

import argparse
import sqlite3
import time

import numpy as np

from faceledger import Settings
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.models.registry import model_id
from faceledger.evaluation.protocols import acquire
from faceledger.evaluation.template_cache import file_digest
from faceledger.store import vector_index


HNSW_M, HNSW_EF_ADD = 16, 128  # graph parameters for the HNSW libraries compared


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def real_templates(settings: Settings, fairface_sample: int) -> np.ndarray:
    """This engine's templates: every LFW one in the cache, plus a FairFace sample (computed once).
    The cache also holds FairFace templates once computed (this sample's, an audit's): only the
    digests of LFW's own files are read from it, so no FairFace template is counted twice."""
    model = str(model_id(settings))
    records = FairFace.locate(settings).records()
    sample = [r.path for r in records[:: max(1, len(records) // fairface_sample)][:fairface_sample]]
    lfw_digests = {file_digest(p) for p in LFW.locate(settings).images()}
    db = sqlite3.connect(settings.cache_dir / "templates.sqlite")
    rows = db.execute("SELECT DISTINCT sha256, vector FROM templates WHERE model=? AND vector IS NOT NULL", (model,)).fetchall()
    lfw = {sha: np.frombuffer(v, np.float32) for sha, v in rows if sha in lfw_digests}
    ff = [a.vector for a in acquire(sample, settings, prealigned=True).values() if a.vector is not None]
    return np.array(list(lfw.values()) + ff, dtype=np.float32)


def face_like(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean, cov = real.mean(axis=0), np.cov(real, rowvar=False)
    x = rng.multivariate_normal(mean, cov, size=n, method="cholesky").astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def isotropic(n: int, d: int, seed: int = 1) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """Ground truth and single-query latencies of numpy brute force (the baseline)."""
    truth, times = [], []
    for q in queries:
        t = time.perf_counter()
        scores = data @ q
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - t)
        truth.append(top)
    return np.array(truth), times


class Faceledger:
    """The store's own index: faiss inverted-file candidates, re-scored exactly. ``ef`` = nprobe."""

    name = "faceledger"

    def build(self, data):
        before = rss_mb()
        self.ix = vector_index.VectorIndex(data.shape[1], exact_below=0)
        self.ix.add(np.arange(len(data)), data, new=True)
        return rss_mb() - before

    def query(self, q, k):
        return self.ix.search(q, k)[0]

    def set_ef(self, ef):
        import faiss

        faiss.extract_index_ivf(self.ix._ivf).nprobe = ef


class Usearch:
    name = "usearch"

    def build(self, data):
        from usearch.index import Index

        self.ix = Index(ndim=data.shape[1], metric="ip", dtype="f32", connectivity=HNSW_M, expansion_add=HNSW_EF_ADD)
        self.ix.add(np.arange(len(data)), data)
        return self.ix.memory_usage / 2**20

    def query(self, q, k):
        return self.ix.search(q, k).keys

    def set_ef(self, ef):
        self.ix.expansion_search = ef


class Hnswlib:
    name = "hnswlib"

    def build(self, data):
        import hnswlib

        before = rss_mb()
        self.ix = hnswlib.Index(space="ip", dim=data.shape[1])
        self.ix.init_index(max_elements=len(data), M=HNSW_M, ef_construction=HNSW_EF_ADD)
        self.ix.add_items(data, np.arange(len(data)))
        self.ix.set_ef(vector_index.EXPANSION_SEARCH)
        return rss_mb() - before

    def query(self, q, k):
        return self.ix.knn_query(q, k)[0][0]

    def set_ef(self, ef):
        self.ix.set_ef(ef)


class Faiss:
    name = "faiss"

    def build(self, data):
        from faceledger.models.threads import faiss_module

        faiss = faiss_module()  # the shipped thread default

        before = rss_mb()
        self.ix = faiss.IndexHNSWFlat(data.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        self.ix.hnsw.efConstruction = HNSW_EF_ADD
        self.ix.add(data)
        self.ix.hnsw.efSearch = vector_index.EXPANSION_SEARCH
        return rss_mb() - before

    def query(self, q, k):
        return self.ix.search(q[None, :], k)[1][0]

    def set_ef(self, ef):
        self.ix.hnsw.efSearch = ef


def run(label: str, data: np.ndarray, queries: np.ndarray, libs, efs: list[int], k: int = 10) -> None:
    truth, base_times = exact_top(data, queries, k)
    base_p50, base_p99 = np.percentile(base_times, [50, 99]) * 1000
    print(f"\n{label}: {len(data):,} x {data.shape[1]}, {len(queries)} queries, k={k}")
    print(f"  numpy brute force (baseline): p50 {base_p50:.2f} ms  p99 {base_p99:.2f} ms  recall 1.000")
    for lib in libs:
        t = time.perf_counter()
        mem = lib.build(data)
        build_s = time.perf_counter() - t
        print(f"  {lib.name:10} build {build_s:6.1f} s  memory {mem:6.0f} MB")
        for ef in efs:
            lib.set_ef(ef)
            times, hits = [], 0
            for q, true in zip(queries, truth):
                t = time.perf_counter()
                found = lib.query(q, k)
                times.append(time.perf_counter() - t)
                hits += len(set(map(int, found)) & set(map(int, true)))
            p50, p99 = np.percentile(times, [50, 99]) * 1000
            print(
                f"  {lib.name:10} {'nprobe' if lib.name == 'faceledger' else 'ef_search':9} {ef:4}  p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
                f"recall@{k} {hits / (k * len(queries)):.4f}  p99 speed-up x{base_p99 / p99:.0f}"
            )
        del lib.ix


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--fairface", type=int, default=2000)
    ap.add_argument("--libraries", default="faceledger", help="faceledger (the store's index), usearch, hnswlib, faiss (HNSW)")
    ap.add_argument("--ef", default=f"{vector_index.NPROBE}", help="nprobe (faceledger) or ef_search (HNSW) values, comma-separated")
    args = ap.parse_args()
    chosen = {"faceledger": Faceledger, "usearch": Usearch, "hnswlib": Hnswlib, "faiss": Faiss}
    libs = [chosen[n]() for n in args.libraries.split(",")]
    settings = Settings.load()
    real = real_templates(settings, args.fairface)
    data = face_like(real, args.n + args.queries)
    evr = np.sort(np.linalg.eigvalsh(np.cov(real, rowvar=False)))[::-1]
    dims90 = int(np.searchsorted(np.cumsum(evr) / evr.sum(), 0.9)) + 1
    print(f"fitted on {len(real):,} real templates; {dims90} of 128 dimensions hold 90% of the variance")
    print(f"faceledger: {vector_index.FACTORY} + exact re-scoring of {vector_index.CANDIDATES}; HNSW libraries: M={HNSW_M} "
          f"ef_construction={HNSW_EF_ADD}; one query at a time")
    efs = [int(x) for x in args.ef.split(",")]
    run("face-like (Gaussian fitted to real templates)", data[: args.n], data[args.n :], libs, efs)
    del data
    iso = isotropic(args.n + args.queries, 128)
    run("isotropic random unit vectors (hardest case, no target)", iso[: args.n], iso[args.n :], libs[:1], efs)


if __name__ == "__main__":
    main()
