"""dlib's ResNet as a registry entry: its manifests (with and without mirror averaging, and the
opt-in int8 copy), its model id, and its ONNX file, converted from dlib's own ``.dat`` at first use
(the int8 copy quantized from that, models/int8.py)."""

from __future__ import annotations

from pathlib import Path

from faceledger.errors import InvalidParameterError
from faceledger.models import files
from faceledger.models.manifest import Alignment, Manifest

LICENCE = "CC0-1.0"  # the weights (dlib-models README); dlib itself is Boost-1.0
SOURCE = ("dlib-models by Davis King (dlib_face_recognition_resnet_model_v1.dat), "
          "from the PyPI package face_recognition_models 0.3.0")
#: The converted graph takes raw 0-255 RGB and normalises inside, as dlib's input layer does.
_COMMON = dict(dimension=128, input_size=(150, 150), alignment=Alignment("dlib-chip", padding=0.25),
               layout="NHWC", colour="RGB", input="rgb", licence=LICENCE, source=SOURCE)
MANIFESTS = {
    "dlib-resnet-v1-flip": Manifest(name="dlib-resnet-v1-flip", flip=True, **_COMMON,
                                    description="dlib's 29-layer ResNet, each template the sum of the face's "
                                                "and its mirror image's descriptors (the default)",
                                    measured={"lfw_10fold_accuracy": 0.9928,
                                              "command": "faceledger eval lfw --workers 2 (BlazeFace, the default "
                                                         "detector; 99.17% with HOG+MMOD: docs/evaluation.md)"}),
    "dlib-resnet-v1": Manifest(name="dlib-resnet-v1", flip=False, **_COMMON,
                               description="dlib's 29-layer ResNet, one pass per face",
                               measured={"lfw_10fold_accuracy": 0.9893,
                                         "command": "faceledger eval lfw with embed_flip = false"}),
    "dlib-resnet-v1-flip-int8": Manifest(name="dlib-resnet-v1-flip-int8", flip=True, **_COMMON,
                                         description="the default network quantized to int8 (opt-in): about 2x "
                                                     "faster templates on CPUs with int8 dot products, its own "
                                                     "model id and calibration (docs/models.md)",
                                         measured={"lfw_10fold_accuracy": 0.9920,
                                                   "command": "faceledger eval lfw --model dlib-resnet-v1-flip-int8 "
                                                              "(BlazeFace; the default model: 99.28% in the same run)"}),
}
#: Built-in entries that run the int8 copy of the network: their id is the digest of that file, and
#: dlib's own runtime (``embedder = dlib``) cannot run them.
INT8 = {"dlib-resnet-v1-flip-int8": "dlib-resnet-v1"}


class BackendNotAvailableError(InvalidParameterError):
    """``embedder = dlib`` asked for a model dlib's runtime cannot run (the int8 copy)."""


def model_id(name: str, cache_dir: Path | None = None) -> files.ModelId:
    """``cache_dir``: where the weights' digest is kept between processes (files.file_sha256).
    The fp32 entries are named by dlib's ``.dat`` (their ONNX graph computes what it does, to ~1e-7);
    the int8 entry by the int8 file it runs, since its templates are that file's own."""
    weights = onnx_file(cache_dir, name) if name in INT8 else files.model_path(files.RESNET)
    return files.ModelId(name, files.file_sha256(weights, cache_dir)[:12])


def onnx_file(cache_dir: Path | None, name: str = "dlib-resnet-v1-flip") -> Path:
    """The ONNX graph entry ``name`` runs: the converted fp32 graph, or its int8 copy."""
    from faceledger.models.dlib.onnx_export import converted_model

    fp32 = converted_model(files.model_path(files.RESNET), cache_dir)
    if name in INT8:
        from faceledger.models.int8 import quantized

        return quantized(fp32, INT8[name])
    return fp32


def check_backend(name: str, backend: str) -> None:
    if backend == "dlib" and name in INT8:
        raise BackendNotAvailableError(f"{name} is an int8 ONNX graph that dlib's runtime cannot run: set "
                                       "embedder = \"onnx\" (the default), or choose dlib-resnet-v1-flip for dlib's own")


def onnx_embedder(flip: bool = True, cache_dir: Path | None = None, threads: int = 0):
    """dlib's ResNet on ONNX Runtime (the default runtime): same outputs as dlib to ~1e-7, so its
    templates carry dlib's model id and mix freely with dlib's own."""
    from faceledger.models.onnx_embedder import OnnxEmbedder

    name = "dlib-resnet-v1-flip" if flip else "dlib-resnet-v1"
    return OnnxEmbedder(MANIFESTS[name], onnx_file(cache_dir), model_id(name, cache_dir), threads=threads,
                        cache_dir=cache_dir)
