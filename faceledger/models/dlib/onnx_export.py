"""dlib networks -> ONNX graphs, built from the parameters dlib_format reads.

The network definitions below restate dlib's own (dlib's dnn_face_recognition_ex.cpp names the
face ResNet ``anet_type``; dnn_mmod_face_detection_ex.cpp the MMOD detector) as token lists: each
computational layer, each tag and each skip, in order from the input. The file's layer sequence
must match a definition exactly before a graph is built, so an unknown or altered network is
refused rather than guessed at.

Numerics follow dlib: the input is (pixel - mean) / 256 per channel; an ``affine_`` after a
convolution is folded into it; ``add_prev_`` of tensors of different sizes adds them where both
exist and keeps the larger one's extent (dlib zero-extends the smaller: 32 -> 64 channels, 3x3
-> 4x4 in the last stages), which the graph does with explicit zero padding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceledger.models.dlib.dat_format import DlibFormatError, DlibNet

OPSET = 17


def _resnet_tokens() -> list[tuple]:
    block = [("con_4",), ("affine_",), ("relu_",), ("con_4",), ("affine_",)]

    def ares() -> list[tuple]:
        return [("tag", 1), *block, ("add_prev_", 1), ("relu_",)]

    def ares_down() -> list[tuple]:
        return [("tag", 1), *block, ("tag", 2), ("skip", 1), ("avg_pool_2",), ("add_prev_", 2), ("relu_",)]

    tokens = [("con_4",), ("affine_",), ("relu_",), ("max_pool_2",)]
    tokens += ares() * 3  # 32 filters
    tokens += ares_down() + ares() * 3  # 64
    tokens += ares_down() + ares() * 2  # 128
    tokens += ares_down() + ares() * 2  # 256
    tokens += ares_down()  # 256
    return tokens + [("avg_pool_2",), ("fc_2",)]


def _mmod_tokens() -> list[tuple]:
    down = [("con_4",), ("affine_",), ("relu_",)] * 3
    rcon = [("con_4",), ("affine_",), ("relu_",)] * 3
    return down + rcon + [("con_4",)]


DEFINITIONS = {"loss_metric_2": ("dlib face recognition ResNet", _resnet_tokens),
               "loss_mmod_": ("dlib MMOD face detector", _mmod_tokens)}


def _check(net: DlibNet, tokens: list[tuple]) -> None:
    """The file's wrappers and layer kinds, from the input up, must be the definition's."""
    file_seq, layers = [], iter(net.layers)
    for version in reversed(net.wrappers):
        layer = None if version == 1 else next(layers, None)
        file_seq.append("tag/skip" if version == 1 else (layer.kind if layer else "missing"))
    want = ["tag/skip" if t[0] in ("tag", "skip") else t[0] for t in tokens]
    if file_seq != want or next(layers, None) is not None:
        first = next((i for i, (a, b) in enumerate(zip(file_seq, want)) if a != b), min(len(file_seq), len(want)))
        raise DlibFormatError(f"the network in the file differs from the known definition at layer {first} "
                              f"(file: {file_seq[first:first + 3]}, expected: {want[first:first + 3]})")


class _Graph:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.name(base)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], base: str | None = None, **attrs) -> str:
        out = self.name(base or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _conv_shape(h: int, w: int, k: int, s: int, p: int) -> tuple[int, int]:
    return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1


def build(net: DlibNet, *, batch: str | int = "n", height: int | str | None = None, width: int | str | None = None):
    """The ONNX ModelProto for a parsed dlib network. A fixed-size input layer (the face ResNet)
    takes ``rgb``: float32 (N, H, W, 3) pixel values 0-255, normalised in the graph. An image
    pyramid input (the MMOD detector) takes ``x``: the tiled, normalised pyramid as float32
    (N, 3, H, W), built outside (mmod.py), since the tiling depends on each image's size.
    Output ``out``: the network's final tensor."""
    from onnx import TensorProto, checker, helper

    if net.loss not in DEFINITIONS:
        raise DlibFormatError(f"no definition for a network with loss {net.loss!r}")
    title, tokens_of = DEFINITIONS[net.loss]
    tokens = tokens_of()
    _check(net, tokens)
    g = _Graph()
    fixed = net.input == "input_rgb_image_sized"
    h = net.input_params["nr"] if fixed else height
    w = net.input_params["nc"] if fixed else width
    if fixed:
        x = g.op("Transpose", ["rgb"], "nchw", perm=[0, 3, 1, 2])
        mean = np.array(net.input_params["avg"], np.float32).reshape(1, 3, 1, 1)
        x = g.op("Sub", [x, g.const("mean", mean)])
        x = g.op("Mul", [x, g.const("scale", np.array(1 / 256, np.float32))], "normalised")
    else:
        x = "x"
        h, w = h or "h", w or "w"
    shape = [3, h, w]  # channels, rows, columns (str when dynamic)
    tags: dict[int, tuple[str, list]] = {}
    layers = iter(net.layers)
    pending_conv = None  # a convolution whose affine_ may still fold into it

    def flush() -> None:
        nonlocal x, pending_conv
        if pending_conv is not None:
            weights, bias, p = pending_conv
            x = g.op("Conv", [x, g.const("w", weights), g.const("b", bias)], "conv", kernel_shape=[p["nr"], p["nc"]],
                     strides=[p["stride_y"], p["stride_x"]],
                     pads=[p["padding_y"], p["padding_x"], p["padding_y"], p["padding_x"]])
            pending_conv = None

    for token in tokens:
        kind = token[0]
        if kind == "tag":
            flush()
            tags[token[1]] = (x, list(shape))
            continue
        if kind == "skip":
            flush()
            x, shape = tags[token[1]][0], list(tags[token[1]][1])
            continue
        layer = next(layers)
        p = layer.params
        if kind == "con_4":
            flush()
            pending_conv = (p["weights"].astype(np.float32), p["bias"].astype(np.float32), p)
            if isinstance(shape[1], int):
                shape[1:] = _conv_shape(shape[1], shape[2], p["nr"], p["stride_y"], p["padding_y"])
            shape[0] = p["num_filters"]
        elif kind == "affine_":
            gamma, beta = p["gamma"].astype(np.float32), p["beta"].astype(np.float32)
            if pending_conv is not None:  # fold: gamma * (W x + b) + beta
                weights, bias, cp = pending_conv
                pending_conv = (weights * gamma[:, None, None, None], bias * gamma + beta, cp)
            else:
                x = g.op("Mul", [x, g.const("gamma", gamma.reshape(1, -1, 1, 1))])
                x = g.op("Add", [x, g.const("beta", beta.reshape(1, -1, 1, 1))])
        elif kind == "relu_":
            flush()
            x = g.op("Relu", [x])
        elif kind in ("max_pool_2", "avg_pool_2"):
            flush()
            if p["nr"] == 0:  # pool over everything
                x = g.op("GlobalAveragePool" if kind == "avg_pool_2" else "GlobalMaxPool", [x])
                shape[1:] = [1, 1]
            else:
                x = g.op("AveragePool" if kind == "avg_pool_2" else "MaxPool", [x], kernel_shape=[p["nr"], p["nc"]],
                         strides=[p["stride_y"], p["stride_x"]],
                         pads=[p["padding_y"], p["padding_x"], p["padding_y"], p["padding_x"]])
                if isinstance(shape[1], int):
                    shape[1:] = _conv_shape(shape[1], shape[2], p["nr"], p["stride_y"], p["padding_y"])
        elif kind == "add_prev_":
            flush()
            other, other_shape = tags[token[1]]
            if not all(isinstance(d, int) for d in shape + other_shape):
                raise DlibFormatError("add_prev_ of differently sized tensors needs fixed input dimensions")
            target = [max(a, b) for a, b in zip(shape, other_shape)]
            x = g.op("Add", [_pad_to(g, x, shape, target), _pad_to(g, other, other_shape, target)], "add")
            shape = target
        elif kind == "fc_2":
            flush()
            x = g.op("Flatten", [x], axis=1)
            x = g.op("MatMul", [x, g.const("fc", p["weights"].astype(np.float32))], "fc")
            if p["bias"] is not None:
                x = g.op("Add", [x, g.const("fc_bias", p["bias"].astype(np.float32))])
            shape = [p["num_outputs"]]
        else:  # pragma: no cover - the definitions only hold the kinds above
            raise DlibFormatError(f"no ONNX translation for {kind}")
    flush()
    g.nodes.append(helper.make_node("Identity", [x], ["out"], name="out"))
    if fixed:
        rgb = helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [batch, h, w, 3])
    else:
        rgb = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, h, w])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch] + [d if isinstance(d, int) else None for d in shape])
    graph = helper.make_graph(g.nodes, title.replace(" ", "_"), [rgb], [out], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="faceledger",
                              doc_string=f"{title}, converted from a dlib file with SHA-256 {net.sha256}")
    model.ir_version = 8
    checker.check_model(model)
    return model


