"""What makes faceledger fast where a user waits (issue 25): `compare` and `detect` load only what
they use and still pass the gate; one thread setting sizes every pool; detection of a large image
runs on a small copy, with a pyramid so a face too small for the copy is still found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceledger import FaceEngine, Settings
from faceledger.models import threads

#: Modules a 1:1 comparison never needs: the cloud API's model (botocore), the ANN index (faiss),
#: the HTTP stack, the TF.js converter (onnx) and the dataset/audit layer.
HEAVY = ("botocore", "faiss", "fastapi", "starlette", "uvicorn", "onnx", "pandas", "scipy")

_PROBE = """
import json, runpy, sys
sys.argv = ["faceledger", *sys.argv[1:]]
try:
    runpy.run_module("faceledger", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("@@" + json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


@pytest.fixture(scope="module")
def converted(engine, lfw):
    """The engine's models converted once into the cache (a first run's one-time cost), as a user
    has them from the second command on."""
    engine.detect(lfw.image("Aaron_Eckhart", 1))
    import faceledger.interfaces.cli.main  # noqa: F401  the options' descriptions, read from botocore once
    return engine


def _run_cli(*args: str, env: dict | None = None) -> tuple[int, set[str], str]:
    p = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})})
    line = next(x for x in p.stdout.splitlines() if x.startswith("@@"))
    found = json.loads(line[2:])
    return found["code"], set(found["modules"]), p.stdout + p.stderr


def _big(path: Path, folder: Path, side: int = 1000) -> Path:
    """A 1-megapixel copy of a real LFW photo (as a phone photo would be)."""
    target = folder / f"{path.stem}-{side}.jpg"
    Image.open(path).resize((side, side), Image.BICUBIC).save(target, quality=92)
    return target


def test_compare_loads_only_what_it_uses_and_still_passes_the_gate(converted, lfw, tmp_path, settings):
    from faceledger.governance.app import ledger_of

    a, b = _big(lfw.image("Aaron_Eckhart", 1), tmp_path), _big(lfw.image("Aaron_Eckhart", 1), tmp_path, 900)
    before = ledger_of(settings).last("CompareFaces")
    code, modules, output = _run_cli("compare", str(a), str(b))
    assert code in (0, None), output
    assert not modules & set(HEAVY), f"`faceledger compare` imported {sorted(modules & set(HEAVY))}"
    # the gate was passed: the comparison is in the ledger, decided by the policy (a comparison
    # that skipped the gate to save its imports would leave no entry)
    last = ledger_of(settings).last("CompareFaces")
    assert last is not None and (before is None or last.seq > before.seq)


def test_detect_loads_only_what_it_uses(converted, face_path):
    code, modules, output = _run_cli("detect", str(face_path))
    assert code in (0, None), output
    assert not modules & set(HEAVY), f"`faceledger detect` imported {sorted(modules & set(HEAVY))}"


# --- threads ---------------------------------------------------------------------------------------


