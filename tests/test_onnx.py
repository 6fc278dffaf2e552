"""dlib's networks read from their own files and run on ONNX Runtime: the same outputs as dlib."""

from __future__ import annotations

import dlib
import numpy as np
import pytest

from faceledger.models.dlib import dat_format as dlib_format, onnx_export
from faceledger.models.dlib.entry import onnx_embedder
from faceledger.models.embedding import DlibResnetEmbedder
from faceledger.models.dlib.onnx_export import converted_model
from faceledger.models.files import MMOD, RESNET, SHAPE_5, model_path


@pytest.fixture(scope="module")
def chips(engine, lfw):
    """Aligned chips of three dozen real LFW faces."""
    out = []
    for name, images in list(lfw.people().items())[:200]:
        faces = engine.detect(images[0]).faces
        if faces:
            out.append(faces[0].chip)
        if len(out) == 36:
            break
    return np.stack(out)


def test_onnx_resnet_gives_dlibs_descriptors(chips, tmp_path):
    net = dlib.face_recognition_model_v1(str(model_path(RESNET)))
    ref = np.array([np.asarray(d) for d in net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])])
    got = onnx_embedder(flip=False, cache_dir=tmp_path).raw(chips)
    assert np.abs(ref - got).max() <= 1e-4
    cos = np.sum(ref * got, axis=1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.99999


def test_both_backends_make_interchangeable_templates(chips, tmp_path):
    onnx, ref = onnx_embedder(flip=True, cache_dir=tmp_path), DlibResnetEmbedder(flip=True)
    assert onnx.model == ref.model  # same network, same id: cached templates stay valid
    a, b = onnx.embed(list(chips[:8])), ref.embed(list(chips[:8]))
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-6) and np.min(np.sum(a * b, axis=1)) >= 0.99999


def test_conversion_regenerates_identically_and_is_cached(tmp_path):
    net = dlib_format.read(model_path(RESNET))
    assert onnx_export.build(net).SerializeToString() == onnx_export.build(net).SerializeToString()
    first = converted_model(model_path(RESNET), tmp_path)
    assert first.parent == tmp_path / "onnx" and net.sha256[:16] in first.name
    stamp = first.stat().st_mtime_ns
    assert converted_model(model_path(RESNET), tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert first.read_bytes() == onnx_export.build(net).SerializeToString()


def test_corrupt_or_unknown_files_are_refused_clearly(tmp_path):
    data = model_path(RESNET).read_bytes()
    cut = tmp_path / "truncated.dat"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(dlib_format.DlibFormatError, match="truncated"):
        dlib_format.read(cut)
    noise = tmp_path / "noise.dat"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(dlib_format.DlibFormatError):
        dlib_format.read(noise)
    with pytest.raises(dlib_format.DlibFormatError):
        dlib_format.read(model_path(SHAPE_5))  # a dlib file, but not a network
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x00")
    with pytest.raises(dlib_format.DlibFormatError, match="unexpected bytes"):
        dlib_format.read(extra)
    altered = dlib_format.read(model_path(RESNET))
    altered.layers.pop(5)  # a network that is not the one the definition describes
    with pytest.raises(dlib_format.DlibFormatError, match="differs from the known definition"):
        onnx_export.build(altered)


def test_mmod_detector_file_is_read():
    net = dlib_format.read(model_path(MMOD))
    assert net.loss == "loss_mmod_" and net.input == "input_rgb_image_pyramid"
    assert [layer.kind for layer in net.layers].count("con_4") == 7
    assert net.loss_params["detector_windows"][0]["width"] == 80


def test_onnx_mmod_finds_dlibs_faces_with_dlibs_scores(lfw, fairface):
    from PIL import Image

    from faceledger.vision.mmod import OnnxMmodDetector

    ref = dlib.cnn_face_detection_model_v1(str(model_path(MMOD)))
    ours = OnnxMmodDetector()
    paths = [ps[0] for ps in list(lfw.people().values())[:8]] + [r.path for r in fairface.records()[:8]]
    group = np.concatenate([np.asarray(Image.open(p).convert("RGB").resize((200, 200))) for p in paths[:3]], axis=1)
    found = 0
    for img in [np.asarray(Image.open(p).convert("RGB")) for p in paths] + [group]:
        a = [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence) for d in ref(img, 0)]
        b = ours.detections(img)
        assert [box for box, _ in a] == [box for box, _ in b]
        assert all(abs(x[1] - y[1]) <= 1e-3 for x, y in zip(a, b))
        found += len(a)
    assert found >= 15  # faces were found, including the three side by side


def test_tiled_pyramid_layout_keeps_levels_apart():
    from faceledger.vision.mmod import tiled_rects

    rects, rows, cols = tiled_rects(480, 640, 10, 11)
    assert rects[0] == (11, 11, 650, 490) and cols == 640 + 22
    for i, a in enumerate(rects):
        assert 0 <= a[0] <= a[2] < cols and 0 <= a[1] <= a[3] < rows
        for b in rects[i + 1 :]:  # no two levels share a pixel
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