def _pad_to(g: _Graph, x: str, shape: list, target: list) -> str:
    extra = [t - s for s, t in zip(shape, target)]
    if not any(extra):
        return x
    pads = np.array([0, 0, 0, 0, 0, *extra], np.int64)  # begin (N, C, H, W), end (N, C, H, W)
    return g.op("Pad", [x, g.const("pads", pads)], "pad", mode="constant")


def converted_path(dat: Path, cache_dir: Path | None = None) -> Path:
    """Where the ONNX graph of the dlib network file ``dat`` is kept (named by its weights' digest)."""
    from faceledger.settings import state_dir
    from faceledger.models import files as models

    return Path(cache_dir or state_dir("cache")) / "onnx" / f"{dat.stem}-{models.file_sha256(dat, cache_dir)[:16]}.onnx"


def converted_model(dat: Path, cache_dir: Path | None = None) -> Path:
    """The ONNX graph of a dlib network file, converted once into the cache (atomically, its digest
    recorded beside it); a copy that does not match its record is converted again (models/derived.py)."""
    import os
    import tempfile

    from faceledger.models import derived
    from faceledger.models.dlib import dat_format as dlib_format

    target = converted_path(dat, cache_dir)
    folder = target.parent
    if derived.usable(target, folder.parent):
        return target
    data = build(dlib_format.read(dat)).SerializeToString()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        derived.install(Path(tmp), target)
    except OSError as exc:
        from faceledger.errors import ModelFileError

        raise ModelFileError(f"cannot write {target}, the ONNX graph of {dat}: {exc.strerror or exc}; make "
                             "the cache folder writable or set FACELEDGER_CACHE_DIR to one that is") from exc
    return target