def test_threads_default_to_cores_per_worker_process(monkeypatch):
    monkeypatch.delenv(threads.WORKERS_ENV, raising=False)
    assert threads.resolve(3) == 3
    assert threads.resolve(0) == threads.cores()
    assert threads.resolve(0, workers=threads.cores() * 4) == 1  # never 0
    monkeypatch.setenv(threads.WORKERS_ENV, "2")  # what `serve --workers 2` tells its workers
    assert threads.resolve(0) == max(1, threads.cores() // 2)


def test_one_thread_setting_sizes_onnx_runtime_faiss_and_blas(settings):
    from threadpoolctl import threadpool_info

    engine = FaceEngine(settings.replace(threads=1))
    try:
        assert engine.threads == 1
        assert engine._embedder._session.get_session_options().intra_op_num_threads == 1
        assert threads.faiss_module().omp_get_max_threads() == 1
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
    finally:
        threads.apply(threads.resolve(settings.threads))


def test_the_former_setting_name_is_still_read(monkeypatch):
    monkeypatch.setenv("FACELEDGER_ONNX_THREADS", "3")
    assert Settings.load().threads == 3
    assert Settings.from_mapping({"onnx_threads": 2}).threads == 2


# --- detection pyramid -----------------------------------------------------------------------------


def _canvas(face: Path, face_side: int, side: int = 1400) -> np.ndarray:
    """A real LFW photo shrunk to ``face_side`` pixels and placed on a plain ``side``-pixel canvas:
    one small face in a large photo."""
    img = Image.open(face).convert("RGB").resize((face_side, face_side), Image.BICUBIC)
    canvas = Image.new("RGB", (side, side), (120, 118, 112))
    canvas.paste(img, (side // 3, side // 2))
    return np.asarray(canvas)


def test_a_large_photo_is_searched_coarse_to_fine(engine):
    finder = engine._finder
    assert finder.levels(250) == [250]  # LFW, FairFace: one level, the image itself, as before
    assert finder.levels(1000) == [320, 640, 1000]
    assert finder.levels(4000) == [320, 640, 1024]


def test_a_small_face_in_a_large_photo_is_found_by_a_finer_level(engine, face_path):
    # the face is ~90 px of a 1400 px photo: ~20 px in the 320 copy, under what HOG finds there
    pixels = _canvas(face_path, 200)
    for max_faces in (1, None):  # the largest face only (the pyramid), and every face (the finest copy)
        faces = engine.detect(pixels, max_faces=max_faces).faces
        assert len(faces) == 1 and faces[0].detector == "blazeface"  # the default, not its fallback
        assert faces[0].quality.face_size >= 60


def test_a_group_photo_keeps_its_small_faces(engine, lfw):
    """Every face is searched on the finest copy: a small face beside a large one (~260 and ~90 px
    of a 1400 px photo) is found, as DetectFaces and IndexFaces users expect; asking for the largest
    face only may stop at the coarse copy, which shows the large one."""
    canvas = Image.new("RGB", (1400, 1400), (120, 118, 112))
    canvas.paste(Image.open(lfw.image("Aaron_Eckhart", 1)).convert("RGB").resize((600, 600), Image.BICUBIC), (60, 300))
    canvas.paste(Image.open(lfw.image("Colin_Powell", 1)).convert("RGB").resize((200, 200), Image.BICUBIC), (1000, 900))
    pixels = np.asarray(canvas)
    every = engine.detect(pixels).faces
    assert len(every) == 2 and every[0].quality.face_size > 2 * every[1].quality.face_size
    largest = engine.detect(pixels, max_faces=1).faces
    assert len(largest) == 1 and abs(largest[0].bounding_box.left - every[0].bounding_box.left) < 0.02


def test_a_face_found_on_the_coarse_copy_keeps_full_resolution_landmarks_and_its_identity(engine, lfw, tmp_path):
    """The 1 MP copy is detected at 320 px, but its landmarks, chip and template come from the full
    image: the same face (HOG's boxes snap to its own levels, so the landmarks are compared: within
    1.5% of the image) and the same person (above 80, a false match rate of 2.5e-6) as the
    original 250 px photo."""
    src = lfw.image("Aaron_Eckhart", 1)
    big = _big(src, tmp_path)
    small_face, big_face = engine.detect(src).faces[0], engine.detect(big, max_faces=1).faces[0]
    for a, b in zip(small_face.landmarks, big_face.landmarks):
        assert abs(a.x - b.x) < 0.015 and abs(a.y - b.y) < 0.015, a.type
    r = engine.compare(src, big)
    assert r.matches and r.matches[0].similarity > 80  # the cloud API default: FMR 2.5e-6 (the single 1024 copy: 86.5)


def test_one_level_is_the_former_behaviour(settings, face_path):
    """detect_pyramid_max_side = detect_max_side: one copy, as before issue 25."""
    one = FaceEngine(settings.replace(detect_max_side=1024, detect_pyramid_max_side=1024, landmark_model="none"))
    assert one._finder.levels(1400) == [1024]
    assert len(one.detect(_canvas(face_path, 200)).faces) == 1


def test_the_cached_hog_detector_finds_what_dlibs_own_does(lfw, fairface, tmp_path):
    """The HOG model saved once into the cache (loads in ~1 ms instead of ~0.3 s) is the same
    detector: the same boxes and scores on real faces, all five of its sub-detectors included."""
    import dlib

    from faceledger.vision.detection import _frontal_face_detector

    made = _frontal_face_detector(tmp_path)  # decoded and saved
    cached = _frontal_face_detector(tmp_path)  # read back
    assert list((tmp_path / "hog").iterdir())
    reference = dlib.get_frontal_face_detector()
    paths = [ps[0] for ps in list(lfw.people().values())[:15]] + [r.path for r in fairface.records()[:15]]
    kinds = set()
    for p in paths:
        img = np.asarray(Image.open(p).convert("RGB"))
        want = reference.run(img, 1, 0.0)
        kinds |= set(want[2])
        for got in (made.run(img, 1, 0.0), cached.run(img, 1, 0.0)):
            assert list(got[0]) == list(want[0]) and np.allclose(got[1], want[1]) and list(got[2]) == list(want[2])
    assert len(kinds) >= 2  # more than the frontal sub-detector fired


def test_the_fallback_is_loaded_only_when_needed(settings, face_path):
    engine = FaceEngine(settings.replace(landmark_model="none"))
    fallback = engine._finder.detectors[1]
    engine.detect(face_path)  # the primary (BlazeFace) finds it
    assert fallback._detector is None
    with pytest.raises(Exception, match="unknown detector"):
        FaceEngine(settings.replace(fallback_detector="bogus"))
