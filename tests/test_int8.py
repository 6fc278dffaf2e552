"""The opt-in int8 face network (dlib-resnet-v1-flip-int8): its templates stay close to fp32's but
carry their own model id, so the two are never compared; its file is rebuilt byte for byte from the
shipped ranges and cached under a name of its own; damaged ranges fail with a typed error; and a
collection bound to it indexes and searches real faces with its own calibration."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from faceledger import errors
from faceledger.models import int8
from faceledger.models.dlib import entry as dlib_entry
from faceledger.models.registry import Registry
from faceledger.service.operations import FaceService
from faceledger.store import SQLiteStore

INT8 = "dlib-resnet-v1-flip-int8"
PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon"]


@pytest.fixture(scope="module")
def int8_engine(engine):
    return engine.with_model(INT8)


@pytest.fixture(scope="module")
def fp32_source(settings):
    return dlib_entry.onnx_file(settings.cache_dir)


def test_int8_templates_agree_with_fp32_but_are_never_compared_with_them(engine, int8_engine, lfw):
    assert int8_engine.model.name == INT8 and int8_engine.model != engine.model
    assert int8_engine.model.version != engine.model.version  # the digest of the int8 file, not of dlib's .dat
    cosines = []
    for name in PEOPLE:
        face = engine.detect(lfw.image(name, 1)).faces[0]  # one chip, through both networks
        a, b = engine.embed_faces([face])[0].template, int8_engine.embed_faces([face])[0].template
        cosines.append(float(np.dot(a.vector, b.vector)))
        with pytest.raises(errors.ModelMismatchError):
            a.similarity(b)
    assert min(cosines) >= 0.998, cosines


def test_the_int8_file_is_rebuilt_byte_for_byte_under_its_own_name(fp32_source, tmp_path):
    built = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        source = tmp_path / run / fp32_source.name
        shutil.copyfile(fp32_source, source)
        path = int8.quantized(source, "dlib-resnet-v1")
        assert path.parent == source.parent and path.name != source.name and "-int8-" in path.name
        built.append(path)
    assert built[0].name == built[1].name and built[0].read_bytes() == built[1].read_bytes()
    again = int8.quantized(tmp_path / "a" / fp32_source.name, "dlib-resnet-v1")
    assert again == built[0] and again.stat().st_mtime_ns == built[0].stat().st_mtime_ns  # cached, not rebuilt
    # other ranges make another file (another model id), never the cached one
    doc = json.loads(int8.RANGES_FILE.read_text())
    tensor = sorted(doc["models"]["dlib-resnet-v1"]["ranges"])[0]
    doc["models"]["dlib-resnet-v1"]["ranges"][tensor][1] *= 2
    refit = tmp_path / "refit.json"
    refit.write_text(json.dumps(doc))
    assert int8.int8_path(built[0].with_name(fp32_source.name), "dlib-resnet-v1", refit).name != built[0].name


def _damage(tmp_path, name, edit) -> object:
    doc = json.loads(int8.RANGES_FILE.read_text())
    edit(doc["models"]["dlib-resnet-v1"]["ranges"])
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def test_damaged_ranges_fail_with_a_typed_error(fp32_source, tmp_path):
    source = tmp_path / fp32_source.name
    shutil.copyfile(fp32_source, source)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(int8.RANGES_FILE.read_text()[:500])
    first = sorted(json.loads(int8.RANGES_FILE.read_text())["models"]["dlib-resnet-v1"]["ranges"])[0]
    conv_input = next(k for k in json.loads(int8.RANGES_FILE.read_text())["models"]["dlib-resnet-v1"]["ranges"]
                      if k.startswith("normalised"))
    cases = {
        "not JSON": (truncated, "holds no ranges"),
        "reversed": (_damage(tmp_path, "reversed", lambda r: r.__setitem__(first, [1.0, -1.0])), "not \\[lowest, highest\\]"),
        "stray": (_damage(tmp_path, "stray", lambda r: r.__setitem__("no_such_tensor", [0.0, 1.0])), "name no tensor"),
        "missing": (_damage(tmp_path, "missing", lambda r: r.pop(conv_input)), "have no range"),
    }
    for why, (path, message) in cases.items():
        with pytest.raises(int8.QuantizationRangesError, match=message) as caught:
            int8.quantized(source, "dlib-resnet-v1", ranges_file=path)
        assert caught.value.code == "ModelUnavailableException", why
    assert [p.name for p in tmp_path.glob("*-int8-*")] == [], "a refused build leaves no int8 file behind"


def test_dlibs_runtime_is_refused_for_the_int8_model(settings):
    registry = Registry.of(settings)
    entry = registry.get(INT8)
    assert entry.builtin and INT8 in [e.name for e in registry.entries()]
    with pytest.raises(dlib_entry.BackendNotAvailableError, match="embedder"):
        registry.embedder(entry, backend="dlib")


def test_a_collection_on_the_int8_model_indexes_and_searches_real_faces(int8_engine, engine, lfw, tmp_path):
    store = SQLiteStore(tmp_path / "store.sqlite")
    try:
        svc = FaceService(engine, store)
        made = svc.create_collection("int8", model=INT8)
        assert made.face_model_version == str(int8_engine.model)
        for name in PEOPLE:
            r = svc.index_faces("int8", lfw.image(name, 1), external_image_id=name)
            assert r.face_model_version == str(int8_engine.model)
        hits = svc.search_faces_by_image("int8", lfw.image("Colin_Powell", 2), face_match_threshold=0).face_matches
        assert hits[0].face.external_image_id == "Colin_Powell"
        assert hits[0].false_match_rate is not None and hits[0].false_match_rate < 1e-3  # its own calibration
        # a template of the fp32 model is refused by the int8 collection
        from faceledger.service.operations import prepare_index

        with pytest.raises(errors.InvalidParameterError, match=f"holds {INT8}@"):
            svc.commit_index("int8", prepare_index(engine, lfw.image("Tony_Blair", 2)))
    finally:
        store.close()


def test_models_list_shows_the_int8_model_with_its_calibrations_and_accuracy():
    from typer.testing import CliRunner

    from faceledger.interfaces.cli.main import app

    listed = json.loads(CliRunner().invoke(app, ["models", "list", "--json"]).output)["Models"]
    row = next(m for m in listed if m["Name"] == INT8)
    assert row["BuiltIn"] and not row["Default"] and row["ModelId"].startswith(f"{INT8}@")
    assert row["Calibration"] == {"none": "shipped", "cohort": "shipped"}
    assert 0.98 < row["Measured"]["lfw_10fold_accuracy"] < 1
    assert next(m for m in listed if m["Default"])["Name"] == "dlib-resnet-v1-flip"  # the default is unchanged
