"""Models as plug-ins: an ONNX model with a manifest runs through the engine, the service and the
calibration without a line of package code, collections stay bound to their model, a wrong
manifest fails at `models add`, and an uncalibrated model cannot identify.

The plug-in used here is a real face network: dlib's ResNet exported to ONNX, registered under a
new name with its own manifest (ArcFace-family alignment is exercised by tests/test_faceres.py)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from faceledger import errors
from faceledger.models.dlib.entry import onnx_file
from faceledger.models.manifest import Alignment, Manifest, ManifestError
from faceledger.models.registry import ModelNotFoundError, Registry
from faceledger.service.operations import FaceService
from faceledger.store import SQLiteStore
from faceledger.vision.engine import FaceEngine

PLUGIN = Manifest(name="resnet-plugin", dimension=128, input_size=(150, 150), alignment=Alignment("dlib-chip", 0.25),
                  input="rgb", licence="CC0-1.0", source="dlib's ResNet exported to ONNX (test plug-in)")
PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon"]


@pytest.fixture
def registry(tmp_path, settings):
    return Registry(tmp_path / "models", settings.cache_dir)


@pytest.fixture
def plugin_settings(settings, tmp_path):
    return settings.replace(models_dir=tmp_path / "models")


@pytest.fixture
def onnx_path(settings):
    return onnx_file(settings.cache_dir)


def test_a_manifest_that_disagrees_with_its_graph_fails_at_add(registry, onnx_path):
    with pytest.raises(ManifestError, match=r"input_size \[112, 112\]"):
        registry.add(onnx_path, dataclasses.replace(PLUGIN, input_size=(112, 112)))
    with pytest.raises(ManifestError, match="dimension 512"):
        registry.add(onnx_path, dataclasses.replace(PLUGIN, dimension=512))
    with pytest.raises(ManifestError, match="not an input"):
        registry.add(onnx_path, dataclasses.replace(PLUGIN, input="pixels"))
    with pytest.raises(ManifestError, match="unknown field"):
        Manifest.from_dict({**PLUGIN.to_dict(), "gender_head": "out2"})
    assert not (registry.root / PLUGIN.name).exists(), "a refused model leaves nothing behind"


def test_a_failed_check_on_real_faces_leaves_nothing_behind(registry, onnx_path):
    def refuse(staged):
        raise errors.ModelFileError("does not tell faces apart")

    with pytest.raises(errors.ModelFileError):
        registry.add(onnx_path, PLUGIN, check=refuse)
    assert [p.name for p in registry.root.iterdir()] == []
    with pytest.raises(ModelNotFoundError):
        registry.get(PLUGIN.name)


def test_an_added_model_embeds_real_faces_with_its_own_id(registry, onnx_path, settings, plugin_settings, lfw):
    entry = registry.add(onnx_path, PLUGIN)
    assert entry.id.name == "resnet-plugin" and len(entry.id.version) == 12
    assert [e.name for e in registry.entries()][-1] == "resnet-plugin"
    plugin = FaceEngine(plugin_settings, model="resnet-plugin")
    default = FaceEngine(settings)
    a, b = lfw.image("Colin_Powell", 1), lfw.image("Colin_Powell", 2)
    ta, tb = plugin.embed(a)[0].template, plugin.embed(b)[0].template
    assert ta.model == entry.id and ta.vector.shape == (128,)
    # the same network without mirror averaging: close to the default's templates, but never comparable
    td = default.embed(a)[0].template
    assert float(np.dot(ta.vector, td.vector)) > 0.95
    with pytest.raises(errors.ModelMismatchError):
        ta.similarity(td)
    assert ta.similarity(tb) > 0.8


def test_models_default_and_remove(registry, onnx_path):
    registry.add(onnx_path, PLUGIN)
    assert registry.default_name() == "dlib-resnet-v1-flip"
    registry.set_default("resnet-plugin")
    assert registry.default_name() == "resnet-plugin"
    registry.remove("resnet-plugin")
    assert registry.default_name() == "dlib-resnet-v1-flip"
    with pytest.raises(errors.InvalidParameterError, match="built in"):
        registry.remove("dlib-resnet-v1-flip")


@pytest.fixture
def plugin_service(registry, onnx_path, plugin_settings, tmp_path):
    registry.add(onnx_path, PLUGIN)
    store = SQLiteStore(tmp_path / "store.sqlite")
    yield FaceService(FaceEngine(plugin_settings), store)
    store.close()


def test_collections_are_bound_to_their_model(plugin_service, lfw):
    svc = plugin_service
    made = svc.create_collection("plugin", model="resnet-plugin")
    assert made.face_model_version.startswith("resnet-plugin@")
    svc.create_collection("default")
    r = svc.index_faces("plugin", lfw.image("Tony_Blair", 1), external_image_id="Tony_Blair")
    assert r.face_model_version.startswith("resnet-plugin@")
    # a template made by another model is refused by the collection
    from faceledger.service.operations import prepare_index

    prepared = prepare_index(svc.engine, lfw.image("Tony_Blair", 2))
    with pytest.raises(errors.InvalidParameterError, match="holds resnet-plugin@"):
        svc.commit_index("plugin", prepared)
    # a collection whose model's weights changed since is refused, not silently mixed
    svc.store.create_collection("stale", "resnet-plugin@000000000000", ndim=128)
    with pytest.raises(errors.ModelMismatchError, match="not installed"):
        svc.index_faces("stale", lfw.image("Tony_Blair", 2))


def test_an_uncalibrated_model_compares_but_never_identifies(plugin_service, lfw):
    svc = plugin_service
    svc.create_collection("plugin", model="resnet-plugin")
    r = svc.index_faces("plugin", lfw.image("Tony_Blair", 1))
    face_id = r.face_records[0].face.face_id
    with pytest.raises(errors.UncalibratedModelError, match="calibration fit --model resnet-plugin"):
        svc.search_faces_by_image("plugin", lfw.image("Tony_Blair", 2))
    with pytest.raises(errors.UncalibratedModelError):
        svc.search_faces("plugin", face_id)
    with pytest.raises(errors.UncalibratedModelError):
        svc.search_users_by_image("plugin", lfw.image("Tony_Blair", 2))


def test_a_model_calibrated_by_the_command_identifies(plugin_service, plugin_settings, lfw, tmp_path):
    """`calibration fit --model` on a labelled manifest writes into the model's folder, and the
    service then reports false match rates for that model's collections."""
    from faceledger.evaluation.calibration_fit import dumps, fit, manifest_sources, validate
    from faceledger.evaluation.protocols import acquire
    from faceledger.scoring.calibration import Calibration, fitted_name

    rows = ["path,group,subject"]
    for name, images in list(lfw.people().items())[:150]:
        rows += [f"{p},all,{name}" for p in images[:3]]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    settings = plugin_settings.replace(model="resnet-plugin")
    sources = manifest_sources(manifest, lambda title, paths, **kw: acquire(paths, settings, workers=1, **kw))
    entry = Registry.of(settings).get("resnet-plugin")
    content, held = fit(sources, str(entry.id))
    content["validation"] = validate(Calibration.from_dict(content), held)
    (entry.folder / fitted_name()).write_text(dumps(content))

    svc = FaceService(FaceEngine(plugin_settings), plugin_service.store)
    svc.create_collection("plugin", model="resnet-plugin")
    for name in PEOPLE:
        svc.index_faces("plugin", lfw.image(name, 1), external_image_id=name)
    hits = svc.search_faces_by_image("plugin", lfw.image("Colin_Powell", 2), face_match_threshold=0).face_matches
    assert hits[0].face.external_image_id == "Colin_Powell"
    assert hits[0].false_match_rate is not None and hits[0].false_match_rate < 1e-2
    assert hits[-1].false_match_rate > hits[0].false_match_rate


