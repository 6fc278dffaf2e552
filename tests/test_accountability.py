"""Calibration, gallery-aware identification, policy, the ledger and human review."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from faceledger import errors
from faceledger.governance.gate import Gate
from faceledger.governance.app import open_service
from faceledger.scoring.calibration import Calibration, fmr_of_similarity, similarity_of_fmr
from faceledger.evaluation.calibration_fit import Source, dumps, fit, pwm_gpd
from faceledger.governance.ledger import Ledger
from faceledger.governance.policy import Context, Policy, Principal

from .conftest import encode


# --- calibration -------------------------------------------------------------------------------------


def test_similarity_is_a_documented_function_of_the_false_match_rate():
    assert similarity_of_fmr(2.5e-6) == pytest.approx(80, abs=0.1)  # the cloud API's default threshold
    assert fmr_of_similarity(99) == pytest.approx(1.2e-7, rel=0.05)  # its public-safety recommendation
    assert similarity_of_fmr(1.0) == 0 and similarity_of_fmr(1e-9) == 100
    for s in (0, 14.3, 50, 80, 99):
        assert similarity_of_fmr(fmr_of_similarity(s)) == pytest.approx(s)


def test_generalised_pareto_fit_recovers_a_known_tail():
    rng = np.random.default_rng(0)
    xi, sigma = -0.2, 0.5
    u = rng.random(200_000)
    y = sigma / xi * ((1 - u) ** (-xi) - 1)  # inverse CDF of the generalised Pareto
    got_xi, got_sigma = pwm_gpd(y)
    assert got_xi == pytest.approx(xi, abs=0.02) and got_sigma == pytest.approx(sigma, rel=0.03)


@pytest.fixture(scope="module")
def real_templates(engine, fairface, lfw):
    """Templates of 120 FairFace chips and 80 LFW images of 20 people: real non-mated scores."""
    records = fairface.records()[:120]
    ff = np.stack([engine.embed(r.path, prealigned=True)[0].template.vector for r in records]).astype(np.float32)
    people = [n for n, ps in lfw.people().items() if len(ps) >= 4][:20]
    paths = [(n, p) for n in people for p in lfw.people()[n][:4]]
    lf = np.stack([engine.embed(p)[0].template.vector for _, p in paths]).astype(np.float32)
    return [Source("fairface", [r.path.name for r in records], ff, None, [f"{r.race} {r.gender}" for r in records]),
            Source("lfw", [p.name for _, p in paths], lf, [n for n, _ in paths])]


def test_calibration_file_regenerates_byte_identical(real_templates):
    first, _ = fit(real_templates, "dlib-resnet-v1-flip@test")
    again, _ = fit([Source(s.name, list(s.names), s.vectors.copy(), s.identities, s.groups) for s in real_templates],
                   "dlib-resnet-v1-flip@test")
    assert dumps(first) == dumps(again)
    cal = Calibration.from_dict(first)
    scores = np.linspace(-0.2, 1.0, 200)
    fmr = cal.fmr(scores)
    assert np.all(np.diff(fmr) <= 0) and fmr[0] == 1.0  # a monotone map: higher score, rarer among strangers
    for target in (1e-1, 1e-2):
        assert cal.fmr(cal.threshold_for_fmr(target)) <= target * 1.001


def test_shipped_calibration_says_where_data_stops():
    from faceledger.scoring.calibration import for_model
    from faceledger.models.embedding import DlibResnetEmbedder

    cal = for_model(str(DlibResnetEmbedder.model_id(True)))
    assert cal.meta["fit"]["nonmated_pairs"] > 10_000_000 and cal.data_resolves_to < 1e-5
    assert "model, not data" in cal.meta["tail"]["note"]
    assert not cal.in_data(cal.threshold_for_fmr(cal.data_resolves_to / 10))
    for row in cal.meta["validation"]["overall"]:
        if row["target"] >= 1e-4:  # the held-out figure the issue asks for
            assert 0.5 <= row["ratio"] <= 2.0, row


# --- policy --------------------------------------------------------------------------------------------


def _ctx(roles=("investigator",), purposes=("missing-person",), purpose="missing-person", case="C-1", name="alice"):
    return Context(Principal(name, roles, purposes), purpose, case)


def test_moratorium_refuses_law_enforcement_and_allows_a_permitted_purpose():
    policy = Policy.load("moratorium")
    assert not policy.decide(_ctx(purposes=("law-enforcement",), purpose="law-enforcement"), "SearchFacesByImage").allowed
    assert policy.decide(_ctx(), "SearchFacesByImage").allowed
    assert not policy.decide(_ctx(purposes=()), "SearchFacesByImage").allowed  # key without the purpose
    assert not policy.decide(_ctx(case=None), "SearchFacesByImage").allowed  # no case reference
    assert not policy.decide(_ctx(roles=("user",)), "SearchFacesByImage").allowed  # role without identification
    assert policy.decide(_ctx(roles=("user",), purpose=None), "IndexFaces").allowed
    with pytest.raises(errors.InvalidParameterError, match="both allowed and denied"):
        Policy.parse('name = "x"\n[identification]\nallowed_purposes = ["a"]\ndenied_purposes = ["a"]\n')


# --- the ledger ------------------------------------------------------------------------------------------


def _filled(tmp_path, n=30) -> Ledger:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for i in range(n):
        ledger.append({"operation": "DetectFaces", "principal": "p", "i": i})
    return ledger


def _raw(ledger: Ledger, sql: str, *args) -> None:
    db = sqlite3.connect(ledger.path)
    db.execute(sql, args)
    db.commit()
    db.close()


@pytest.mark.parametrize("tamper, first_bad", [
    ("modify", 7), ("delete", 7), ("insert", 7), ("reorder", 7),
])
def test_every_kind_of_tampering_is_caught_and_the_first_bad_entry_named(tmp_path, tamper, first_bad):
    ledger = _filled(tmp_path)
    assert ledger.verify() == (30, [])
    body = ledger.get(7).body
    if tamper == "modify":
        _raw(ledger, "UPDATE entries SET body = ? WHERE seq = 7", json.dumps({**body, "principal": "mallory"}))
    elif tamper == "delete":
        _raw(ledger, "DELETE FROM entries WHERE seq = 7")
    elif tamper == "insert":  # shift entries 7.. up by one and slip a forged one in at 7
        _raw(ledger, "UPDATE entries SET seq = seq + 1000 WHERE seq >= 7")
        _raw(ledger, "UPDATE entries SET seq = seq - 999 WHERE seq >= 1000")
        _raw(ledger, "INSERT INTO entries VALUES (7, 'DetectFaces', '{\"operation\":\"DetectFaces\"}', ?)", "0" * 64)
    else:
        e7, e8 = ledger.get(7), ledger.get(8)
        _raw(ledger, "UPDATE entries SET seq = -1 WHERE seq = 7")
        _raw(ledger, "UPDATE entries SET seq = 7 WHERE seq = 8")
        _raw(ledger, "UPDATE entries SET seq = 8 WHERE seq = -1")
        assert ledger.get(7).body == e8.body and ledger.get(8).body == e7.body
    count, problems = ledger.verify()
    assert problems and problems[0].seq == first_bad, problems


def test_concurrent_writers_keep_one_chain(tmp_path):
    import multiprocessing as mp

    path = tmp_path / "ledger.sqlite"
    Ledger(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 40)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    count, problems = Ledger(path).verify()
    assert count == 120 and problems == []


def _append_many(path: str, worker: int, n: int) -> None:
    ledger = Ledger(path)
    for i in range(n):
        ledger.append({"operation": "DetectFaces", "worker": worker, "i": i})


# --- the gate: decisions, limits, ledger, review ------------------------------------------------------------


@pytest.fixture(scope="module")
def gated(tmp_path_factory, settings, engine, lfw):
    root = tmp_path_factory.mktemp("gate")
    s = settings.replace(store=root / "store.sqlite")
    service = open_service(s, engine=engine)
    gate = Gate(service, Policy.load("moratorium"), Ledger(root / "ledger.sqlite"))
    admin = Context(Principal("op", ("admin",), ("*",)), None, None)
    gate.call(admin, "CreateCollection", lambda: service.create_collection("people"))
    for name in ("Colin_Powell", "Tony_Blair", "George_W_Bush"):
        for k in (1, 2):
            service.index_faces("people", lfw.image(name, k), external_image_id=name, max_faces=1)  # Tony_Blair_0001 shows a bystander too
    return gate


def test_denied_requests_are_refused_and_recorded(gated, lfw):
    probe = lfw.image("Colin_Powell", 3).read_bytes()
    run = lambda **x: gated.service.search_faces_by_image("people", probe, **x)  # noqa: E731
    for ctx in (_ctx(purposes=("law-enforcement",), purpose="law-enforcement"), _ctx(purposes=())):
        with pytest.raises(errors.AccessDeniedError):
            gated.call(ctx, "SearchFacesByImage", run, collection="people", images=[probe])
        last = list(gated.ledger.entries())[-1].body
        assert last["decision"]["allowed"] is False and last["outcome"] == "AccessDeniedException"
        assert last["image_sha256"] and "result" not in last


def test_identification_rises_with_the_gallery_and_returns_rates(gated, lfw):
    probe = lfw.image("Colin_Powell", 3).read_bytes()
    r = gated.call(_ctx(), "SearchFacesByImage",
                   lambda **x: gated.service.search_faces_by_image("people", probe, face_match_threshold=0, **x),
                   collection="people", images=[probe])
    i = r.identification
    assert i.gallery_size == 6 and i.effective_threshold == pytest.approx(similarity_of_fmr(0.01 / 6))
    assert r.face_matches and all(m.face.external_image_id == "Colin_Powell" for m in r.face_matches)
    assert all(m.expected_false_candidates == pytest.approx(6 * m.false_match_rate) for m in r.face_matches)
    gated.service.create_collection("one")
    gated.service.index_faces("one", lfw.image("Tony_Blair", 1), max_faces=1)  # Tony_Blair_0001 shows a bystander too
    alone = gated.call(_ctx(), "SearchFacesByImage",
                       lambda **x: gated.service.search_faces_by_image("one", probe, face_match_threshold=0, **x),
                       collection="one", images=[probe])
    assert alone.identification.gallery_size == 1
    assert alone.identification.effective_threshold < i.effective_threshold  # 6x the gallery, a stricter threshold
    assert i.expected_false_candidates == pytest.approx(0.01) == pytest.approx(alone.identification.expected_false_candidates)
    entry = gated.ledger.get(r.ledger_entry).body
    assert entry["result"]["candidates"][0]["id"] == r.face_matches[0].face.face_id
    assert entry["purpose"] == "missing-person" and entry["case_reference"] == "C-1"


def test_a_blurry_probe_is_refused_not_searched(gated, lfw):
    img = Image.open(lfw.image("Colin_Powell", 3)).filter(ImageFilter.GaussianBlur(4))
    probe = encode(img, "PNG")
    with pytest.raises(errors.ProbeQualityError, match="sharpness"):
        gated.call(_ctx(), "SearchFacesByImage",
                   lambda **x: gated.service.search_faces_by_image("people", probe, **x), collection="people")
    assert list(gated.ledger.entries())[-1].body["outcome"] == "InvalidParameterException"


def test_review_gates_the_export_of_candidates(gated, lfw):
    probe = lfw.image("Tony_Blair", 3).read_bytes()
    r = gated.call(_ctx(), "SearchFacesByImage",
                   lambda **x: gated.service.search_faces_by_image("people", probe, face_match_threshold=0, **x),
                   collection="people", images=[probe])
    reviewer = _ctx(roles=("reviewer",), name="bob")  # not the searcher: separation of duties
    with pytest.raises(errors.AccessDeniedError, match="confirm"):
        gated.export_candidates(reviewer, r.ledger_entry)
    done = gated.review(reviewer, r.ledger_entry, "confirmed", "same ear shape and scar, checked against the file")
    exported = gated.export_candidates(reviewer, r.ledger_entry)
    assert exported.candidates and exported.reviews[0]["ledger_entry"] == done.ledger_entry
    with pytest.raises(errors.InvalidParameterError):
        gated.review(reviewer, r.ledger_entry, "probably", "looks alike")
    assert gated.ledger.verify()[1] == []


def test_cli_ledger_verify_and_export(tmp_path, monkeypatch):
    from faceledger.interfaces.cli.main import app

    monkeypatch.setenv("FACELEDGER_LEDGER", str(tmp_path / "l.sqlite"))
    monkeypatch.setenv("FACELEDGER_LEDGER_KEY", str(tmp_path / "signer" / "k.pem"))
    monkeypatch.setenv("FACELEDGER_LEDGER_PUBLIC_KEY", str(tmp_path / "signer" / "k.pem.pub"))
    runner = CliRunner()
    assert runner.invoke(app, ["ledger", "keygen"]).exit_code == 0
    ledger = Ledger(tmp_path / "l.sqlite")
    for i in range(5):
        ledger.append({"operation": "DetectFaces", "i": i})
    assert runner.invoke(app, ["ledger", "sign-heads"]).exit_code == 0
    r = runner.invoke(app, ["ledger", "verify", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["intact"] and json.loads(r.stdout)["last_head"] == 5
    lines = runner.invoke(app, ["ledger", "export", "--since", "3600s"]).stdout.splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4, 5]
    _raw(ledger, "UPDATE entries SET body = replace(body, '\"i\":2', '\"i\":9') WHERE seq = 3")
    r = runner.invoke(app, ["ledger", "verify"])
    assert r.exit_code == 1 and "first bad entry 3" in r.stdout


def test_the_policy_in_force_is_recorded_when_it_changes(tmp_path, settings, engine):
    service = open_service(settings.replace(store=tmp_path / "s.sqlite"), engine=engine)
    ledger = Ledger(tmp_path / "l.sqlite")
    Gate(service, Policy.load("moratorium"), ledger)
    Gate(service, Policy.load("moratorium"), ledger)  # unchanged: not recorded again
    Gate(service, Policy.load("open"), ledger)
    changes = [e.body["policy"]["name"] for e in ledger.entries_of("PolicyChange")]
    assert changes == ["moratorium", "open"]
    assert ledger.get(2).body["previous"]["digest"] == Policy.load("moratorium").digest
