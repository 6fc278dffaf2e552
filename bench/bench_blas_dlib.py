"""The face network and the MMOD detector against the best dlib a user can install: dlib built with
BLAS (Debian's libdlib-dev 19.24 + OpenBLAS, compiled here by bench/blas_dlib's Makefile), and
dlib-bin (the PyPI wheel faceledger depends on, built without BLAS), on the same chips and images,
single-threaded on every side (OPENBLAS_NUM_THREADS=1; faceledger threads=1; dlib-bin has no
threads). Blocks alternate in one run: the C++ program is driven over stdin, each block timed by
the side that runs it. Setup, once: apt-get install libdlib-dev libopenblas-dev (make is run here).

    .venv/bin/python bench/bench_blas_dlib.py [--chips 1000] [--images 100] [--blocks 5] [--dlib-bin-chips 64]
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import dlib
import numpy as np

from blocks import load
from samples import first_chips
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.models.dlib.entry import onnx_embedder
from faceledger.models.files import MMOD, RESNET, model_path
from faceledger.vision.mmod import OnnxMmodDetector

HERE = Path(__file__).parent / "blas_dlib"


def build() -> Path:
    subprocess.run(["make", "-s", "-C", str(HERE)], check=True)
    return HERE / "build" / "blas_dlib"


def write_raw(path: Path, arrays: list[np.ndarray], sized: bool) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<i", len(arrays)))
        for a in arrays:
            if sized:
                fh.write(struct.pack("<ii", a.shape[0], a.shape[1]))
            fh.write(np.ascontiguousarray(a, np.uint8).tobytes())


def mmm(v: list[float], unit: str) -> str:
    return f"{min(v):.2f} / {np.median(v):.2f} / {max(v):.2f} {unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chips", type=int, default=1000)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--dlib-bin-chips", type=int, default=64, help="dlib-bin is ~10x slower: timed on this many chips")
    args = ap.parse_args()
    exe = build()
    settings = Settings.load()
    lfw = LFW.locate(settings)
    engine = FaceEngine(settings.replace(threads=1))
    paths = [p for ps in lfw.people().values() for p in ps]
    chips = first_chips(engine, paths, args.chips)
    ff = FairFace.locate(settings).records()
    img_paths = [ps[0] for ps in list(lfw.people().values())[: args.images // 2]] + \
        [r.path for r in ff[: args.images - args.images // 2]]
    images = [engine.load(p).pixels for p in img_paths]

    net = onnx_embedder(flip=False, cache_dir=settings.cache_dir, threads=1)
    flip = onnx_embedder(flip=True, cache_dir=settings.cache_dir, threads=1)
    det = OnnxMmodDetector(settings.cache_dir, 1)
    binnet = dlib.face_recognition_model_v1(str(model_path(RESNET)))
    sub = chips[: args.dlib_bin_chips]

    with tempfile.TemporaryDirectory() as tmp:
        write_raw(Path(tmp) / "chips.raw", list(chips), False)
        write_raw(Path(tmp) / "images.raw", images, True)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        proc = subprocess.Popen([str(exe), str(model_path(RESNET)), str(model_path(MMOD)), f"{tmp}/chips.raw",
                                 f"{tmp}/images.raw"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

        def ask(line: str) -> str:
            proc.stdin.write(line + "\n")
            proc.stdin.flush()
            return proc.stdout.readline().strip()

        print(proc.stdout.readline().strip(), f"(chips, images); {load()}")
        ask("net 32")  # warm up every side
        net.raw(chips[:32]), det.propose(images[0]), binnet.compute_face_descriptor(list(sub[:2]))
        t_blas, t_onnx, t_flip, t_bin, m_blas, m_onnx = [], [], [], [], [], []
        faces_blas = faces_onnx = 0
        n = len(chips)
        for b in range(args.blocks):
            sides = ["blas", "onnx", "flip", "bin"]
            for side in sides[b % 4:] + sides[: b % 4]:
                if side == "blas":
                    t_blas.append(float(ask("net 32")) / n * 1000)
                elif side == "onnx":
                    t = time.perf_counter()
                    for i in range(0, n, 32):
                        net.raw(chips[i:i + 32])
                    t_onnx.append((time.perf_counter() - t) / n * 1000)
                elif side == "flip":
                    t = time.perf_counter()
                    for i in range(0, n, 32):
                        flip.embed(list(chips[i:i + 32]))
                    t_flip.append((time.perf_counter() - t) / n * 1000)
                else:
                    t = time.perf_counter()
                    for i in range(0, len(sub), 32):
                        binnet.compute_face_descriptor(list(sub[i:i + 32]))
                    t_bin.append((time.perf_counter() - t) / len(sub) * 1000)
            for side in (("blas", "onnx") if b % 2 == 0 else ("onnx", "blas")):
                if side == "blas":
                    s, f = ask("mmod").split()
                    m_blas.append(float(s) / len(images) * 1000)
                    faces_blas = int(f)
                else:
                    t = time.perf_counter()
                    faces_onnx = sum(len(det.propose(x)) for x in images)
                    m_onnx.append((time.perf_counter() - t) / len(images) * 1000)
        ask(f"descriptors {tmp}/desc.raw")
        blas_desc = np.fromfile(f"{tmp}/desc.raw", np.float32).reshape(-1, 128)
        proc.stdin.close()
        proc.wait()
    ours = np.concatenate([net.raw(chips[i:i + 32]) for i in range(0, n, 32)])
    diff = float(np.abs(ours - blas_desc).max()) if ours.shape == blas_desc.shape else float("nan")

    def ratios(base, cand):
        r = [x / y for x, y in zip(base, cand)]
        return f"{min(r):.2f}x / {np.median(r):.2f}x / {max(r):.2f}x"

    print(f"face network, {n} LFW chips, batch 32, 1 thread each ({args.blocks} alternating blocks; min / median / max)")
    print(f"  BLAS dlib 19.24 (OpenBLAS):          {mmm(t_blas, 'ms/face')}")
    print(f"  dlib-bin {dlib.__version__} (no BLAS), {len(sub)} chips: {mmm(t_bin, 'ms/face')}")
    print(f"  faceledger ONNX, one pass:           {mmm(t_onnx, 'ms/face')}  vs BLAS dlib {ratios(t_blas, t_onnx)}, "
          f"vs dlib-bin {ratios(t_bin, t_onnx)}")
    print(f"  faceledger ONNX, mirror-averaged (the default template): {mmm(t_flip, 'ms/face')}  vs BLAS dlib "
          f"{ratios(t_blas, t_flip)} (one BLAS-dlib descriptor)")
    print(f"  largest difference, ONNX vs BLAS dlib descriptors: {diff:.1e}")
    print(f"MMOD, {len(images)} images (half LFW, half FairFace), no upsampling, 1 thread each")
    print(f"  BLAS dlib: {mmm(m_blas, 'ms/image')} ({faces_blas} faces); faceledger ONNX: {mmm(m_onnx, 'ms/image')} "
          f"({faces_onnx} faces); ratio {ratios(m_blas, m_onnx)}")
    print(load())


if __name__ == "__main__":
    main()
