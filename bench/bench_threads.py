"""The `threads` setting: 1 thread against 2 (or --threads A B) for each pool it sizes, alternating in
blocks in one process: the face network on ONNX Runtime (1,000-ish LFW chips, batch 32), the MMOD
network on ONNX Runtime (LFW images), and faiss's IVF search over N unit templates (recall@10 against
exact search). --busy keeps one core busy with a second process, as a shared host or a second
worker does.

    .venv/bin/python bench/bench_threads.py [--chips 256] [--images 40] [--templates 1000000] [--busy]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from blocks import alternate, busy_core, load, mmm, ratio_text
from samples import first_chips
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.dlib.entry import onnx_embedder
from faceledger.models.threads import faiss_module
from faceledger.store.vector_index import VectorIndex


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chips", type=int, default=256)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--templates", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs=2, default=(1, 2))
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--busy", action="store_true")
    args = ap.parse_args()
    a, b = args.threads
    settings = Settings.load()
    lfw = LFW.locate(settings)
    engine = FaceEngine(settings.replace(threads=1))
    paths = [p for ps in lfw.people().values() for p in ps][: max(args.chips, args.images) * 2]
    chips = first_chips(engine, paths, args.chips)
    images = [engine.load(p).pixels for p in paths[: args.images]]
    stop_busy = busy_core(args.busy)
    try:
        print(f"{load()}; {'one core kept busy by a second process' if args.busy else 'no extra load'}")
        nets = {t: onnx_embedder(flip=False, cache_dir=settings.cache_dir, threads=t) for t in (a, b)}

        def net(t):
            return lambda: [nets[t].raw(chips[i:i + 32]) for i in range(0, len(chips) - 31, 32)]

        per = len(chips) // 32 * 32
        times = alternate({f"{t} thread(s)": net(t) for t in (a, b)}, blocks=args.blocks, per_block=2)
        for name, v in times.items():
            print(f"face network, batch 32, {name}: {mmm([x / per for x in v])} per face")
        print(f"  {a} vs {b} threads: {ratio_text(times[f'{b} thread(s)'], times[f'{a} thread(s)'], 2)} faster with {a}")

        from faceledger.vision.mmod import OnnxMmodDetector

        dets = {t: OnnxMmodDetector(settings.cache_dir, t) for t in (a, b)}
        times = alternate({f"{t} thread(s)": (lambda d: lambda: [d.propose(x) for x in images])(dets[t]) for t in (a, b)},
                          blocks=args.blocks, per_block=1)
        for name, v in times.items():
            print(f"MMOD on ONNX Runtime, {name}: {mmm([x / len(images) for x in v])} per image")
        print(f"  {a} vs {b} threads: {ratio_text(times[f'{b} thread(s)'], times[f'{a} thread(s)'], 1)} faster with {a}")

        rng = np.random.default_rng(0)
        # face-like: clustered unit vectors (identities with several templates each)
        centres = rng.standard_normal((args.templates // 4, 128)).astype(np.float32)
        data = np.repeat(centres, 4, axis=0) + 0.35 * rng.standard_normal((args.templates // 4 * 4, 128)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        t0 = time.perf_counter()
        ix = VectorIndex(128)
        ix.add(np.arange(len(data)), data)
        print(f"{len(data):,} templates indexed in {time.perf_counter() - t0:.0f} s")
        queries = data[rng.choice(len(data), args.queries, replace=False)] + 0.2 * rng.standard_normal((args.queries, 128)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth = [set(np.argsort(-(data @ q))[:10].tolist()) for q in queries]
        faiss = faiss_module()
        lat: dict[int, list[float]] = {a: [], b: []}
        hits = {a: 0, b: 0}
        for block in range(args.blocks):
            for t in ((a, b) if block % 2 == 0 else (b, a)):
                faiss.omp_set_num_threads(t)
                for q, true in zip(queries, truth):
                    s = time.perf_counter()
                    keys, _ = ix.search(q, 10)
                    lat[t].append(time.perf_counter() - s)
                    hits[t] += len(true & set(keys.tolist()))
        for t in (a, b):
            p50, p99 = np.percentile(lat[t], [50, 99]) * 1000
            print(f"faiss IVF search, {t} thread(s): p50 {p50:.2f} ms, p99 {p99:.2f} ms, recall@10 (synthetic clustered templates) "
                  f"{hits[t] / (10 * len(queries) * args.blocks):.3f}")
        print(load())
    finally:
        stop_busy()


if __name__ == "__main__":
    main()
