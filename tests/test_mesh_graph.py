"""The face mesh's PReLUs are spelt as ReLUs (models/facemesh.prelu_as_relus) for speed: the mesh
a user gets must give the same points as the graph converted from the package."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _run(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_prelu_as_relus_is_prelu_for_every_sign_and_slope():
    """Negative, zero and positive inputs; slopes below 0, between 0 and 1, and above 1 (the mesh has
    all three: a max(x, slope * x) shortcut would be wrong for them)."""
    from onnx import TensorProto, helper, numpy_helper

    from faceledger.models.facemesh import prelu_as_relus

    slope = np.array([-0.9, 0.0, 0.25, 1.37], np.float32).reshape(4, 1, 1)
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
    np.testing.assert_array_equal(_run(model, x), before)


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
