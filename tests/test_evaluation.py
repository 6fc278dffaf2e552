"""The 10-fold protocol's arithmetic, and a short real run of `faceledger eval lfw`."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from faceledger.interfaces.cli.main import app
from faceledger.evaluation.protocols import best_threshold, ten_fold


def test_best_threshold_separates_separable_scores():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    mated = np.array([False, False, False, True, True, True])
    t = best_threshold(scores, mated)
    assert 0.3 < t < 0.7


def test_ten_fold_fits_on_nine_and_tests_on_the_tenth():
    rng = np.random.default_rng(0)
    folds = []
    for k in range(10):
        fold = [(float(rng.normal(0.9, 0.03)), True) for _ in range(50)]
        fold += [(float(rng.normal(0.7, 0.03)), False) for _ in range(50)]
        folds.append(fold)
    folds[3] = [(0.1, True)] * 50 + [(0.95, False)] * 50  # a fold the other nine cannot predict
    results = ten_fold(folds)
    assert [r.fold for r in results] == list(range(1, 11))
    assert results[3].accuracy == 0.0
    assert all(r.accuracy > 0.95 for i, r in enumerate(results) if i != 3)


def test_a_failure_to_acquire_counts_as_a_wrong_answer_on_a_mated_pair():
    folds = [[(0.9, True), (0.5, False)] for _ in range(10)]
    folds[0] = [(None, True), (0.5, False)]
    assert ten_fold(folds)[0].accuracy == 0.5


def test_eval_lfw_short_run_json():
    result = CliRunner().invoke(app, ["eval", "lfw", "--pairs-per-fold", "4", "--workers", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["folds"]) == 10 and all(f["pairs"] == 4 for f in report["folds"])
    assert report["mean"] >= 0.9
    assert report["failures_to_acquire"] == []
    assert report["model"].startswith("dlib-resnet-v1-flip@")


def test_eval_detection_reports_every_group():
    result = CliRunner().invoke(app, ["eval", "detection", "--per-group", "3", "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    rates = json.loads(result.stdout)
    assert len(rates) == 7 and all(r["images"] == 3 for r in rates)
    assert all(r["primary"] <= r["any"] <= r["images"] for r in rates)
    assert sum(r["any"] for r in rates) >= 15  # FairFace crops are faces: most must be found


def test_eval_detection_on_lfw_counts_failures_to_acquire():
    result = CliRunner().invoke(app, ["eval", "detection", "--dataset", "lfw", "--per-group", "12", "--workers", "1", "--json"])
    assert result.exit_code == 0, result.output
    (rate,) = json.loads(result.stdout)
    assert rate["group"] == "LFW" and rate["images"] == 12 and rate["any"] == 12
