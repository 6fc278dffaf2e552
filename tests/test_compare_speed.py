"""What makes a 1:1 comparison of two large photos cheaper (issue 25) without changing what it finds:
BlazeFace's tiles cut from one half-size copy find the boxes that resizing each tile did; ONNX
Runtime's optimised graph, saved once, gives the same templates and is never used for another
source; pool threads do not spin."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from faceledger import FaceEngine
from faceledger.models import sessions
from faceledger.models.blazeface import INPUT_SIZE, onnx_file
from faceledger.vision import blazeface


@pytest.fixture(scope="module")
def detector(settings):
    return blazeface.BlazeFaceDetector(settings.package_cache, settings.cache_dir, allow_download=False, threads=1)


def _per_tile_inputs(self, pixels):
    """The former batch: every view resized from the full image on its own (the reference)."""
    h, w = pixels.shape[:2]
    views = [(0, 0, max(h, w), False)] + [(x, y, s, True) for x, y, s in blazeface.tiles(h, w, self.tile)]
    batch = np.zeros((len(views), INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    for i, (x, y, side, _) in enumerate(views):
        crop = pixels[y:y + side, x:x + side]
        k = INPUT_SIZE / side
        cw, ch = max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))
        batch[i, :ch, :cw] = np.asarray(Image.fromarray(crop).resize((cw, ch), Image.BILINEAR), np.float32)
    return batch / 127.5 - 1.0, views


def _photos(lfw):
    """A 1 MP photo of one person (an LFW photo upscaled), and a 1152x864 group photo whose smallest
    face (~23 px) only the tiles find."""
    one = np.asarray(Image.open(lfw.image("Aaron_Eckhart", 1)).convert("RGB").resize((1000, 1000), Image.BICUBIC))
    canvas = Image.new("RGB", (1152, 864), (90, 92, 88))
    for (name, k), side, at in ((("Colin_Powell", 1), 250, (40, 40)), (("Serena_Williams", 1), 125, (330, 300)),
                                (("Aaron_Eckhart", 1), 56, (800, 480))):
        canvas.paste(Image.open(lfw.image(name, k)).convert("RGB").resize((side, side), Image.BILINEAR), at)
    return [one, np.asarray(canvas)]


def test_tiles_from_one_half_size_copy_find_the_boxes_resizing_each_tile_found(detector, lfw):
    reference = blazeface.BlazeFaceDetector.__new__(blazeface.BlazeFaceDetector)
    reference.__dict__.update(detector.__dict__)
    reference._inputs = _per_tile_inputs.__get__(reference)
    for pixels in _photos(lfw):
        new = sorted(detector.propose(pixels), key=lambda c: -(c.right - c.left))
        old = sorted(reference.propose(pixels), key=lambda c: -(c.right - c.left))
        assert len(new) == len(old) > 0
        for a, b in zip(new, old):
            side = b.right - b.left
            assert max(abs(a.left - b.left), abs(a.top - b.top), abs(a.right - b.right), abs(a.bottom - b.bottom)) \
                < 0.1 * side + 1, (a, b)  # 2 px of the ~20 px face, under 1% of the large one
            assert a.score > 0 and abs(a.score - b.score) < 0.5


def test_the_optimised_graph_is_saved_once_and_gives_the_same_outputs(settings, tmp_path):
    source = onnx_file(settings.package_cache, settings.cache_dir, allow_download=False)
    x = np.random.default_rng(0).uniform(-1, 1, (2, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.float32)
    plain = sessions.open_session(source, 1).run(None, {"input": x})
    first = sessions.open_session(source, 1, tmp_path)
    saved = sessions.optimized_path(source, tmp_path)
    assert saved.is_file()
    again = sessions.open_session(source, 1, tmp_path)  # loads the saved graph, optimisation off
    for a, b, c in zip(plain, first.run(None, {"input": x}), again.run(None, {"input": x})):
        assert np.allclose(a, b, atol=1e-5) and np.allclose(a, c, atol=1e-5)
    # a damaged copy is not trusted: made again, and the session still runs
    saved.write_bytes(saved.read_bytes()[:1000])
    repaired = sessions.open_session(source, 1, tmp_path)
    assert np.allclose(repaired.run(None, {"input": x})[0], plain[0], atol=1e-5)
    assert saved.stat().st_size > 1000


def test_a_saved_graph_is_never_used_for_another_source(settings, tmp_path):
    """The copy is named by its source (path, device, inode, size, modification and change times),
    ONNX Runtime's version and the CPU's flags: a source rewritten in place gets a copy of its own."""
    source = tmp_path / "model.onnx"
    source.write_bytes(onnx_file(settings.package_cache, settings.cache_dir, allow_download=False).read_bytes())
    before = sessions.optimized_path(source, tmp_path)
    source.write_bytes(source.read_bytes()[:-1] + source.read_bytes()[-1:])  # rewritten in place
    os.utime(source, ns=(0, 1))
    assert sessions.optimized_path(source, tmp_path) != before


def test_the_engines_pool_threads_sleep_between_runs(engine, detector):
    """Spinning threads took the CPU other work needed on shared cores (compare 662 vs 290 ms at load 15)."""
    for s in (engine._embedder._session, engine.face_mesh._session, detector._net._session):
        assert s.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


# --- landmarks without dlib's 0.2 s loader ----------------------------------------------------------

@pytest.fixture(scope="module")
def trees(settings):
    from faceledger.models import files
    from faceledger.models.dlib import shape_predictor

    return shape_predictor.RegressionTrees(shape_predictor.cached(files.model_path(files.SHAPE_5), settings.cache_dir))


def test_the_regression_trees_in_numpy_give_dlibs_points_exactly(trees, lfw):
    """On real faces, at 250 px and at 1 MP, for the detector's box and boxes shifted off it: every
    point equal to dlib's (adding the leaves in another order, or averaging the channels in float,
    moves some by a pixel)."""
    import dlib

    from faceledger.models import files
    from faceledger.vision.detection import HogDetector

    predictor = dlib.shape_predictor(str(files.model_path(files.SHAPE_5)))
    hog = HogDetector(1)
    paths = lfw.images()[::441][:30]
    compared = 0
    for i, p in enumerate(paths):
        img = Image.open(p).convert("RGB")
        (c,) = sorted(hog.propose(np.asarray(img)), key=lambda c: -c.score)[:1] or [None]
        if c is None:
            continue
        k = 4 if i % 3 == 0 else 1
        pixels = np.asarray(img.resize((250 * k, 250 * k), Image.BICUBIC)) if k > 1 else np.asarray(img)
        l, t, r, b = (round(v * k) for v in (c.left, c.top, c.right - 1, c.bottom - 1))
        for dx, dy in ((0, 0), (7, -5), (-9, 4)):
            box = (l + dx, t + dy, r + dx, b + dy)
            ours = trees.points(pixels, *box)
            theirs = np.array([(q.x, q.y) for q in predictor(pixels, dlib.rectangle(*box)).parts()], float)
            assert np.array_equal(ours, theirs), (p.name, box, ours, theirs)
            compared += 1
    assert compared >= 60


def test_a_process_loads_dlibs_predictor_only_after_its_first_faces(settings, lfw):
    from faceledger.vision.detection import Landmarker

    marks = Landmarker(settings.cache_dir)
    pixels = np.asarray(Image.open(lfw.image("Aaron_Eckhart", 1)).convert("RGB"))
    first = [marks.points(pixels, 70, 70, 180, 180) for _ in range(marks.quick)]
    assert marks._predictor is None  # a one-off comparison (2-3 faces) never pays dlib's loader
    later = marks.points(pixels, 70, 70, 180, 180)
    assert marks._predictor is not None  # a server or an index run pays it once
    assert all(np.array_equal(f, later) for f in first)


def test_compare_imports_neither_the_evaluation_layer_nor_ssl(settings, lfw, tmp_path):
    """The dataset and audit layers (and the ssl a download needs) are imported by the commands that
    use them, not by every command: `faceledger compare` goes without them."""
    import json
    import subprocess
    import sys

    probe = ("import json, runpy, sys\nsys.argv = ['faceledger', *sys.argv[1:]]\ntry:\n"
             "    runpy.run_module('faceledger', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('@@' + json.dumps(sorted(sys.modules)))\n")
    a = tmp_path / "a.jpg"
    Image.open(lfw.image("Aaron_Eckhart", 1)).resize((1000, 1000), Image.BICUBIC).save(a, quality=92)
    FaceEngine(settings.replace(detector="blazeface")).detect(a)  # converted once, as from a user's second command on
    import faceledger.interfaces.cli.main  # noqa: F401  the options' descriptions, read from botocore once
    done = subprocess.run([sys.executable, "-c", probe, "compare", str(a), str(a)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "FACELEDGER_DETECTOR": "blazeface"})
    modules = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("@@"))[2:])
    assert "faceledger.vision.engine" in modules, done.stderr  # it did compare
    assert not [m for m in modules if m.startswith("faceledger.evaluation") or m in ("ssl", "urllib.request")]
