"""Edits to a converted ONNX graph that keep its numbers and make ONNX Runtime run it faster on CPU.

Both come from profiles of the detector-side networks (issue 25, 1 thread): ONNX Runtime runs
convolutions in a blocked channel layout (NCHWc, blocks of 16 channels with AVX-512, 8 with AVX2)
and leaves it for any op it cannot run there, paying a reorder each way and running the op on
its own.

- ``prelu_as_relus``: PRelu is such an op, and its per-channel broadcast is slow: the face mesh's
  20 PReLUs were 2.9 of its 4.25 ms a face (1 thread). Spelt as Relu, Sub, Mul and Add the mesh
  took 1.15 ms; as Relus and depthwise 1x1 convolutions, which stay in the blocked layout, 0.89 ms.
- ``pad_channels``: BlazeFace's first stages have 24 channels, not a whole number of 16-channel
  blocks, so on AVX-512 each of their residual blocks left the layout for its Add and Relu (and
  the convolutions could not take them in): zero channels up to the block size keep the whole
  graph blocked, with the same outputs (a zero channel stays zero through Conv, Add, Relu,
  MaxPool and channel Pad, and adds nothing to the next convolution).

The int8 alternative was measured and is slower here (docs/detection.md, bench/bench_detector_nets.py).
"""

from __future__ import annotations

import collections
import copy

import numpy as np

#: Ops a zero-padded tensor may flow into: each keeps zero channels zero (Conv: its weights for
#: them are zero) and takes the wider tensor.
_THROUGH = {"Conv", "Add", "Relu", "MaxPool", "Pad"}


