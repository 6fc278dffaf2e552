"""The CLI: readable by people, JSON for programs, exit codes that mean something."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from faceledger import DEFAULT_COMPARE_THRESHOLD
from faceledger.interfaces.cli.main import app
from faceledger.interfaces.cli.common import EXIT_INPUT, EXIT_NEGATIVE

from .conftest import encode

runner = CliRunner()


def test_detect_json(face_path):
    r = runner.invoke(app, ["detect", "--json", str(face_path)])
    assert r.exit_code == 0, r.output
    (res,) = json.loads(r.stdout)["Results"]
    (face,) = res["FaceDetails"]
    assert set(face["BoundingBox"]) == {"Width", "Height", "Left", "Top"}
    assert len(face["Landmarks"]) == 5 and face["Confidence"] > 90


def test_detect_table_for_people(face_path):
    r = runner.invoke(app, ["detect", str(face_path)])
    assert r.exit_code == 0
    assert "1 face(s)" in r.stdout and "blazeface" in r.stdout  # the default detector (docs/detection.md)


def test_detect_without_face_exits_1(tmp_path):
    blank = tmp_path / "blank.png"
    blank.write_bytes(encode(Image.new("RGB", (120, 120), (200, 200, 200)), "PNG"))
    r = runner.invoke(app, ["detect", "--json", "--fallback", "none", str(blank)])
    assert r.exit_code == EXIT_NEGATIVE
    assert json.loads(r.stdout)["Results"][0]["FaceDetails"] == []


def test_bad_image_exits_3_with_a_typed_message(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    r = runner.invoke(app, ["detect", "--json", str(bad)])
    assert r.exit_code == EXIT_INPUT
    assert json.loads(r.stdout)["error"]["code"] == "InvalidImageFormatException"
    r = runner.invoke(app, ["detect", str(bad)])
    assert r.exit_code == EXIT_INPUT and "not a recognised image" in r.stderr


def test_compare_exit_codes(fold1):
    mated = next(p for p in fold1 if p.mated)
    nonmated = next(p for p in fold1 if not p.mated)
    r = runner.invoke(app, ["compare", "--json", "--max-fmr", "1e-2", str(mated.a), str(mated.b)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    (match,) = out["FaceMatches"]
    assert match["FalseMatchRate"] <= 1e-2 and match["Similarity"] >= out["SimilarityThreshold"] == pytest.approx(100 * 2 / 7)
    r = runner.invoke(app, ["compare", str(nonmated.a), str(nonmated.b)])
    assert r.exit_code == EXIT_NEGATIVE
    assert "no match" in r.stdout


def test_compare_rejects_an_out_of_range_threshold(fold1):
    p = fold1[0]
    r = runner.invoke(app, ["compare", "--threshold", "101", str(p.a), str(p.b)])
    assert r.exit_code == EXIT_INPUT and "between 0 and 100" in r.stderr


def test_demo_runs_on_lfw(settings):
    """... through the gate, as every interface: its detection and both comparisons are in the
    ledger (planted: the engine called directly -> no entries, the test fails)."""
    from faceledger.governance.ledger import Ledger

    def entries() -> dict[str, int]:
        return {op: sum(e.body.get("phase") == "outcome" and e.body["interface"] == "cli"
                        for e in Ledger(settings.ledger).entries_of(op)) for op in ("DetectFaces", "CompareFaces")}

    before = entries()
    r = runner.invoke(app, ["demo"])
    assert r.exit_code == 0, r.output
    after = entries()
    assert after["DetectFaces"] == before["DetectFaces"] + 1 and after["CompareFaces"] == before["CompareFaces"] + 2
    text = " ".join(r.stdout.split())
    assert "Same person" in text and "Different people" in text
    # the demo decides at `faceledger compare`'s default threshold, and says which rate that is
    assert f"at threshold {DEFAULT_COMPARE_THRESHOLD:.1f} (false match rate 1e-03, as faceledger compare)" in text
    assert text.split("Different people")[1].split("->")[2].strip().startswith("no match")


def test_datasets_info_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELEDGER_DATA", str(tmp_path))  # an empty data folder
    r = runner.invoke(app, ["datasets", "info", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["lfw"].startswith("missing") and info["fairface"].startswith("missing")


def test_detect_and_compare_reach_the_engine_only_through_the_gate(fold1, settings):
    """Every interface passes the gate: the CLI's detect and compare are decided by the policy and
    leave ledger entries (who, which images by digest, what came back), as HTTP calls do."""
    import getpass
    import hashlib

    from faceledger.governance.ledger import Ledger

    mated = next(p for p in fold1 if p.mated)
    before = {op: len(list(Ledger(settings.ledger).entries_of(op))) for op in ("DetectFaces", "CompareFaces")}
    assert runner.invoke(app, ["detect", "--json", str(mated.a)]).exit_code == 0
    assert runner.invoke(app, ["compare", "--json", "--threshold", "0", str(mated.a), str(mated.b)]).exit_code == 0
    ledger = Ledger(settings.ledger)
    for op in ("DetectFaces", "CompareFaces"):
        entries = [e.body for e in ledger.entries_of(op)]
        assert len(entries) > before[op]
        last = entries[-1]
        assert last["principal"] == f"local:{getpass.getuser()}" and last["interface"] == "cli"
        assert hashlib.sha256(mated.a.read_bytes()).hexdigest() in last["image_sha256"]
        assert last["outcome"] == "ok"
