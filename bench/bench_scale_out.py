"""Scale-out figures: the Milvus store (Milvus Lite) against the embedded default (SQLite + faiss)
at 1,000,000 templates in one run, and batch indexing of LFW on a local Ray cluster against the
plain local run.

Store part: the same face-like templates (bench_index.py: Gaussian with the covariance of this
engine's real templates) go into each backend through the store interface the service uses:
first ``--per-image`` single-face writes (what IndexFaces does per image), then the rest in
batches of 1,000 (bulk loading), then ``--queries`` single-query searches for the top 10, timed
one by one (p50/p99), with recall@10 against exact numpy search.

    .venv/bin/python bench/bench_scale_out.py store [--n 1000000] [--milvus-index HNSW]
    .venv/bin/python bench/bench_scale_out.py ray [--images 13233] [--workers 2]
    .venv/bin/python bench/bench_scale_out.py ledger [--appends 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from bench_index import face_like, real_templates, rss_mb  # noqa: E402

from faceledger import Settings
from faceledger.store.base import NewFace

BATCH = 1000


def _stores(root: Path, which: list[str], milvus_index: str, milvus_params: dict):
    for name in which:
        if name == "sqlite":
            from faceledger.store import SQLiteStore

            yield name, SQLiteStore(root / "store.sqlite")
        else:
            from faceledger.store.milvus import MilvusStore

            yield f"milvus-lite {milvus_index}", MilvusStore(str(root / "milvus.db"), index_type=milvus_index,
                                                             index_params=milvus_params)


def settle(quiet_cpu_s: float = 0.25, every: float = 5.0, limit: float = 3600.0) -> float:
    """Wait until the process's background threads are idle: Milvus Lite compacts and builds its
    segment indexes after a flush, and until then searches scan rows brute force. Idle: under
    ``quiet_cpu_s`` of CPU used in ``every`` seconds of sleep."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        before = time.process_time()
        time.sleep(every)
        if time.process_time() - before < quiet_cpu_s:
            break
    return time.perf_counter() - start