def prelu_as_relus(model) -> None:
    """Each PRelu(x, slope) becomes Relu(x) + slope * -Relu(-x), the negations and the per-channel
    slope as depthwise 1x1 convolutions: ops ONNX Runtime keeps in its blocked layout and fuses (a
    convolution takes the Relu after it and the Add) -- the same numbers to float rounding (x > 0:
    x + slope * 0; else 0 + slope * x). A slope that is not a (C, 1, 1) constant (one for all
    channels, or computed) becomes p = Relu(x); p + slope * (x - p) instead (plain ops, exact)."""
    from onnx import helper, numpy_helper

    init = {t.name: t for t in model.graph.initializer}
    nodes, weights = [], []
    for n in model.graph.node:
        if n.op_type != "PRelu":
            nodes.append(n)
            continue
        (x, slope), y, base = n.input, n.output[0], n.name or n.output[0]
        a = numpy_helper.to_array(init[slope]) if slope in init else None
        if a is not None and a.ndim == 3 and a.shape[0] > 1 and a.shape[1:] == (1, 1) and a.dtype == np.float32:
            c = a.shape[0]
            weights += [numpy_helper.from_array(np.full((c, 1, 1, 1), -1.0, np.float32), f"{base}_negate"),
                        numpy_helper.from_array(-a.reshape(c, 1, 1, 1), f"{base}_negslope")]
            nodes += [helper.make_node("Relu", [x], [f"{base}_pos"], name=f"{base}_relu"),
                      helper.make_node("Conv", [x, f"{base}_negate"], [f"{base}_flip"], name=f"{base}_flip", group=c,
                                       kernel_shape=[1, 1]),
                      helper.make_node("Relu", [f"{base}_flip"], [f"{base}_neg"], name=f"{base}_negrelu"),
                      helper.make_node("Conv", [f"{base}_neg", f"{base}_negslope"], [f"{base}_scaled"], name=f"{base}_scale",
                                       group=c, kernel_shape=[1, 1]),
                      helper.make_node("Add", [f"{base}_scaled", f"{base}_pos"], [y], name=f"{base}_add")]
            continue
        nodes += [helper.make_node("Relu", [x], [f"{base}_pos"], name=f"{base}_relu"),
                  helper.make_node("Sub", [x, f"{base}_pos"], [f"{base}_neg"], name=f"{base}_sub"),
                  helper.make_node("Mul", [f"{base}_neg", slope], [f"{base}_scaled"], name=f"{base}_mul"),
                  helper.make_node("Add", [f"{base}_pos", f"{base}_scaled"], [y], name=f"{base}_add")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(weights)
    read = {i for n in nodes for i in n.input}
    unread = [t for t in model.graph.initializer if t.name not in read]  # the slopes now in the convolutions
    for t in unread:
        model.graph.initializer.remove(t)


def nchwc_block() -> int:
    """ONNX Runtime's blocked-layout width on this CPU (as MLAS picks it): 16 with AVX-512, 8 with
    AVX2, else 1 (no blocked layout: nothing to pad for)."""
    from faceledger.models.sessions import _cpu_flags

    flags = set(_cpu_flags().split())
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 1


def pad_channels(model, block: int) -> bool:
    """Zero-pad every convolution's output channels to a multiple of ``block`` where the padded
    tensor flows only through ops that keep zero channels zero (``_THROUGH``) and back into
    convolutions (which get zero input weights for them); graph outputs keep their widths. The
    model is edited only when the whole plan holds; returns whether it was."""
    if block <= 1:
        return False
    edited = copy.deepcopy(model)
    if not _pad(edited, block):
        return False
    model.CopyFrom(edited)
    return True


def _pad(model, block: int) -> bool:
    from onnx import numpy_helper

    g = model.graph
    init = {t.name: t for t in g.initializer}
    uses = collections.Counter(i for n in g.node for i in n.input)
    consumers = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n.op_type)
    outputs = {o.name for o in g.output}

    def owned(name: str) -> bool:  # an initializer this node alone reads: safe to rewrite
        return name in init and uses[name] == 1

    def put(name: str, value: np.ndarray) -> None:
        init[name].CopyFrom(numpy_helper.from_array(value, name))

    def widen(a: np.ndarray, axis: int, to: int) -> np.ndarray:
        shape = list(a.shape)
        shape[axis] = to - a.shape[axis]
        return np.concatenate([a, np.zeros(shape, a.dtype)], axis=axis)

    width: dict[str, tuple[int, int]] = {}  # tensor -> (its channels, channels after padding)
    changed = False
    for n in g.node:
        ins = [width.get(i) for i in n.input[:1]]
        if n.op_type == "Conv":
            if not all(owned(i) for i in n.input[1:]):
                return False
            w = numpy_helper.to_array(init[n.input[1]])
            group = next((a for a in n.attribute if a.name == "group"), None)
            _, have = ins[0] or (None, None)
            if group is not None and group.i > 1:  # depthwise: one filter per channel
                if group.i != w.shape[0] or w.shape[1] != 1:
                    return False
                if have and have != w.shape[0]:
                    put(n.input[1], widen(w, 0, have))
                    if len(n.input) > 2:
                        put(n.input[2], widen(numpy_helper.to_array(init[n.input[2]]), 0, have))
                    group.i = have
                    changed = True
                width[n.output[0]] = (ins[0][0] if ins[0] else w.shape[0], have or w.shape[0])
                continue
            if have and have != w.shape[1]:
                w = widen(w, 1, have)
                changed = True
            out = w.shape[0]
            wide = -(-out // block) * block
            if wide != out and n.output[0] not in outputs and all(c in _THROUGH for c in consumers[n.output[0]]):
                w = widen(w, 0, wide)
                if len(n.input) > 2:
                    put(n.input[2], widen(numpy_helper.to_array(init[n.input[2]]), 0, wide))
                changed = True
            else:
                wide = out
            put(n.input[1], w)
            width[n.output[0]] = (out, wide)
        elif n.op_type in ("Relu", "MaxPool"):
            if ins[0]:
                width[n.output[0]] = ins[0]
        elif n.op_type == "Add":
            seen = {width.get(i) for i in n.input}
            if len(seen) != 1:  # a padded tensor beside an unpadded or untracked one
                if any(s and s[0] != s[1] for s in seen):
                    return False
                continue
            (w2,) = seen
            if w2:
                width[n.output[0]] = w2
        elif n.op_type == "Pad":
            if ins[0] and ins[0][0] != ins[0][1]:
                if not owned(n.input[1]) or (len(n.input) > 2 and n.input[2]) or \
                        any(a.name == "mode" and a.s not in (b"constant", "constant") for a in n.attribute):
                    return False
                pads = numpy_helper.to_array(init[n.input[1]]).copy()
                if len(pads) != 8 or pads[1] != 0:
                    return False
                real, have = ins[0]
                total = real + int(pads[5])
                wide = -(-total // block) * block
                pads[5] = wide - have
                put(n.input[1], pads)
                width[n.output[0]] = (total, wide)
            elif ins[0]:
                pads = numpy_helper.to_array(init[n.input[1]]) if n.input[1] in init else None
                if pads is None or len(pads) != 8:
                    return False
                width[n.output[0]] = (ins[0][0] + int(pads[1] + pads[5]),) * 2
        # a padded tensor read by anything else, or leaving the graph, would show its zero channels
        for i in n.input:
            if i in width and width[i][0] != width[i][1] and n.op_type not in _THROUGH:
                return False
    if any(o in width and width[o][0] != width[o][1] for o in outputs):
        return False
    del g.value_info[:]  # shapes inferred before the padding
    return changed