def test_models_cli_lists_adds_and_refuses(tmp_path, onnx_path, monkeypatch, lfw):
    from typer.testing import CliRunner

    from faceledger.interfaces.cli.main import app

    monkeypatch.setenv("FACELEDGER_MODELS_DIR", str(tmp_path / "models"))
    runner = CliRunner()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**PLUGIN.to_dict(), "dimension": 256}))
    r = runner.invoke(app, ["models", "add", str(onnx_path), "--manifest", str(bad), "--json"])
    assert r.exit_code != 0 and "dimension 256" in r.output
    good = tmp_path / "good.json"
    good.write_text(PLUGIN.dumps())
    r = runner.invoke(app, ["models", "add", str(onnx_path), "--manifest", str(good), "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).output)["Models"]
    plugin = next(m for m in listed if m["Name"] == "resnet-plugin")
    assert plugin["Calibration"] == {"none": "none", "cohort": "none"} and plugin["Licence"] == "CC0-1.0"
    assert next(m for m in listed if m["Name"] == "dlib-resnet-v1-flip")["Calibration"]["none"] == "shipped"
    a, b = lfw.image("Colin_Powell", 1), lfw.image("Colin_Powell", 2)
    r = runner.invoke(app, ["compare", str(a), str(b), "--model", "resnet-plugin", "--threshold", "50", "--json"])
    data = json.loads(r.output)
    assert data["Model"].startswith("resnet-plugin@") and data["FaceMatches"]
    assert "FalseMatchRate" not in data["FaceMatches"][0]  # uncalibrated: no rate is claimed


def test_an_engine_for_another_model_reads_that_models_calibration(registry, onnx_path, plugin_settings):
    """`from faceledger import FaceEngine` scores on the calibrated scale; its twin for another
    model must not carry this model's calibration over (the plug-in has none: no rates)."""
    from faceledger import FaceEngine as CalibratedEngine

    registry.add(onnx_path, PLUGIN)
    engine = CalibratedEngine(plugin_settings)
    assert engine.scoring is not None and engine.scoring.calibration.model.startswith("dlib-resnet-v1-flip@")
    twin = engine.with_model("resnet-plugin")
    assert twin.model.name == "resnet-plugin" and twin.scoring is None
    assert engine.scoring is not None  # the original keeps its own
