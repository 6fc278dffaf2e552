"""The converted detector-side graphs are edited for speed (models/graph_edits.py: the face mesh's
PReLUs spelt as ReLUs, BlazeFace's channels padded to the CPU's blocked layout): the networks a
user gets must give the same outputs as the graphs converted from the package."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("slopes", [[-0.9, 0.0, 0.25, 1.37], [0.3]], ids=["per-channel", "one-for-all"])
def test_prelu_as_relus_is_prelu_for_every_sign_and_slope(slopes):
    """Negative, zero and positive inputs; slopes below 0, between 0 and 1, and above 1 (the mesh has
    all three: a max(x, slope * x) shortcut would be wrong for them); a per-channel slope (the
    convolution form) and one slope broadcast over all channels (the plain form)."""
    from onnx import TensorProto, helper, numpy_helper

    from faceledger.models.graph_edits import prelu_as_relus

    slope = np.array(slopes, np.float32).reshape(-1, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["h"], name="p1"), helper.make_node("PRelu", ["h", "slope"], ["y"], name="p2")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4, 3, 3])], [numpy_helper.from_array(slope, "slope")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).normal(size=(2, 4, 3, 3)).astype(np.float32)
    x[0, :, 0, 0] = 0.0
    before = _run(model, x)
    prelu_as_relus(model)
    assert not [n for n in model.graph.node if n.op_type == "PRelu"]
    read = {i for n in model.graph.node for i in n.input}
    assert all(t.name in read for t in model.graph.initializer)  # ONNX Runtime warns of unread weights on every load
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-6, atol=1e-6)


def test_the_shipped_mesh_gives_the_converted_graphs_points_on_real_faces(settings, engine, lfw):
    """The mesh file the engine opens has no PRelu, is cached under its own name (a cache holding
    the converted graph is not taken for it), and gives that graph's points on real faces."""
    from faceledger.models import facemesh
    from faceledger.vision import landmarks

    package = settings.package_cache or settings.cache_dir
    shipped = facemesh.onnx_file(package, settings.cache_dir, allow_download=False)
    plain = facemesh.converted(package, settings.cache_dir, "facemesh", facemesh.GRAPH, facemesh.OUTPUT_NODE,
                               facemesh.OUTPUT_NODE, allow_download=False)
    assert shipped != plain
    ops = {n.op_type for n in onnx.load(str(shipped)).graph.node}
    assert "PRelu" not in ops and "Relu" in ops
    assert "PRelu" in {n.op_type for n in onnx.load(str(plain)).graph.node}
    crops = []
    for name, k in (("Colin_Powell", 1), ("Serena_Williams", 1), ("Gloria_Macapagal_Arroyo", 1)):
        pixels = engine.load(str(lfw.image(name, k))).pixels
        face = engine._finder.find(pixels, largest_only=True)[0]
        geometry = landmarks.crop_geometry((face.left, face.top, face.width, face.height), face.landmarks)
        crops.append(landmarks.crop(pixels, geometry, facemesh.INPUT_SIZE))
    x = np.stack(crops).astype(np.float32) / 255.0
    got = engine.face_mesh._session.run(None, {"input": x})[0]
    want = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - want).max() < 1e-3  # crop pixels: the same points
    assert np.abs(want).max() > 50  # and a real mesh, not zeros


def _blocks_graph():
    """A BlazeFace-like stage: conv 3 -> 24, residual blocks (depthwise, pointwise, Add, Relu), a
    stride-2 block with MaxPool and a channel Pad to 48, and a head whose 6 channels leave the graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array(rng.normal(size=s).astype(np.float32) * 0.3, f"w{len(inits)}")  # noqa: E731
    inits, nodes = [], []

    def conv(x, out, shape, group=1, stride=1, bias=True):
        t = w(*shape)
        inits.append(t)
        ins = [x, t.name]
        if bias:
            b = numpy_helper.from_array(rng.normal(size=shape[0]).astype(np.float32), f"b{len(inits)}")
            inits.append(b)
            ins.append(b.name)
        k = shape[2]
        nodes.append(helper.make_node("Conv", ins, [out], group=group, strides=[stride, stride], pads=[k // 2] * 4))
        return out

    conv("x", "c0", (24, 3, 5, 5), stride=2)
    nodes.append(helper.make_node("Relu", ["c0"], ["r0"]))
    conv("r0", "d1", (24, 1, 3, 3), group=24, bias=False)
    conv("d1", "p1", (24, 24, 1, 1))
    nodes += [helper.make_node("Add", ["p1", "r0"], ["a1"]), helper.make_node("Relu", ["a1"], ["r1"])]
    conv("r1", "d2", (24, 1, 3, 3), group=24, stride=2, bias=False)
    conv("d2", "p2", (48, 24, 1, 1))
    nodes.append(helper.make_node("MaxPool", ["r1"], ["m2"], kernel_shape=[2, 2], strides=[2, 2]))
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 24, 0, 0], np.int64), "pads")
    inits.append(pads)
    nodes += [helper.make_node("Pad", ["m2", "pads"], ["q2"]), helper.make_node("Add", ["p2", "q2"], ["a2"]),
              helper.make_node("Relu", ["a2"], ["r2"])]
    conv("r2", "y", (6, 48, 1, 1))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_padding_channels_to_the_blocked_layout_keeps_the_outputs():
    from onnx import numpy_helper

    from faceledger.models.graph_edits import pad_channels

    model = _blocks_graph()
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    before = _run(model, x)
    assert pad_channels(model, 16)
    widths = sorted({numpy_helper.to_array(t).shape[0] for t in model.graph.initializer if t.name.startswith("w")})
    assert widths == [6, 32, 48]  # the 24-channel stage is 32 wide; the graph's output keeps its 6
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-4)


def test_padding_is_refused_where_a_padded_tensor_would_leave_the_graph():
    """A zero channel must never reach an output: a graph returning a 24-channel activation is left as it is."""
    from onnx import helper

    from faceledger.models.graph_edits import pad_channels

    model = _blocks_graph()
    model.graph.output.append(helper.make_tensor_value_info("r1", onnx.TensorProto.FLOAT, None))
    before = model.SerializeToString()
    assert not pad_channels(model, 16)
    assert model.SerializeToString() == before


def test_the_shipped_blazeface_gives_the_converted_graphs_outputs_on_real_faces(settings, engine, lfw):
    """The detector file the engine opens is cached under its own name and gives the converted
    graph's scores and boxes on real images (padded to this CPU's block, or untouched)."""
    from faceledger.models import blazeface, facemesh

    package = settings.package_cache or settings.cache_dir
    shipped = blazeface.onnx_file(package, settings.cache_dir, allow_download=False)
    plain = facemesh.converted(package, settings.cache_dir, "blazeface-back", blazeface.GRAPH, blazeface.OUTPUTS,
                               f"{sorted(blazeface.OUTPUTS.items())}/any-batch", allow_download=False,
                               edit=blazeface._any_batch)
    assert shipped != plain
    detector = engine._finder.detectors[0]
    batch = np.concatenate([detector._inputs(engine.load(str(lfw.image(name, 1))).pixels)[0]
                            for name in ("Colin_Powell", "Serena_Williams", "Gloria_Macapagal_Arroyo")])
    got = ort.InferenceSession(str(shipped), providers=["CPUExecutionProvider"]).run(None, {"input": batch})
    want = ort.InferenceSession(str(plain), providers=["CPUExecutionProvider"]).run(None, {"input": batch})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-3)
    assert max(want[0].max(), want[1].max()) > 1.0  # a face above the threshold (logit 0): not empty maps compared
