"""Fit the activation ranges that models/int8.py quantizes dlib's face network with, on FairFace
(never LFW: the evaluation's data), and write faceledger/data/int8-ranges.json.

The network's inputs are recorded as the engine makes them: the aligned 150 px chips of the faces
the default detector finds in FairFace training images, each also mirrored (the default template
averages both). ONNX Runtime's MinMax calibrator then gives every tensor's lowest and highest value
over all of them; the file records the command, the data and the counts.

    .venv/bin/python bench/fit_int8_ranges.py [--images 300] [--seed 1] [--out faceledger/data/int8-ranges.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from blocks import load
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import FairFace
from faceledger.models.dlib import entry as dlib_entry
from faceledger.models.int8 import RANGES_FILE, prepare


def record(settings: Settings, paths: list[Path]) -> np.ndarray:
    """Each found face's chip and its mirror image, (n, 150, 150, 3) uint8."""
    engine = FaceEngine(settings)
    chips = [f.chip for p in paths for f in engine.detect(str(p)).faces]
    chips = np.stack(chips)
    return np.concatenate([chips, chips[:, :, ::-1]])


def fit(source: Path, chips: np.ndarray, batch: int = 16) -> dict[str, list[float]]:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, create_calibrator

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(range(0, len(chips), batch))

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {"rgb": np.asarray(chips[i : i + batch], np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        cal = create_calibrator(str(source), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                calibrate_method=CalibrationMethod.MinMax)
        cal.collect_data(Reader())
        data = cal.compute_data()
    return {k: [float(f"{np.ravel(v.range_value[0])[0]:.7g}"), float(f"{np.ravel(v.range_value[1])[0]:.7g}")]
            for k, v in sorted(data.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300, help="FairFace training images")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RANGES_FILE)
    args = ap.parse_args()
    settings = Settings.load().replace(threads=1)
    train = [r.path for r in FairFace.locate(settings).records() if r.path.parent.name == "train"]
    rng = np.random.default_rng(args.seed)
    paths = [train[i] for i in sorted(rng.choice(len(train), args.images, replace=False))]
    print(f"{load()}; recording chips from {len(paths)} FairFace training images (seed {args.seed})", flush=True)
    chips = record(settings, paths)
    print(f"dlib-resnet-v1: {len(chips)} chips (faces and their mirror images)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        ranges = fit(prepare(dlib_entry.onnx_file(settings.cache_dir), Path(tmp) / "prepared.onnx"), chips)
    doc = {"format": 1, "method": "MinMax",
           "fitted_by": f"bench/fit_int8_ranges.py --images {args.images} --seed {args.seed}",
           "data": "FairFace training images (never LFW): the default detector's aligned chips, each also mirrored",
           "models": {"dlib-resnet-v1": {"inputs": int(len(chips)), "ranges": ranges}}}
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
