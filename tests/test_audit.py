"""The score audit: rates, intervals, thresholds and differentials, on data with known answers."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from faceledger import errors
from faceledger.evaluation.audit import Scores, audit, bootstrap, differentials, markdown, rates_at, read_scores, threshold_for_fmr, wilson


def test_wilson_interval_matches_published_values():
    lo, hi = wilson(5, 10)
    assert round(lo, 4) == 0.2366 and round(hi, 4) == 0.7634
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_clopper_pearson_matches_published_values_and_covers():
    from faceledger.evaluation.audit import clopper_pearson

    lo, hi = clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-9)  # closed form at k = 0
    lo, hi = clopper_pearson(5, 10)
    assert round(lo, 4) == 0.1871 and round(hi, 4) == 0.8129
    lo, hi = clopper_pearson(3, 100_000)
    assert round(lo * 1e5, 3) == 0.619 and round(hi * 1e5, 2) == 8.77
    for k, n in ((1, 20), (30, 1000), (2, 5)):  # exact: never narrower than Wilson
        w, c = wilson(k, n), clopper_pearson(k, n)
        assert c[0] <= w[0] + 1e-12 and c[1] >= w[1] - 1e-12
    rng = np.random.default_rng(1)  # and covers the truth at least 95% of the time
    p, n = 0.002, 3000
    draws = rng.binomial(n, p, 2000)
    covered = np.mean([(lambda lh: lh[0] <= p <= lh[1])(clopper_pearson(int(k), n)) for k in draws])
    assert covered >= 0.95


def test_threshold_for_fmr_allows_exactly_the_target_share():
    nonmated = np.linspace(0.1, 1.0, 10)
    t = threshold_for_fmr(nonmated, 0.2)
    assert np.count_nonzero(nonmated >= t) == 2
    ties = np.array([0.5] * 5 + [0.1] * 5)
    assert np.count_nonzero(ties >= threshold_for_fmr(ties, 0.2)) == 0  # ties cannot be split


def _synthetic(rng, n_nonmated=60_000, n_mated=6_000):
    """Three groups; group C's impostor scores sit 0.5 higher, group B's genuine ones 0.5 lower."""
    shift_nm = {"A": 0.0, "B": 0.0, "C": 0.5}
    shift_m = {"A": 0.0, "B": -0.5, "C": 0.0}
    score, mated, group = [], [], []
    for g in "ABC":
        score += list(rng.normal(shift_nm[g], 1.0, n_nonmated)) + list(rng.normal(3.0 + shift_m[g], 1.0, n_mated))
        mated += [False] * n_nonmated + [True] * n_mated
        group += [g] * (n_nonmated + n_mated)
    return Scores.from_labels(np.array(score), np.array(mated), np.array(group)), shift_nm, shift_m


def _upper_tail(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2))


def test_audit_recovers_known_per_group_rates_within_their_intervals():
    s, shift_nm, shift_m = _synthetic(np.random.default_rng(11))
    report = audit(s, targets=(1e-2,), resamples=0)
    (point,) = report.points
    for g in point.groups:
        true_fmr = _upper_tail(point.threshold - shift_nm[g.group])
        true_fnmr = 1 - _upper_tail(point.threshold - 3.0 - shift_m[g.group])
        assert g.fmr.ci_low <= true_fmr <= g.fmr.ci_high, (g.group, true_fmr, g.fmr)
        assert g.fnmr.ci_low <= true_fnmr <= g.fnmr.ci_high, (g.group, true_fnmr, g.fnmr)
    by = {g.group: g for g in point.groups}
    assert by["C"].fmr.rate > 3 * by["A"].fmr.rate  # the planted differential is found
    assert by["B"].fnmr.ci_low > by["A"].fnmr.ci_high  # and so is the FNMR one


def test_unresolvable_rates_are_flagged_not_printed():
    s, _, _ = _synthetic(np.random.default_rng(3), n_nonmated=2_000, n_mated=500)
    (point,) = audit(s, targets=(1e-4,), resamples=0).points
    assert all(not g.fmr.resolved for g in point.groups)  # 2,000 pairs cannot resolve 1e-4
    from faceledger.evaluation.audit import markdown

    assert "not resolved" in markdown(audit(s, targets=(1e-4,), resamples=0))
    from faceledger.evaluation.audit import _rate

    assert _rate(40, 1_000, 1e-4).resolved  # 30 observed errors resolve a rate, however few the pairs
    assert not _rate(29, 1_000, 1e-4).resolved


def test_differentials_follow_their_formulas():
    from faceledger.evaluation.audit import GroupRates, OperatingPoint, Rate

    def r(x):
        return Rate(int(x * 1e6), 1_000_000, x, x, x, True)

    point = OperatingPoint("p", 0.0, 1e-3, [GroupRates(g, r(f), r(n), r(f)) for g, f, n in
                                            (("a", 1e-3, 0.02), ("b", 1e-2, 0.01), ("c", 1e-3, 0.01))])
    d = differentials(point)
    assert d["fmr_max_min_ratio"] == pytest.approx(10)
    assert d["fmr_max_geomean"] == pytest.approx(1e-2 / (1e-3 * 1e-2 * 1e-3) ** (1 / 3))
    assert d["inequity_rate"] == pytest.approx(math.sqrt(10 * 2))
    assert d["fdr"] == pytest.approx(1 - (0.5 * 9e-3 + 0.5 * 0.01))
    x = np.array([1e-3, 1e-2, 1e-3])
    gini = 3 / 2 * np.abs(x[:, None] - x[None, :]).sum() / (2 * 9 * x.mean())
    assert d["fmr_gini"] == pytest.approx(gini)


def test_subject_bootstrap_is_wider_than_pairs_assume():
    rng = np.random.default_rng(5)
    n_subjects, n = 40, 40_000
    a, b = rng.integers(0, n_subjects, n), rng.integers(0, n_subjects, n)
    lean = rng.normal(0, 0.6, n_subjects)  # some subjects look like many others: pairs are correlated
    score = rng.normal(0, 1, n) + lean[a] + lean[b]
    g = np.array(["x"] * n)
    s = Scores.from_labels(score, np.zeros(n, bool), g, g, a, b)
    (point,) = audit(s, targets=(1e-2,), resamples=200).points
    fmr = point.groups[0].fmr
    assert fmr.boot_low <= fmr.rate <= fmr.boot_high
    assert (fmr.boot_high - fmr.boot_low) > 2 * (fmr.ci_high - fmr.ci_low)


def test_differentials_have_bootstrap_intervals():
    """Max/GeoMean and max/min come with a 95% interval: wide when groups hold few errors, and
    around 1 when groups are alike, above it when one group's rate really is higher."""
    rng = np.random.default_rng(9)
    n = 60_000
    groups = rng.choice(["a", "b", "c"], n)
    subjects = rng.integers(0, 3_000, (2, n))
    score = rng.normal(0, 1, n) + np.where(groups == "c", 0.4, 0.0)  # group c: more false matches
    s = Scores.from_labels(score, np.zeros(n, bool), groups, groups, [f"{g}{x}" for g, x in zip(groups, subjects[0])],
                           [f"{g}{x}" for g, x in zip(groups, subjects[1])])
    (point,) = audit(s, targets=(1e-2,), resamples=200).points
    lo, hi = point.differential_ci["fmr_max_min_ratio"]
    assert lo <= point.differentials["fmr_max_min_ratio"] <= hi and lo > 1.5
    lo_g, hi_g = point.differential_ci["fmr_max_geomean"]
    assert lo_g <= point.differentials["fmr_max_geomean"] <= hi_g
    alike = Scores.from_labels(rng.normal(0, 1, n), np.zeros(n, bool), groups, groups,
                               [f"{g}{x}" for g, x in zip(groups, subjects[0])], [f"{g}{x}" for g, x in zip(groups, subjects[1])])
    (same,) = audit(alike, targets=(1e-2,), resamples=200).points
    assert same.differential_ci["fmr_max_min_ratio"][0] < 1.3 and same.differential_ci["fmr_max_min_ratio"][1] < lo


