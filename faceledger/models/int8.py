"""An int8 copy of dlib's face network, made on the user's machine: the opt-in model
``dlib-resnet-v1-flip-int8`` (models/dlib/entry.py).

Why: on CPUs with int8 dot products (AVX512-VNNI, AVX-VNNI, ARM dotprod) ONNX Runtime's quantized
convolutions run the face network about twice as fast as fp32, for users who index large
galleries; its templates differ slightly from fp32's, so it is a model of its own (own id, own
calibration), never mixed with the default's (docs/models.md has the measured speed and accuracy).

How, with no dataset on the user's machine: static quantization needs each activation's range.
Those ranges were fitted once offline on FairFace faces (bench/fit_int8_ranges.py; never on LFW,
which the evaluation uses) and ship as numbers in ``faceledger/data/int8-ranges.json``. At first
use the converted fp32 graph is pre-processed and quantized with them by ONNX Runtime's own tools
(QDQ format, per-channel int8 weights, uint8 activations): the same inputs and ONNX Runtime version
give the same bytes, cached beside the fp32 file under a name that carries the ranges' digest and
the ONNX Runtime version. The model id is the digest of that file, so a refit of the ranges or a
quantizer that writes other bytes makes another model, whose shipped calibration no longer applies.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path

from faceledger.errors import ModelFileError

RANGES_FILE = Path(__file__).resolve().parent.parent / "data" / "int8-ranges.json"
#: What else shapes the int8 file (pre-processing and quantizer options): part of its cache key.
RECIPE = "pre-process(skip_symbolic_shape)/qdq/per-channel/s8-weights/u8-activations/minmax/v1"


class QuantizationRangesError(ModelFileError):
    """The shipped activation ranges (faceledger/data/int8-ranges.json) are unreadable or do not
    fit the network: the installation is damaged."""


def _damaged(path: Path, why: str) -> QuantizationRangesError:
    return QuantizationRangesError(f"{path}: {why}; reinstall faceledger, or use the fp32 model "
                                   "(dlib-resnet-v1-flip, the default)")


def load_ranges(model: str, path: Path = RANGES_FILE) -> dict[str, tuple[float, float]]:
    """``model``'s activation ranges, {tensor name: (lowest, highest)}, checked."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        section = doc["models"][model]["ranges"]
    except OSError as exc:
        raise _damaged(path, f"cannot be read ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise _damaged(path, f"holds no ranges for {model!r} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(section, dict) or not section:
        raise _damaged(path, f"holds no ranges for {model!r}")
    out = {}
    for name, pair in section.items():
        ok = (isinstance(pair, list) and len(pair) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pair))
        if not ok or pair[0] > pair[1]:
            raise _damaged(path, f"range of {model} tensor {name!r} is not [lowest, highest]: {pair!r}")
        out[str(name)] = (float(pair[0]), float(pair[1]))
    return out


def ranges_digest(model: str, path: Path = RANGES_FILE) -> str:
    """A short digest of ``model``'s ranges and the recipe: part of the int8 file's name."""
    canonical = json.dumps(sorted(load_ranges(model, path).items()), separators=(",", ":"))
    return hashlib.sha256(f"{RECIPE}/{canonical}".encode()).hexdigest()[:12]


def prepare(source: Path, target: Path) -> Path:
    """ONNX Runtime's pre-processing for quantization (shape inference, basic graph optimisation):
    the graph the ranges name tensors of (bench/fit_int8_ranges.py fits on it too)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    return Path(target)


def _check_cover(model_proto, ranges: dict, model: str, path: Path) -> None:
    """Every range names a tensor of the graph, and every convolution's input and output has one:
    ranges fitted on another graph would quantize it silently wrong, or not at all."""
    names = {i.name for i in model_proto.graph.input} | {o for n in model_proto.graph.node for o in n.output}
    stray = sorted(set(ranges) - names)
    if stray:
        raise _damaged(path, f"{len(stray)} {model} range(s) name no tensor of the network, e.g. {stray[0]!r}")
    missing = sorted({t for n in model_proto.graph.node if n.op_type == "Conv" for t in (n.input[0], n.output[0])}
                     - set(ranges))
    if missing:
        raise _damaged(path, f"{len(missing)} {model} convolution tensor(s) have no range, e.g. {missing[0]!r}")


def int8_path(source: Path, model: str, ranges_file: Path = RANGES_FILE) -> Path:
    """Where the int8 copy of ``source`` is kept: named by the source, the ranges and recipe, and
    the ONNX Runtime version (another version may write other bytes: another model id)."""
    import onnxruntime as ort

    source = Path(source)
    digest = ranges_digest(model, ranges_file)
    key = hashlib.sha256(f"{source.name}/{digest}/{ort.__version__}".encode()).hexdigest()[:16]
    return source.with_name(f"{source.stem}-int8-{key}.onnx")


def quantized(source: Path, model: str, *, ranges_file: Path = RANGES_FILE) -> Path:
    """The int8 copy of the fp32 ONNX file ``source``, beside it, made once (deterministically,
    written atomically, its digest recorded beside it) from the shipped ranges of ``model``; a copy
    that does not match its record is made again."""
    from faceledger.models import derived

    target = int8_path(source, model, ranges_file)
    if derived.usable(target):  # its digest matches the one recorded when it was made (models/derived.py)
        return target
    import logging

    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    ranges = load_ranges(model, ranges_file)
    data = TensorsData(CalibrationMethod.MinMax,
                       {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in sorted(ranges.items())})
    try:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.stem}-") as tmp:
            pre = prepare(source, Path(tmp) / "prepared.onnx")
            _check_cover(onnx.load(str(pre)), ranges, model, Path(ranges_file))
            cache = Path(tmp) / "ranges.json"
            save_tensors_data(data, cache)
            staged = Path(tmp) / "model.onnx"
            quiet = logging.getLogger().level
            logging.getLogger().setLevel(logging.ERROR)  # the quantizer's advice to pre-process: done above
            try:
                quantize_static(str(pre), str(staged), None, quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache),
                                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
            finally:
                logging.getLogger().setLevel(quiet)
            derived.install(staged, target)
    except OSError as exc:
        raise ModelFileError(f"cannot write the int8 face network beside {source}: {exc.strerror or exc}") from exc
    return target
