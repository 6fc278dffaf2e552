"""Where a worker's CPU goes in `faceledger index`: prepare_index_many over LFW images in batches of 8,
one thread, under cProfile (the top functions by own time) and time.process_time (CPU ms an image).

    .venv/bin/python bench/profile_prepare.py [--images 600] [--top 25] [--detector blazeface] [--no-profile]
    .venv/bin/python bench/profile_prepare.py --ab [--images 400] [--blocks 6]

The engine is built before timing (its start-up is bench_indexing's and worker start-up's concern);
the first batch warms the sessions and is not counted. ``--ab``: detection alone, one image at a
time (``FaceEngine.detect``) against eight at a time (``FaceEngine.detect_many``, what
prepare_index_many runs), alternating in blocks, CPU ms an image.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time

from blocks import load
from faceledger import Settings
from faceledger.evaluation.datasets import LFW
from faceledger.service.operations import prepare_index_many
from faceledger.vision.engine import FaceEngine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--detector", default="")
    ap.add_argument("--landmark-model", default="")
    ap.add_argument("--model", default="")
    ap.add_argument("--ab", action="store_true", help="detect one at a time vs detect_many, alternating")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--no-profile", action="store_true", help="CPU time only (cProfile's overhead left out)")
    args = ap.parse_args()
    s = Settings.load().replace(threads=1)
    if args.detector:
        s = s.replace(detector=args.detector)
    if args.landmark_model:
        s = s.replace(landmark_model=args.landmark_model)
    engine = FaceEngine(s, model=args.model or None)
    every = LFW.locate(s).images()
    paths = [str(p) for p in every[:: max(1, len(every) // (args.images + 8))][: args.images + 8]]
    prepare_index_many(engine, paths[:8], quality_filter="NONE", keep_bytes=False)  # warm-up
    paths = paths[8:]
    if args.ab:
        return ab(engine, paths, args.blocks)
    prof = None if args.no_profile else cProfile.Profile()
    faces = 0
    cpu = time.process_time()
    wall = time.perf_counter()
    if prof:
        prof.enable()
    for i in range(0, len(paths), 8):
        for r in prepare_index_many(engine, paths[i:i + 8], quality_filter="NONE", keep_bytes=False):
            faces += len(r.indexed)
    if prof:
        prof.disable()
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    print(f"{len(paths)} LFW images, {faces} faces, detector {s.detector}, landmark_model {s.landmark_model}, "
          f"model {engine.model}: {1000 * cpu / len(paths):.2f} ms CPU an image "
          f"({1000 * cpu / max(1, faces):.2f} a face), wall {1000 * wall / len(paths):.2f} ms an image"
          f"{' (under cProfile)' if prof else ''}; {load()}")
    if prof:
        st = pstats.Stats(prof)
        st.sort_stats("tottime").print_stats(args.top)


def ab(engine: FaceEngine, paths: list[str], blocks: int) -> None:
    data = [open(p, "rb").read() for p in paths]
    cases = {"one at a time": lambda: [engine.detect(d) for d in data],
             "detect_many, 8": lambda: [engine.detect_many(data[i:i + 8]) for i in range(0, len(data), 8)]}
    cpu: dict[str, list[float]] = {n: [] for n in cases}
    for b in range(blocks):
        for n in list(cases)[b % 2:] + list(cases)[: b % 2]:
            t = time.process_time()
            cases[n]()
            cpu[n].append(1000 * (time.process_time() - t) / len(data))
    for n, v in cpu.items():
        print(f"{n:15} {min(v):6.2f} / {statistics.median(v):6.2f} / {max(v):6.2f} ms CPU an image (min / median / max "
              f"of {blocks} blocks of {len(data)} LFW images)")
    r = [a / b for a, b in zip(*cpu.values())]
    print(f"ratio {min(r):.2f}x / {statistics.median(r):.2f}x / {max(r):.2f}x; {load()}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