def _equal_or_planted(seed: int, plant: float = 0.0, n: int = 60_000, groups: int = 6, subjects: int = 500) -> Scores:
    """Non-mated pairs within 6 groups; some subjects look like many others (correlated pairs);
    ``plant`` raises group g0's scores."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    sa, sb = rng.integers(0, subjects, (2, n))
    lean = rng.normal(0, 0.5, (groups, subjects))
    score = rng.normal(0, 1, n) + lean[g, sa] + lean[g, sb] + np.where(g == 0, plant, 0.0)
    names = np.array([f"g{x}" for x in g])
    return Scores.from_labels(score, np.zeros(n, bool), names, names, [f"{x}/{y}" for x, y in zip(g, sa)],
                              [f"{x}/{y}" for x, y in zip(g, sb)])


def test_differential_null_reads_what_equal_groups_read():
    """A Max/GeoMean of 1.3 can be pure sampling: the audit says what equal groups would read on
    data of this size and correlation. Checked against the truth by simulation: 30 datasets with
    equal groups give the real spread of the statistic; one dataset's null must match it (a little
    wide is allowed: the subject bootstrap is conservative) and a planted differential must exceed it."""
    truth = [audit(_equal_or_planted(s), targets=(1e-2,), resamples=0).points[0].differentials["fmr_max_geomean"]
             for s in range(30)]
    median, p95 = np.percentile(truth, [50, 95])
    report = audit(_equal_or_planted(100), targets=(1e-2,), resamples=200)
    (point,) = report.points
    null_median, null_p95 = point.differential_null["fmr_max_geomean"]
    assert f"equal groups {null_median:.3g}, up to {null_p95:.3g}" in markdown(report)  # the reader sees it
    assert 0.9 * median <= null_median <= 1.2 * median
    assert 0.9 * p95 <= null_p95 <= 1.2 * p95
    assert point.differentials["fmr_max_geomean"] <= null_p95
    assert "fmr_max_min_ratio" in point.differential_null
    (planted,) = audit(_equal_or_planted(7, plant=0.3), targets=(1e-2,), resamples=200).points
    assert planted.differentials["fmr_max_geomean"] > planted.differential_null["fmr_max_geomean"][1]


def test_reference_group_threshold_and_cli(tmp_path):
    from faceledger.interfaces.cli.main import app

    s, _, _ = _synthetic(np.random.default_rng(2), n_nonmated=5_000, n_mated=500)
    path = tmp_path / "scores.csv"
    with path.open("w") as fh:
        fh.write("score,mated,group\n")
        for sc, m, g in zip(s.score, s.mated, s.group_a):
            fh.write(f"{-sc:.6f},{int(m)},{s.names[g]}\n")  # as distances
    loaded = read_scores(path, direction="distance")
    assert np.allclose(loaded.score, s.score, atol=1e-5)
    result = CliRunner().invoke(app, ["audit", "scores", str(path), "--direction", "distance", "--target-fmr", "1e-2",
                                      "--reference-group", "A", "--resamples", "20", "--interval", "clopper-pearson",
                                      "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["interval"] == "clopper-pearson"
    assert [p["name"] for p in report["points"]] == ["global FMR 0.01", "reference A FMR 0.01"]
    # a distance file is reported as distances: thresholds and score axes in its own units, not negated
    internal = audit(loaded, targets=(1e-2,), reference_group="A", resamples=0)
    assert report["direction"] == "distance" and internal.direction == "distance"
    assert report["points"][0]["threshold"] == pytest.approx(-internal.points[0].threshold)
    assert report["curves"][0]["bins"][0] == pytest.approx(-internal.curves[0].bins[0])
    from faceledger.evaluation.audit import markdown
    from faceledger.evaluation.audit_report import render_html

    shown = f"threshold {-internal.points[0].threshold:.6g})"
    assert shown in markdown(internal) and shown in render_html(internal)
    with pytest.raises(errors.InvalidParameterError, match="no column"):
        read_scores(path, score="similarity")


def test_rates_and_eer_agree_with_pyeer():
    """pyeer (an independent implementation) on the same within-group scores, ties included."""
    from pyeer.eer_stats import calculate_roc, get_eer_values

    s, _, _ = _synthetic(np.random.default_rng(8), n_nonmated=20_000, n_mated=2_000)
    s = Scores(np.round(s.score, 2), s.mated, s.group_a, s.group_b, s.names)  # many ties
    report = audit(s, targets=(1e-2, 1e-3), resamples=0)
    eers = {c.group: c.eer for c in report.curves}
    for code, g in enumerate(s.names):
        within = s.within == code
        gen, imp = s.score[within & s.mated], s.score[within & ~s.mated]
        thresholds, fmr, fnmr = calculate_roc(gen, imp)
        for p in report.points:
            i = np.searchsorted(thresholds, p.threshold)  # pyeer's first threshold >= ours: same decisions
            assert p.groups[code].fmr.rate == pytest.approx(fmr[i], abs=1e-12)
            assert p.groups[code].fnmr.rate == pytest.approx(fnmr[i], abs=1e-12)
        assert eers[g] == pytest.approx(get_eer_values(fmr, fnmr)[3], abs=1e-12)


def test_bootstrap_weights_pairs_by_how_often_their_subjects_are_drawn():
    from faceledger.evaluation.audit import _resampled_count

    counts = np.array([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    a, b = np.array([0, 0, 1, 2]), np.array([2, 0, 2, 2])  # two cross-subject pairs, two mated
    expected = [2 * 1 + 2 + 0 * 1 + 1, 1 + 1 + 1 + 1]
    assert _resampled_count(counts, a, b).tolist() == expected
    rng = np.random.default_rng(0)
    counts = rng.multinomial(300, np.full(300, 1 / 300), size=50).astype(float)
    a, b = rng.integers(0, 300, 200_000), rng.integers(0, 300, 200_000)
    dense = _resampled_count(counts, a, b)  # many pairs over few subjects: the matrix product
    gathered = _resampled_count(counts, a, b, dense_cells=0)
    assert np.allclose(dense, gathered)


def test_parquet_and_csv_inputs_load_the_same_scores(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    n = 1_000
    cols = {
        "score": rng.normal(0, 1, n),
        "mated": rng.random(n) < 0.1,
        "group_a": rng.choice(["Black Female", "White Male"], n),
        "group_b": rng.choice(["Black Female", "White Male"], n),
        "subject_a": rng.integers(0, 50, n).astype(str),
        "subject_b": rng.integers(0, 50, n).astype(str),
    }
    pq.write_table(pa.table(cols), tmp_path / "s.parquet")
    with (tmp_path / "s.csv").open("w") as fh:
        fh.write(",".join(cols) + "\n")
        for i in range(n):
            fh.write(f"{float(cols['score'][i])!r},{'TRUE' if cols['mated'][i] else 'false'},{cols['group_a'][i]},"
                     f"{cols['group_b'][i]},{cols['subject_a'][i]},{cols['subject_b'][i]}\n")
    p, c = read_scores(tmp_path / "s.parquet"), read_scores(tmp_path / "s.csv")
    assert p.names == c.names == ["Black Female", "White Male"]
    for field in ("score", "mated", "group_a", "group_b", "subject_a", "subject_b"):
        assert np.array_equal(getattr(p, field), getattr(c, field)), field
    assert np.array_equal(p.mated, cols["mated"]) and np.array_equal(p.score, cols["score"])
    (tmp_path / "bad.csv").write_text("score,mated,group\n0.5,1,a\nhigh,0,b\n")
    with pytest.raises(errors.InvalidParameterError, match="not a number"):
        read_scores(tmp_path / "bad.csv")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(errors.InvalidParameterError, match="not a readable"):
        read_scores(tmp_path / "junk.parquet")


def test_det_curves_and_histograms_per_group():
    s, shift_nm, _ = _synthetic(np.random.default_rng(4), n_nonmated=20_000, n_mated=2_000)
    report = audit(s, targets=(1e-2,), resamples=0)
    by = {c.group: c for c in report.curves}
    assert set(by) == {"A", "B", "C"}
    for c in report.curves:
        assert np.all(np.diff(c.fmr) <= 1e-12) and np.all(np.diff(c.fnmr) >= -1e-12)  # monotone in threshold
        assert sum(c.nonmated_hist) == 20_000 and sum(c.mated_hist) == 2_000
    i = len(by["A"].thresholds) // 2
    assert by["C"].fmr[i] > by["A"].fmr[i]  # C's impostors score higher at every threshold


def test_html_report_renders_in_headless_chromium(tmp_path):
    """The report's tables and plots are shown by a real browser (Debian's chromium)."""
    import shutil
    import subprocess

    from PIL import Image

    from faceledger.evaluation.audit_report import render_html

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    s, _, _ = _synthetic(np.random.default_rng(8), n_nonmated=20_000, n_mated=2_000)
    page = tmp_path / "audit.html"
    page.write_text(render_html(audit(s, targets=(1e-2, 1e-3), resamples=20)))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count('class="rates"') == 2 and 'class="differentials"' in dom
    assert dom.count('class="plot det"') == 1 and dom.count('class="plot hist"') == 2
    assert dom.count('class="curve"') == 9  # three groups x (DET + two histograms)
    shot = tmp_path / "audit.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1100,2400", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    plotted = np.any([np.all(pixels == np.array(c), axis=-1).sum() > 50
                      for c in ((0x1b, 0x6c, 0xa8), (0xd1, 0x49, 0x5b), (0xed, 0xae, 0x49))])
    assert plotted, "the curves' colours do not appear in the rendered page"


def test_audit_images_fairface_and_lfw_samples(tmp_path):
    """This engine's templates on real labelled faces: every group present, pairs as promised."""
    from faceledger.evaluation.audit_images import fairface_scores, lfw_scores
    from faceledger.settings import Settings

    settings = Settings.load()
    ff = fairface_scores(settings, per_group=4, workers=2)
    assert len(ff.images) == 14 and all(n == 4 for n in ff.images.values())
    assert sum(ff.failures_to_acquire.values()) == 0  # pre-aligned chips always yield a template
    assert len(ff.scores.score) == 56 * 55 // 2 and not ff.scores.mated.any()
    lf = lfw_scores(settings, people=12, nonmated=500, workers=2)
    assert set(lf.images) == {"female", "male"}
    mated = lf.scores.score[lf.scores.mated]
    assert len(mated) > 0 and np.median(mated) > np.median(lf.scores.score[~lf.scores.mated]) + 0.05
    report = audit(lf.scores, targets=(1e-2,), resamples=10)
    assert {g.group for g in report.points[0].groups} == {"female", "male"}
    race = lfw_scores(settings, by="race", people=10, nonmated=None, workers=2)
    assert set(race.images) <= {"african", "asianindian", "caucasian", "eastasian", "latino", "other"}
    n = len(race.scores.score)
    usable = sum(race.images.values()) - sum(race.failures_to_acquire.values())
    assert n == usable * (usable - 1) // 2  # every pair
    s = race.scores
    assert np.array_equal(s.mated, s.subject_a == s.subject_b)


