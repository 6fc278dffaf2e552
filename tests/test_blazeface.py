"""BlazeFace (MediaPipe, Apache-2.0) as a detector: converted from the pinned package on first use,
never downloaded in tests; finds real LFW faces where HOG does, and every face of a group photo,
small ones included (its tiles), once each."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceledger import FaceEngine, Settings, errors
from faceledger.vision import blazeface


@pytest.fixture(scope="module")
def detector(settings):
    return blazeface.BlazeFaceDetector(settings.package_cache, settings.cache_dir, allow_download=False, threads=1)


@pytest.fixture(scope="module")
def blaze_engine(settings):
    return FaceEngine(settings.replace(detector="blazeface", landmark_model="none"))


def _iou(a, b):
    l, t, r, bt = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, r - l) * max(0.0, bt - t)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_anchors_and_decoding_follow_mediapipe():
    a = blazeface.anchors()
    assert a.shape == (896, 2)
    assert np.allclose(a[0], a[1]) and np.allclose(a[0], (1 / 32, 1 / 32))  # 2 per 16x16 cell
    assert np.allclose(a[512], (1 / 16, 1 / 16)) and np.allclose(a[512:518], a[512])  # 6 per 8x8 cell
    raw = np.zeros((896, 16), np.float32)
    raw[512] = [25.6, -12.8, 64, 128] + [0] * 12  # centre moved by (0.1, -0.05) of the input; 0.25 x 0.5
    logits = np.full(896, -10.0, np.float32)
    logits[512] = 3.0
    boxes, scores = blazeface.decode(logits, raw, a, 0.5)
    assert len(boxes) == 1 and scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    cx, cy = 1 / 16 + 0.1, 1 / 16 - 0.05
    assert np.allclose(boxes[0], [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25])


def test_weighted_nms_merges_a_cluster_into_its_weighted_mean():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    merged = blazeface.weighted_nms(boxes, np.array([0.9, 0.3, 0.6], np.float32))
    assert len(merged) == 2 and merged[0][1] == pytest.approx(0.9)
    assert np.allclose(merged[0][0], [0.25, 0.25, 10.25, 10.25])  # (0.9 x 0 + 0.3 x 1) / 1.2


def test_it_finds_lfw_faces_where_hog_does(detector, lfw):
    from faceledger.vision.detection import HogDetector

    hog = HogDetector(1)
    paths = lfw.images()[::1300][:10]
    for p in paths:
        pixels = np.asarray(Image.open(p).convert("RGB"))
        (h,) = sorted(hog.propose(pixels), key=lambda c: -c.score)[:1]
        found = detector.propose(pixels)
        assert found and found[0].score > 0, p.name
        best = max(found, key=lambda c: c.score)
        # mapped onto HOG's box convention (what dlib's landmark predictor was trained on)
        assert _iou((best.left, best.top, best.right, best.bottom), (h.left, h.top, h.right, h.bottom)) > 0.6, p.name


def _group(lfw, small=56, size=(1152, 864)):
    """A 1 MP group photo: three LFW photos at 250, 125 and 56 px (faces ~90, ~52, ~23 px), one of
    them across the tiles' borders (photos with no second face at their edges)."""
    canvas = Image.new("RGB", size, (90, 92, 88))
    for (name, k), side, at in ((("Colin_Powell", 1), 250, (40, 40)), (("Serena_Williams", 1), 125, (330, 300)),
                                (("Aaron_Eckhart", 1), small, (800, 480))):
        canvas.paste(Image.open(lfw.image(name, k)).convert("RGB").resize((side, side), Image.BILINEAR), at)
    return np.asarray(canvas)