def bench_store(args) -> None:
    settings = Settings.load()
    real = real_templates(settings, 2000)
    data = face_like(real, args.n, seed=0)
    rng = np.random.default_rng(7)
    owners = rng.choice(args.n, args.queries, replace=False)  # queries: a gallery face plus noise of a new image
    queries = data[owners] + rng.normal(scale=0.03, size=(args.queries, data.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    print(f"{args.n:,} face-like templates, {args.queries} queries; rss {rss_mb():.0f} MB", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for label, store in _stores(Path(tmp), args.backends, args.milvus_index, json.loads(args.milvus_params)):
            store.create_collection("bench", "face-like")
            ids: list[str] = []
            t = time.perf_counter()
            for v in data[:args.per_image]:
                ids += [f.face_id for f in store.add_faces("bench", [NewFace(v, (0.1, 0.1, 0.5, 0.5), 99.0)])]
            single = args.per_image / (time.perf_counter() - t)
            t = time.perf_counter()
            for start in range(args.per_image, args.n, BATCH):
                batch = data[start:start + BATCH]
                ids += [f.face_id for f in store.add_faces("bench", [NewFace(v, (0.1, 0.1, 0.5, 0.5), 99.0) for v in batch])]
                if (start // BATCH) % 100 == 0:
                    print(f"  {label}: {start + len(batch):,} stored", file=sys.stderr, flush=True)
            bulk = (args.n - args.per_image) / (time.perf_counter() - t)
            if hasattr(store, "client"):  # Milvus: seal the growing data so that it is indexed, as a
                from faceledger.store.milvus import _milvus_name

                t = time.perf_counter()
                store.client.flush(_milvus_name("bench"))
                print(f"  {label}: flush {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
                waited = settle()
                print(f"  {label}: background compaction and index builds done after {waited:.0f} s", flush=True)
            position = {face_id: i for i, face_id in enumerate(ids)}
            store.search("bench", queries[0], 10)  # first search builds or loads the index
            times, hits = [], 0
            for q, truth in zip(queries, exact):
                t = time.perf_counter()
                found = store.search("bench", q, 10)
                times.append((time.perf_counter() - t) * 1000)
                hits += len({position[f.face_id] for f, _ in found} & set(truth.tolist()))
            p50, p99 = np.percentile(times, [50, 99])
            results[label] = dict(single=single, bulk=bulk, p50=p50, p99=p99, recall=hits / (10 * args.queries),
                                  rss=rss_mb())
            print(f"{label:>22}: single-face writes {single:8.1f}/s | bulk {bulk:9.0f} templates/s | "
                  f"search p50 {p50:7.2f} ms p99 {p99:7.2f} ms | recall@10 {hits / (10 * args.queries):.4f} | "
                  f"rss {rss_mb():.0f} MB", flush=True)
            store.close()
    base = results.get("sqlite")
    if base:
        for label, r in results.items():
            if label != "sqlite":
                print(f"{label} / sqlite: single writes {r['single'] / base['single']:.2f}x, bulk "
                      f"{r['bulk'] / base['bulk']:.2f}x, p50 {r['p50'] / base['p50']:.2f}x, p99 {r['p99'] / base['p99']:.2f}x")


def bench_ray(args) -> None:
    """`faceledger index` of LFW, plain local run (one process) against --ray on a local cluster."""
    settings = Settings.load()
    from faceledger.evaluation.datasets import LFW

    lfw = LFW.locate(settings)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        for path in sorted(lfw.images())[:args.images]:  # links: the same files, one folder
            (images / f"{path.parent.name}__{path.name}").symlink_to(path)
        env = {**os.environ, "FACELEDGER_POLICY": "open", "RAY_TMPDIR": tmp}
        ray_tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")
        subprocess.run([str(bin_dir / "ray"), "start", "--head", "--port", "6399", "--num-cpus", str(args.workers),
                        "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", ray_tmp], check=True,
                       capture_output=True, env=env)
        runs = {}
        try:
            for mode, extra in (("local", ["--workers", "1"]), ("ray", ["--ray", "127.0.0.1:6399"])):
                run_env = {**env, "FACELEDGER_STORE": f"{tmp}/{mode}.sqlite", "FACELEDGER_LEDGER": f"{tmp}/{mode}-l.sqlite"}
                subprocess.run([str(bin_dir / "faceledger"), "collection", "create", "lfw"], env=run_env, check=True,
                               capture_output=True)
                t = time.perf_counter()
                r = subprocess.run([str(bin_dir / "faceledger"), "index", "lfw", str(images), "--json", *extra],
                                   env=run_env, capture_output=True, text=True)
                seconds = time.perf_counter() - t
                summary = json.loads(r.stdout.strip().splitlines()[-1])["Summary"]
                runs[mode] = (seconds, summary)
                print(f"{mode:>6}: {summary['Images']:,} images, {summary['FacesIndexed']:,} faces in {seconds:.1f} s "
                      f"({summary['Images'] / seconds:.2f} images/s)", flush=True)
        finally:
            subprocess.run([str(bin_dir / "ray"), "stop", "--force"], capture_output=True, env=env)
        (lt, ls), (rt, rs) = runs["local"], runs["ray"]
        print(f"ray ({args.workers} workers) / local (1 process): {lt / rt:.2f}x; same summary: {ls == rs}")


def _append(url: str, n: int, start, done) -> None:
    from faceledger.governance.ledger_pg import PostgresLedger

    ledger = PostgresLedger(url)
    body = {"operation": "SearchFacesByImage", "principal": "bench", "purpose": "missing-person",
            "image_sha256": ["0" * 64], "result": {"candidates": [{"id": "x" * 36, "similarity": 91.2}] * 5}}
    start.wait()
    for _ in range(n):
        ledger.append(body)
    done.put(1)


def bench_ledger(args) -> None:
    """Ledger appends per second: SQLite (one machine) against PostgreSQL with 1..P writers, the
    advisory lock serialising them (a real server started here, fsync on)."""
    import multiprocessing as mp

    from tests.postgres import postgres_server

    from faceledger.governance.ledger import Ledger

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        ledger = Ledger(Path(tmp) / "l.sqlite")
        t = time.perf_counter()
        for i in range(args.appends):
            ledger.append({"operation": "SearchFacesByImage", "i": i})
        base = args.appends / (time.perf_counter() - t)
        print(f"SQLite (synchronous=FULL), 1 writer: {base:,.0f} appends/s", flush=True)
    with postgres_server(fsync=True) as url:
        ctx = mp.get_context("spawn")
        for writers in (1, 2, 4, 8):
            start, done = ctx.Event(), ctx.Queue()
            procs = [ctx.Process(target=_append, args=(url, args.appends // writers, start, done)) for _ in range(writers)]
            for p in procs:
                p.start()
            time.sleep(3)  # connected and waiting
            t = time.perf_counter()
            start.set()
            for _ in procs:
                done.get()
            rate = (args.appends // writers * writers) / (time.perf_counter() - t)
            for p in procs:
                p.join()
            print(f"PostgreSQL, {writers} writer process(es): {rate:,.0f} appends/s ({rate / base:.2f}x SQLite)", flush=True)
        from faceledger.governance.ledger_pg import PostgresLedger

        count, problems = PostgresLedger(url).verify()
        print(f"verify after the concurrent runs: {count:,} entries, {len(problems)} problems")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("store")
    s.add_argument("--n", type=int, default=1_000_000)
    s.add_argument("--queries", type=int, default=1000)
    s.add_argument("--per-image", type=int, default=2000)
    s.add_argument("--backends", default="sqlite,milvus")
    s.add_argument("--milvus-index", default="HNSW")
    s.add_argument("--milvus-params", default='{"M": 16, "efConstruction": 128}')
    s.add_argument("--tmp", default=None)
    r = sub.add_parser("ray")
    r.add_argument("--images", type=int, default=13233)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--tmp", default=None)
    g = sub.add_parser("ledger")
    g.add_argument("--appends", type=int, default=4000)
    g.add_argument("--tmp", default=None)
    args = parser.parse_args()
    if args.what == "store":
        args.backends = args.backends.split(",")
        bench_store(args)
    elif args.what == "ledger":
        bench_ledger(args)
    else:
        bench_ray(args)


if __name__ == "__main__":
    main()
