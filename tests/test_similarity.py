"""One Similarity everywhere: Python, CLI, demo and HTTP read a score through the same calibration,
the defaults agree and say which false match rate they stand for, and the calibration table says
what each threshold keeps of real same-person pairs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import faceledger
from faceledger.governance.app import open_service
from faceledger.interfaces.cli.main import app
from faceledger.scoring.calibration import fmr_of_similarity

runner = CliRunner()


def test_the_python_engine_cli_and_service_report_one_similarity(engine, settings, fold1, tmp_path):
    """The facade's FaceEngine scores the way the service does (the cohort default), so the same
    pair reads the same Similarity and rate in Python, the CLI and CompareFaces."""
    assert settings.score_normalisation == "cohort"  # the default since issue 21
    pair = next(p for p in fold1 if p.mated)
    assert engine.compare(pair.a, pair.b).source_similarity_threshold == faceledger.DEFAULT_COMPARE_THRESHOLD
    py = engine.compare(pair.a, pair.b, threshold=0)
    svc = open_service(settings.replace(store=tmp_path / "s.sqlite"), engine=engine)
    wire = svc.compare_faces(pair.a.read_bytes(), pair.b.read_bytes(), similarity_threshold=0)
    cli = json.loads(runner.invoke(app, ["compare", "--json", "--threshold", "0", str(pair.a), str(pair.b)]).stdout)
    (m,) = py.matches
    assert m.similarity == pytest.approx(wire.face_matches[0].similarity, abs=1e-6)
    assert m.similarity == pytest.approx(cli["FaceMatches"][0]["Similarity"], abs=1e-6)
    assert engine.scoring.fmr(m.score) == pytest.approx(cli["FaceMatches"][0]["FalseMatchRate"])
    (a,), (b,) = engine.embed(pair.a), engine.embed(pair.b)
    assert engine.similarity(a.template, b.template) == pytest.approx(m.similarity, abs=1e-6)
    # the vision layer's interim map would read this pair differently: the facade must not be it
    assert abs(engine.to_similarity(float(a.template.vector @ b.template.vector)) - m.similarity) > 1


def test_cli_default_demo_and_help_agree_on_a_stated_rate(fold1):
    assert faceledger.DEFAULT_COMPARE_FMR == pytest.approx(fmr_of_similarity(faceledger.DEFAULT_COMPARE_THRESHOLD), rel=0.01)
    import typer.main

    (opt,) = [p for p in typer.main.get_command(app).commands["compare"].params if p.name == "threshold"]
    assert f"Default {faceledger.DEFAULT_COMPARE_THRESHOLD:g}: a false match rate of 1e-03" in opt.help
    pair = next(p for p in fold1 if p.mated)
    r = runner.invoke(app, ["compare", "--json", str(pair.a), str(pair.b)])
    assert json.loads(r.stdout)["SimilarityThreshold"] == faceledger.DEFAULT_COMPARE_THRESHOLD
    # `faceledger demo` decides at the same threshold: tests/test_cli.py::test_demo_runs_on_lfw


def test_calibration_table_says_what_each_threshold_keeps():
    r = runner.invoke(app, ["calibration", "table", "--json", "--lfw-pairs", "200"])  # all: 1,461 pairs
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)
    assert t["ScoreNormalisation"] == "cohort" and t["LfwSamePersonPairs"] == 200
    kept = {row["Similarity"]: row["LfwSamePersonKept"] for row in t["Rows"]}
    shares = [row["LfwSamePersonKept"] for row in t["Rows"]]
    assert shares == sorted(shares, reverse=True) and kept[0] == 1.0
    assert kept[42.9] > 0.8  # the CLI's default keeps most genuine pairs
    assert kept[80] < 0.25  # the cloud API's 80 keeps a minority with this model: the reason for the default
