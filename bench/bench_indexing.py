"""End-to-end indexing throughput on LFW: `faceledger index` (decode, detect, align, quality,
embed, store) against the plain dlib loop of the face_recognition library, same images, same run.

Both sides are timed as whole processes, start-up included (imports, model loading): the
baseline is a script (below, run with the same Python) that splits the images over --workers
processes, each loading dlib's models and running face_recognition's defaults (HOG with one
upsampling pass, shape predictor, compute_face_descriptor), and stores every template in SQLite
as it goes. The two alternate, --repeats times; images/s as min / median / max, with the load.

    .venv/bin/python bench/bench_indexing.py [--images 1000] [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from blocks import load
from faceledger import Settings
from faceledger.evaluation.datasets import LFW

BASELINE = r'''
import sqlite3, sys
from multiprocessing import Pool

def run(job):
    db_path, paths = job
    import dlib, numpy as np
    from PIL import Image
    from face_recognition_models import face_recognition_model_location, pose_predictor_five_point_model_location
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(face_recognition_model_location())
    db = sqlite3.connect(db_path, timeout=60)
    for p in paths:
        img = np.array(Image.open(p).convert("RGB"))
        rows = [(p, np.asarray(net.compute_face_descriptor(img, predictor(img, r), 1), np.float32).tobytes())
                for r in detector(img, 1)]
        with db:
            db.executemany("INSERT INTO templates VALUES (?, ?)", rows)
    return len(paths)

if __name__ == "__main__":
    db_path, workers, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    sqlite3.connect(db_path).execute("CREATE TABLE IF NOT EXISTS templates (path TEXT, vector BLOB)")
    chunks = [(db_path, paths[i::workers]) for i in range(workers)]
    with Pool(workers) as pool:
        print(sum(pool.map(run, chunks)))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    lfw = LFW.locate(Settings.load())
    every = lfw.images()
    paths = [str(p) for p in every[:: max(1, len(every) // args.images)][: args.images]]
    base_rates, our_rates, summary = [], [], ""
    print(f"{load()} at the start")
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "baseline.py")
        with open(script, "w") as fh:
            fh.write(BASELINE)
        for r in range(args.repeats):
            order = ("base", "ours") if r % 2 == 0 else ("ours", "base")
            for side in order:
                if side == "base":
                    db = os.path.join(tmp, f"base{r}.sqlite")
                    t = time.perf_counter()
                    subprocess.run([sys.executable, script, db, str(args.workers), *paths], check=True, capture_output=True)
                    base_rates.append(len(paths) / (time.perf_counter() - t))
                else:
                    env = {**os.environ, "FACELEDGER_STORE": os.path.join(tmp, f"s{r}.sqlite"),
                           "FACELEDGER_LEDGER": os.path.join(tmp, f"ledger{r}.sqlite")}
                    cli = [sys.executable, "-m", "faceledger.interfaces.cli.main"]
                    t = time.perf_counter()
                    subprocess.run([*cli, "collection", "create", "bench"], env=env, check=True, capture_output=True)
                    done = subprocess.run([*cli, "index", "bench", *paths, "--workers", str(args.workers),
                                           "--quality-filter", "NONE"], env=env, capture_output=True, text=True)
                    our_rates.append(len(paths) / (time.perf_counter() - t))
                    if done.returncode not in (0, 3):
                        raise SystemExit(done.stderr)
                    summary = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""

    def mmm(v):
        return f"{min(v):.2f} / {np.median(v):.2f} / {max(v):.2f} images/s"

    ratios = [o / b for o, b in zip(our_rates, base_rates)]
    print(f"baseline: plain dlib (dlib-bin, no BLAS), {args.workers} process(es), storing templates, start-up "
          f"included, {len(paths)} images: {mmm(base_rates)}")
    print(f"faceledger index, {args.workers} worker(s), start-up and storage included: {mmm(our_rates)}")
    print(f"ratio {min(ratios):.2f}x / {np.median(ratios):.2f}x / {max(ratios):.2f}x (min / median / max over "
          f"{args.repeats} alternating repeats) ({summary}); {load()}")


if __name__ == "__main__":
    main()
