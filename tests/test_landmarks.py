"""DetectFaces' landmarks as the cloud API names them, from MediaPipe's face mesh (Apache-2.0),
fetched from npm with its integrity checked; dlib's 5 points stay the alignment points."""

from __future__ import annotations

import pytest

from faceledger import errors
from faceledger.service import api_model
from faceledger.vision.detection import LANDMARK_TYPES
from faceledger.vision.landmarks import ALL_TYPES, DEFAULT_TYPES


@pytest.fixture(scope="module")
def service(tmp_path_factory, settings, engine):
    from faceledger.governance.app import open_service

    return open_service(settings.replace(store=tmp_path_factory.mktemp("lm") / "s.sqlite"), engine=engine)


def test_default_gives_the_cloud_apis_five_and_all_its_thirty(service, lfw):
    for name, k in (("Colin_Powell", 1), ("Serena_Williams", 1), ("Gloria_Macapagal_Arroyo", 1)):
        (face,) = service.detect_faces(lfw.image(name, k)).face_details
        got = {m.type: (m.x, m.y) for m in face.landmarks}
        assert tuple(got) == DEFAULT_TYPES
        # the image's point of view, as the cloud API's: eyeLeft on the left; eyes over nose over mouth
        assert got["eyeLeft"][0] < got["nose"][0] < got["eyeRight"][0]
        assert got["mouthLeft"][0] < got["mouthRight"][0]
        assert max(got["eyeLeft"][1], got["eyeRight"][1]) < got["nose"][1] < min(got["mouthLeft"][1], got["mouthRight"][1])
        box = face.bounding_box
        for x, y in got.values():  # inside the face's box (with a margin)
            assert box.left - 0.05 < x < box.left + box.width + 0.05 and box.top - 0.05 < y < box.top + box.height + 0.05
    (face,) = service.detect_faces(lfw.image("Colin_Powell", 1), attributes=["ALL"]).face_details
    types = [m.type for m in face.landmarks]
    assert types == list(ALL_TYPES) == api_model.service_model().shape_for("LandmarkType").enum


def test_the_mesh_agrees_with_dlibs_alignment_points(engine, lfw):
    """The mesh's eye corners sit on dlib's 5-point eye corners (the points alignment uses, kept)."""
    import numpy as np

    d = engine.detect(lfw.image("Tony_Blair", 1), max_faces=1)  # Tony_Blair_0001 shows a bystander too
    (face,) = d.faces
    assert [m.type for m in face.landmarks] == list(LANDMARK_TYPES)  # alignment: dlib's 5, unchanged
    mesh = {m.type: np.array([m.x * d.width, m.y * d.height]) for m in face.face_landmarks}
    five = {m.type: np.array([m.x * d.width, m.y * d.height]) for m in face.landmarks}
    iod = np.linalg.norm(mesh["eyeRight"] - mesh["eyeLeft"])
    for mesh_type, dlib_type in (("leftEyeLeft", "leftEyeLeft"), ("rightEyeRight", "rightEyeRight")):
        assert np.linalg.norm(mesh[mesh_type] - five[dlib_type]) < 0.2 * iod, mesh_type  # a mirrored mapping would be ~1.5 IOD off


def test_the_mesh_package_is_checked_and_never_downloaded_in_tests(tmp_path):
    """The adversary: a tarball in the package cache that is not the pinned one (a planted file of
    the right name) is refused, not converted; and with downloads off nothing is fetched."""
    from faceledger.models import facemesh, zoo

    (tmp_path / "packages").mkdir()
    planted = tmp_path / "packages" / zoo.HUMAN_MODELS.file_name
    planted.write_bytes(b"not the package")
    with pytest.raises(errors.ModelFileError, match="does not match its registry integrity"):
        facemesh.onnx_file(tmp_path, tmp_path / "cache", allow_download=False)
    planted.unlink()
    with pytest.raises(errors.ModelFileError, match="faceledger models download"):
        facemesh.onnx_file(tmp_path, tmp_path / "cache", allow_download=False)
    assert not (tmp_path / "cache" / "onnx").exists() or not list((tmp_path / "cache" / "onnx").iterdir())