def test_a_group_photo_gives_every_face_once_the_small_ones_through_its_tiles(detector, lfw):
    pixels = _group(lfw)
    found = sorted(detector.propose(pixels), key=lambda c: -(c.right - c.left))
    assert len(found) == 3, [(round(c.left), round(c.top), round(c.right - c.left)) for c in found]
    centres = [((c.left + c.right) / 2, (c.top + c.bottom) / 2) for c in found]
    seeds = [((c.seed[0] + c.seed[2]) / 2, (c.seed[1] + c.seed[3]) / 2) for c in found]  # from the keypoints
    for (x, y), (sx, sy), (left, top, side) in zip(centres, seeds, ((40, 40, 250), (330, 300, 125), (800, 480, 56))):
        assert left < x < left + side and top < y < top + side
        assert left < sx < left + side and top < sy < top + side  # tiles' keypoints map back like their boxes
    # the adversary: without tiles (one view of the whole photo: ~5 px at the network) the ~23 px face is lost
    whole = blazeface.BlazeFaceDetector.__new__(blazeface.BlazeFaceDetector)
    whole.__dict__.update(detector.__dict__, tile=10**6)
    assert len(whole.propose(pixels)) < 3


def test_it_is_the_default_with_a_template_of_the_same_person_as_hogs(blaze_engine, settings, lfw):
    """``detector = "blazeface"`` is the default: the engine's faces say so, and the template (dlib's
    landmarks on the mapped box, then the face network) matches HOG's for the same photo."""
    assert Settings().detector == "blazeface" and Settings().fallback_detector == "mmod"
    src = lfw.image("Aaron_Eckhart", 1)
    (face,) = blaze_engine.detect(src).faces
    assert face.detector == "blazeface" and face.confidence > 50
    hog = FaceEngine(settings.replace(detector="hog", landmark_model="none"))
    a, b = blaze_engine.embed(src), hog.embed(src)
    assert b[0].face.detector == "hog"
    assert float(np.dot(a[0].template.vector, b[0].template.vector)) > 0.95
    every = blaze_engine.detect(_group(lfw, small=80)).faces  # ~35 px: the engine detects on a 1024 copy
    assert len(every) == 3 and all(f.detector == "blazeface" for f in every)


def test_an_unknown_detector_is_refused_with_the_choices(settings):
    with pytest.raises(errors.InvalidParameterError, match="hog, mmod, blazeface"):
        FaceEngine(settings.replace(detector="hog", fallback_detector="blaze"))


def test_the_model_is_never_downloaded_in_tests(tmp_path):
    """With downloads off and no package in the cache, the detector names the command to run."""
    with pytest.raises(errors.ModelFileError, match="faceledger models download"):
        blazeface.BlazeFaceDetector(tmp_path, tmp_path, allow_download=False)


#: LFW faces turned 32-40 degrees by the face mesh's yaw (6 of 350 sampled at |yaw| >= 30).
TURNED = [("Cindy_Zagorski", 1), ("Horacio_de_Jesus_Montoya", 1), ("Mohammed_Al-Douri", 4), ("Norm_Coleman", 5),
          ("Robin_Johansen", 1), ("Vladimir_Putin", 26)]


def test_on_turned_heads_the_five_points_follow_the_keypoints_not_the_head_box(blaze_engine, engine, detector, lfw):
    """dlib's 5-point predictor was trained on HOG-like boxes; BlazeFace's head box on a turned head
    sits beside the face and drags the points with it (LFW View 2 cost). The shipped points are
    seeded from BlazeFace's keypoints: they must land nearer HOG-seeded points than head-box-seeded
    ones would."""
    from faceledger.vision.detection import HogDetector, Landmarker

    hog, landmarker = HogDetector(1), Landmarker()
    head_err, shipped_err = [], []
    for name, n in TURNED:
        path = lfw.image(name, n)
        assert abs(engine.detect(path).faces[0].quality.pose.yaw) >= 30
        px = np.asarray(Image.open(path).convert("RGB"))
        h, w = px.shape[:2]
        ref_box = max(hog.propose(px), key=lambda c: c.score)
        ref = landmarker.points(px, ref_box.left, ref_box.top, ref_box.right, ref_box.bottom)
        c = max(detector.propose(px), key=lambda c: c.score)
        head = landmarker.points(px, c.left, c.top, c.right, c.bottom)
        shipped = np.array([(p.x * w, p.y * h) for p in blaze_engine.detect(path).faces[0].landmarks])
        head_err.append(np.linalg.norm(head - ref, axis=1).mean())
        shipped_err.append(np.linalg.norm(shipped - ref, axis=1).mean())
    assert np.mean(shipped_err) < 0.6 * np.mean(head_err), (shipped_err, head_err)