def test_audit_images_from_a_manifest(tmp_path):
    """Any labelled image set: paths, groups, subjects from a CSV; bad rows are named."""
    from faceledger.interfaces.cli.main import app
    from faceledger.evaluation.datasets import LFW
    from faceledger.settings import Settings

    people = LFW.locate(Settings.load()).people()
    chosen = [n for n in sorted(people) if len(people[n]) >= 2][:3]
    manifest = tmp_path / "faces.csv"
    lines = ["path,group,subject"]
    for k, name in enumerate(chosen):
        lines += [f"{p},{'odd' if k % 2 else 'even'},{name}" for p in people[name][:2]]
    manifest.write_text("\n".join(lines) + "\n")
    r = CliRunner().invoke(app, ["audit", "images", "--dataset", str(manifest), "--target-fmr", "0.1",
                                 "--resamples", "0", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["comparisons"] == 15 and report["mated"] == 3
    assert report["images"] == {"even": 4, "odd": 2}
    subjects = {g["group"]: g["fnmr_by_subject"]["subjects"] for g in report["points"][0]["groups"]}
    assert subjects == {"even": 2, "odd": 1}  # FNMR with each person once, beside the FNMR by pair
    pairs = {g["group"]: (g["fmr_by_subject"] or {}).get("subjects") for g in report["points"][0]["groups"]}
    assert pairs == {"even": 1, "odd": None}  # and FMR with each pair of people once (its 4 image pairs)
    # the same pairs, scored the cohort-normalised way too, side by side
    normalised = report["scorings"]["cohort-normalised"]
    assert normalised["comparisons"] == 15 and normalised["mated"] == 3
    names = [p["name"] for p in normalised["points"]]
    assert names == ["global FMR 0.1", "calibrated FMR 0.1"] and names == [p["name"] for p in report["points"]]
    assert normalised["points"][1]["threshold"] != report["points"][1]["threshold"]  # each its own calibration
    md = tmp_path / "audit.md"
    html_path = tmp_path / "audit.html"
    r = CliRunner().invoke(app, ["audit", "images", "--dataset", str(manifest), "--target-fmr", "0.1",
                                 "--resamples", "0", "--markdown", str(md), "--html", str(html_path)])
    assert r.exit_code == 0, r.output
    assert "observed / stated FMR: cohort-normalised" in md.read_text()
    assert "FNMR, each subject once: cohort-normalised" in md.read_text()
    assert "Scores: cohort-normalised" in html_path.read_text()
    assert "<th>false match rate, each pair of subjects once</th>" in html_path.read_text()
    r = CliRunner().invoke(app, ["audit", "images", "--dataset", str(manifest), "--target-fmr", "0.1",
                                 "--resamples", "0", "--plain-only", "--json"])
    assert "scorings" not in json.loads(r.stdout)
    manifest.write_text("path,group\nmissing.jpg,a\n")
    r = CliRunner().invoke(app, ["audit", "images", "--dataset", str(manifest), "--json"])
    assert r.exit_code != 0 and "missing.jpg is not a file" in r.stdout


def test_fnmr_by_subject_counts_every_subject_once():
    """One subject with many mated pairs decides a group's FNMR counted by pair; counted by subject
    it is one of ten. Here the two weightings disagree on which group fares worse (as women and
    men do on LFW), and the report says both."""
    rng = np.random.default_rng(3)
    nonmated = rng.normal(0, 1, 20_000)
    rows = [(x, False, "w" if k % 2 else "m", 1000 + k, 3000 + k) for k, x in enumerate(nonmated)]
    rows += [(-10.0, True, "w", 0, 0)] * 100  # one much-photographed subject, always missed
    rows += [(10.0, True, "w", s, s) for s in range(1, 10) for _ in range(2)]  # nine never missed
    rows += [(10.0 if k else -10.0, True, "m", s, s) for s in range(10, 20) for k in range(2)]  # each half missed
    score, mated, group, sa, sb = (np.array(c) for c in zip(*rows))
    s = Scores.from_labels(score, mated, group, group, sa, sb)
    (point,) = audit(s, targets=(1e-2,), resamples=100, every_group=True).points
    by = {g.group: g for g in point.groups}
    assert by["w"].fnmr.rate == pytest.approx(100 / 118) and by["m"].fnmr.rate == pytest.approx(0.5)
    assert by["w"].fnmr_by_subject.rate == pytest.approx(0.1) and by["w"].fnmr_by_subject.subjects == 10
    assert by["m"].fnmr_by_subject.rate == pytest.approx(0.5) and by["m"].fnmr_by_subject.subjects == 10
    for g in by.values():
        assert g.fnmr_by_subject.boot_low <= g.fnmr_by_subject.rate <= g.fnmr_by_subject.boot_high
    assert by["w"].fnmr_by_subject.boot_high < 0.5  # resampling subjects, not pairs
    # the differentials read both ways: by pair w is worse (1.7x), by subject m is (5x)
    assert point.differentials["fnmr_max_min_ratio"] == pytest.approx((100 / 118) / 0.5)
    assert point.differentials["fnmr_by_subject_max_min_ratio"] == pytest.approx(5)
    low, high = point.differential_ci["fnmr_by_subject_max_min_ratio"]
    assert low <= 5 <= high and "fnmr_by_subject_max_geomean" in point.differential_null
    assert "each subject once" in markdown(audit(s, targets=(1e-2,), resamples=0))
    # without subject ids there is no subject to count once
    plain = Scores.from_labels(score, mated, group, group)
    assert all(g.fnmr_by_subject is None for g in audit(plain, targets=(1e-2,), resamples=0).points[0].groups)


def test_fnmr_by_subject_is_the_mean_of_each_subjects_fnmr():
    rng = np.random.default_rng(8)
    n = 5_000
    subject = rng.integers(0, 300, n)
    group = np.where(subject % 3 == 0, "x", "y")
    score = rng.normal(1, 1, n) - (subject % 7) * 0.2
    mated = rng.random(n) < 0.5
    s = Scores.from_labels(score, mated, group, group, subject, np.where(mated, subject, subject + 1000))
    t = 0.5
    point = rates_at(s, t, 1e-2, "p")
    for g in point.groups:
        per = [np.mean(score[mated & (subject == x)] < t) for x in np.unique(subject[mated & (group == g.group)])]
        assert g.fnmr_by_subject.rate == pytest.approx(np.mean(per)) and g.fnmr_by_subject.subjects == len(per)


def test_fmr_by_subject_counts_every_pair_of_subjects_once():
    """Two much-photographed look-alikes decide a group's FMR counted by pair; counted by pair of
    subjects they are one of 45. The report gives both, with intervals from the subject bootstrap."""
    rows = []
    for group, first in (("w", 0), ("m", 100)):
        people = range(first, first + 10)
        for a, b in itertools.combinations(people, 2):
            rows.append((0.0, False, group, a, b))
    rows = [(1.0 if (g == "m" and k % 5 == 0) or (a, b) == (0, 1) else x, m, g, a, b)
            for k, (x, m, g, a, b) in enumerate(rows)]  # m: 9 false matches in 45; w: only subjects 0 and 1
    rows += [(1.0, False, "w", 0, 1)] * 99  # ... who have 100 pairs, every one a false match
    score, mated, group, sa, sb = (np.array(c) for c in zip(*rows))
    s = Scores.from_labels(score, mated, group, group, sa, sb)
    point = rates_at(s, 1.0, 0.1, "at 1.0", every_group=True)
    bootstrap(s, [point], resamples=200)
    by = {g.group: g for g in point.groups}
    assert by["w"].fmr.rate == pytest.approx(100 / 144) and by["w"].fmr_by_subject.rate == pytest.approx(1 / 45)
    assert by["m"].fmr.rate == pytest.approx(9 / 45) and by["m"].fmr_by_subject.rate == pytest.approx(9 / 45)
    assert by["w"].fmr_by_subject.subjects == by["m"].fmr_by_subject.subjects == 45
    for g in by.values():
        assert g.fmr_by_subject.boot_low <= g.fmr_by_subject.rate <= g.fmr_by_subject.boot_high
    assert by["w"].fmr_by_subject.boot_high < 0.2  # resampling people, not pairs: never near 100/144
    # by pair w looks 3.5x worse; by pair of subjects m is 9x worse
    assert point.differentials["fmr_max_min_ratio"] == pytest.approx((100 / 144) / (9 / 45))
    assert point.differentials["fmr_by_subject_max_min_ratio"] == pytest.approx(9)
    low, high = point.differential_ci["fmr_by_subject_max_min_ratio"]
    assert low <= 9 <= high and "fmr_by_subject_max_geomean" in point.differential_null
    assert "FMR, each pair of subjects once" in markdown(audit(s, targets=(0.1,), resamples=0))


def test_fmr_by_subject_is_the_mean_over_pairs_of_subjects_and_absent_when_none_repeats():
    rng = np.random.default_rng(9)
    n = 20_000
    sa, sb = rng.integers(0, 60, n), rng.integers(0, 60, n)
    keep = sa != sb
    sa, sb = sa[keep], sb[keep]
    group = np.where(sa % 2 == sb % 2, np.where(sa % 2 == 0, "x", "y"), "x")
    group_b = np.where(sa % 2 == sb % 2, group, "y")
    score = rng.normal(0, 1, len(sa)) + (np.minimum(sa, sb) % 5) * 0.3
    s = Scores.from_labels(score, np.zeros(len(sa), bool), group, group_b, sa, sb)
    t = 1.5
    point = rates_at(s, t, 1e-2, "p")
    for g in point.groups:
        within = (group == g.group) & (group_b == g.group)
        lo, hi = np.minimum(sa, sb)[within], np.maximum(sa, sb)[within]
        shares = [np.mean(score[within][(lo == a) & (hi == b)] >= t) for a, b in set(zip(lo, hi))]
        assert g.fmr_by_subject.rate == pytest.approx(np.mean(shares)) and g.fmr_by_subject.subjects == len(shares)
    # every image its own subject (FairFace): each pair of subjects is one pair, and nothing changes
    i, j = np.triu_indices(200, 1)
    one = Scores.from_labels(rng.normal(0, 1, len(i)), np.zeros(len(i), bool), np.where(i % 2, "x", "y"),
                             np.where(j % 2, "x", "y"), i, j)
    groups = audit(one, targets=(1e-2,), resamples=0).points[0].groups
    assert all(g.fmr_by_subject is None for g in groups)
    assert "each pair of subjects" not in markdown(audit(one, targets=(1e-2,), resamples=0))
