"""`faceledger audit endpoint` against a real `faceledger serve` (HTTP, SigV4) on real LFW faces:
the same scores as the engine in-process, through a proxy that throttles, fails and drops
connections, resumed after a SIGKILL without repeating an answered call, and a dry run that
sends nothing."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from faceledger.evaluation import endpoint_audit as ea
from faceledger.evaluation.audit import audit, read_scores
from faceledger.evaluation.audit_images import lfw_items
from faceledger.evaluation.endpoint_client import Endpoint, Journal, digest
from faceledger.governance.app import open_service
from faceledger.governance.keys import KeyStore
from faceledger.interfaces.http.app import create_app
from faceledger.service import api_model
from faceledger.service.operations import FaceService
from faceledger.store.sqlite import SQLiteStore
from .live import LiveServer

HEADERS = {"X-Faceledger-Purpose": "research-audit", "X-Faceledger-Case": "AUDIT-2026-1"}
ROOT = Path(__file__).resolve().parent.parent


def _serve(s, engine) -> LiveServer:
    return LiveServer(create_app(s, open_service(s, engine=engine)))


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings, engine):
    root = tmp_path_factory.mktemp("endpoint")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", auth="sigv4",
                         ledger=root / "ledger.sqlite")
    key, secret = KeyStore(s.keys_file).create("auditor", principal="auditor", roles=("admin",),
                                                purposes=("research-audit",))
    http_server = _serve(s, engine)
    yield {"url": http_server.url, "port": http_server.port, "key": key.access_key_id, "secret": secret, "root": root,
           "settings": s}
    http_server.stop()


@pytest.fixture(scope="module")
def other_server(server, tmp_path_factory, engine):
    """A second faceledger on the same engine and keys, with the other score normalisation: another
    system to compare, whose scores differ on the same pairs."""
    root = tmp_path_factory.mktemp("other-endpoint")
    s = server["settings"]
    s = s.replace(store=root / "store.sqlite", ledger=root / "ledger.sqlite",
                  score_normalisation="none" if s.score_normalisation == "cohort" else "cohort")
    http_server = _serve(s, engine)
    yield {**server, "url": http_server.url, "port": http_server.port, "settings": s}
    http_server.stop()


@pytest.fixture(scope="module")
def sample(settings):
    """8 people with three images each and 12 with one (LFW, groups by annotated gender): 24
    mated pairs and 40 sampled non-mated ones, within and across groups."""
    items = lfw_items(settings, by="gender")
    by_person: dict = {}
    for it in items:
        by_person.setdefault(it[1], []).append(it)
    rng = np.random.default_rng(7)
    names = sorted(by_person)
    multi = [n for n in names if len(by_person[n]) >= 3]
    single = [n for n in names if len(by_person[n]) == 1]
    chosen = [multi[k] for k in rng.choice(len(multi), 8, replace=False)] + [single[k] for k in rng.choice(len(single), 12, replace=False)]
    picked = [it for n in sorted(chosen) for it in by_person[n][:3]]
    pairs = ea.verification_pairs(picked, nonmated=40, seed=1)
    return ea.Images(picked), pairs


def _endpoint(server, journal, url=None, **kw) -> Endpoint:
    return Endpoint(journal, endpoint_url=url or server["url"], region="us-east-1", headers=HEADERS,
                    access_key=server["key"], secret_key=server["secret"], **kw)


@pytest.fixture(scope="module")
def direct(server, sample, tmp_path_factory):
    images, pairs = sample
    journal = Journal(tmp_path_factory.mktemp("direct") / "journal.sqlite")
    return ea.run_verification(_endpoint(server, journal), images, pairs, concurrency=2)


def _counts(report):
    return [(p.name, g.group, g.fmr.errors, g.fmr.trials, g.fnmr.errors, g.fnmr.trials, g.cross_fmr.errors)
            for p in report.points for g in p.groups]


def test_endpoint_scores_equal_the_engine_in_process(direct, sample, engine, settings, tmp_path):
    """Same engine, same images, same pairs: every score, and so every group's error count at every
    operating point, is the one the service computes in-process."""
    images, pairs = sample
    service = FaceService(engine, SQLiteStore(tmp_path / "store.sqlite"), normalisation=settings.score_normalisation)
    local = []
    for i, j, _ in pairs:
        try:
            answer = api_model.output("CompareFaces", service.compare_faces(images.data(i), images.data(j),
                                                                            similarity_threshold=0))
        except Exception as exc:  # noqa: BLE001 - the refusal is the answer, as over the wire
            answer = {"Error": {"Code": getattr(exc, "code", type(exc).__name__)}}
        local.append(ea.score_of_compare(answer)[0])
    wire = {(r["path_a"], r["path_b"]): r["score"] for r in direct.rows}
    expected = {(str(images.items[i][0]), str(images.items[j][0])): s for (i, j, _), s in zip(pairs, local) if s is not None}
    assert wire == expected and len(wire) >= 55
    assert direct.censored == 0  # SimilarityThreshold=0: every score came back
    mated = [r["score"] for r in direct.rows if r["mated"]]
    nonmated = [r["score"] for r in direct.rows if not r["mated"]]
    assert np.median(mated) > np.median(nonmated) + 30  # real faces: the scores mean something
    from faceledger.evaluation.audit import Scores

    rows = [r for r in direct.rows]
    in_process = Scores.from_labels([expected[(r["path_a"], r["path_b"])] for r in rows], [r["mated"] for r in rows],
                                    [r["group_a"] for r in rows], [r["group_b"] for r in rows],
                                    [r["subject_a"] for r in rows], [r["subject_b"] for r in rows])
    kw = dict(targets=(1e-1,), thresholds=(40.0, 80.0), resamples=0)
    assert _counts(audit(direct.scores, **kw)) == _counts(audit(in_process, **kw))


def test_score_file_reruns_through_audit_scores(direct, tmp_path):
    path = tmp_path / "scores.csv"
    raw = ea.write_scores(direct, path)
    again = read_scores(path)
    kw = dict(targets=(1e-1,), thresholds=(80.0,), resamples=0)
    assert _counts(audit(again, **kw)) == _counts(audit(direct.scores, **kw))
    answers = [json.loads(line) for line in raw.read_text().splitlines()]
    assert len(answers) == len(direct.rows) and all("FaceMatches" in a["response"] for a in answers)
    assert all(a["response"]["_request"]["RequestId"] for a in answers)  # everything the endpoint returned, kept


class FaultyProxy:
    """Forwards to the server; on a seeded share of calls answers ThrottlingException, 500 or 503,
    or drops the connection (before forwarding, or after the server answered). Counts, per journal
    key, the answers it delivered."""

    def __init__(self, upstream_port: int, share: float = 0.3, seed: int = 3, fail: str | None = None) -> None:
        self.upstream, self.share, self.rng, self.fail = upstream_port, share, random.Random(seed), fail
        self.delivered: Counter = Counter()
        self.faults: Counter = Counter()
        self.in_flight = 0
        self.seen = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.seen += 1
                try:
                    self.relay()
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

            def relay(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    fault = proxy.rng.choice(["throttle", "500", "503", "drop", "drop-after"]) \
                        if proxy.rng.random() < proxy.share else None
                    if proxy.fail and self.headers.get("X-Amz-Target", "").endswith("." + proxy.fail):
                        fault = "500"
                    if fault:
                        proxy.faults[fault] += 1
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault in ("throttle", "500", "503"):
                    code = {"throttle": ("ThrottlingException", 400), "500": ("InternalServerError", 500),
                            "503": ("ServiceUnavailableException", 503)}[fault]
                    payload = json.dumps({"__type": code[0], "message": "injected"}).encode()
                    self.send_response(code[1])
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream, timeout=120)
                conn.request("POST", self.path, body, {k: v for k, v in self.headers.items()})
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                if fault == "drop-after":  # the server did the work; the answer never arrives
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if resp.status == 200:
                    with proxy.lock:
                        proxy.delivered[_key(self.headers.get("X-Amz-Target", ""), body)] += 1
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()


def _key(target: str, body: bytes) -> str:
    op = target.rsplit(".", 1)[-1]
    b = json.loads(body)
    if op == "CompareFaces":
        a, t = (base64.b64decode(b[k]["Bytes"]) for k in ("SourceImage", "TargetImage"))
        return f"CompareFaces:{digest(a)}:{digest(t)}"
    return f"{op}:{hashlib.sha256(body).hexdigest()[:16]}"


def test_faults_change_nothing_and_no_pair_is_scored_twice(server, sample, direct, tmp_path):
    images, pairs = sample
    proxy = FaultyProxy(server["port"], share=0.3)
    try:
        journal = Journal(tmp_path / "journal.sqlite")
        result = ea.run_verification(_endpoint(server, journal, proxy.url, attempts=2, rounds=12, backoff=0.05,
                                               max_backoff=0.5), images, pairs, concurrency=3)
    finally:
        proxy.close()
    assert sum(proxy.faults.values()) >= 10 and {"throttle", "drop", "drop-after"} <= set(proxy.faults)
    assert [(r["path_a"], r["path_b"], r["score"]) for r in result.rows] == \
        [(r["path_a"], r["path_b"], r["score"]) for r in direct.rows]
    keys = {ea.compare_key(images, i, j) for i, j, _ in pairs}
    assert set(proxy.delivered) == keys and max(proxy.delivered.values()) == 1  # each answer delivered once


def _cli(server, url: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", "from faceledger.interfaces.cli.main import main; main()", "audit", "endpoint",
            "--dataset", "lfw", "--people", "40", "--nonmated", "60", *(["--endpoint-url", url] if url else []),
            "--region", "us-east-1",
            "--out", str(out), "--concurrency", "2", "--resamples", "0", "--target-fmr", "0.1",
            *[a for h, v in HEADERS.items() for a in ("--header", f"{h}={v}")], *extra]


def _env(server) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "AWS_ACCESS_KEY_ID": server["key"],
            "AWS_SECRET_ACCESS_KEY": server["secret"], "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}


def test_resume_after_sigkill_repeats_no_answered_call(server, tmp_path):
    proxy = FaultyProxy(server["port"], share=0.0)
    out = tmp_path / "audit"
    try:
        first = subprocess.Popen(_cli(server, proxy.url, out, "--yes", "--rate", "4"), env=_env(server),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        journal = out / "journal.sqlite"
        deadline = time.monotonic() + 240
        answered = 0
        while time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.5)
            if journal.exists():
                with sqlite3.connect(journal) as db:
                    answered = db.execute("SELECT count(*) FROM calls").fetchone()[0]
                if answered >= 15:
                    break
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        first.send_signal(signal.SIGKILL)
        first.wait()
        while proxy.in_flight:  # calls the killed auditor left in flight: delivered to no one, not counted below
            time.sleep(0.05)
        with sqlite3.connect(journal) as db:
            done = {k for (k,) in db.execute("SELECT key FROM calls")}
        before = Counter(proxy.delivered)
        second = subprocess.run(_cli(server, proxy.url, out, "--yes", "--json"), env=_env(server), capture_output=True,
                                timeout=600)
        assert second.returncode == 0, second.stderr.decode()[-3000:]
    finally:
        proxy.close()
    resumed = proxy.delivered - before
    assert len(done) >= 15 and not (set(resumed) & done)  # no answered call sent again
    report = json.loads(second.stdout)
    assert report["plan"]["already_done"]["CompareFaces"] == len(done)
    assert report["calls_sent"] == sum(resumed.values())
    assert (out / "scores.csv").is_file() and (out / "report.html").read_text().count("<svg") >= 3


def test_dry_run_sends_nothing(server, tmp_path):
    proxy = FaultyProxy(server["port"], share=0.0)
    try:
        run = subprocess.run(_cli(server, proxy.url, tmp_path / "dry", "--dry-run", "--json"), env=_env(server),
                             capture_output=True, timeout=300)
    finally:
        proxy.close()
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    plan = json.loads(run.stdout)
    assert plan["dry_run"] and plan["calls"]["CompareFaces"] > 60 and plan["estimated_cost_usd"] is None
    assert not proxy.delivered
    # Amazon's endpoint (no URL): priced from the table, and still nothing sent
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"CompareFaces": 0.0008}))
    amazon = subprocess.run(_cli(server, None, tmp_path / "dry2", "--dry-run", "--json", "--price-table", str(prices)),
                            env=_env(server), capture_output=True, timeout=300)
    assert amazon.returncode == 0, amazon.stderr.decode()[-2000:]
    priced = json.loads(amazon.stdout)
    assert priced["calls"] == plan["calls"] and priced["estimated_cost_usd"] == pytest.approx(0.0008 * plan["calls"]["CompareFaces"])


def _collections(server) -> list[str]:
    import boto3

    rek = boto3.client("rekognition", endpoint_url=server["url"], region_name="us-east-1",
                       aws_access_key_id=server["key"], aws_secret_access_key=server["secret"])
    return rek.list_collections()["CollectionIds"]


@pytest.fixture(scope="module")
def ident_sample(settings):
    items = lfw_items(settings, by="gender", people=300, seed=2)
    images = ea.Images(items)
    return images, ea.identification_design(items, gallery=30, probes=12, seed=2)


def test_identification_protocol_measures_and_deletes_its_gallery(server, ident_sample, tmp_path):
    images, design = ident_sample
    assert len(design.gallery) == 30 and len(design.mated_probes) == 6 and len(design.nonmated_probes) == 6
    gallery_subjects = {images.items[i][1] for i in design.gallery}
    assert all(images.items[i][1] in gallery_subjects for i in design.mated_probes)
    assert not any(images.items[i][1] in gallery_subjects for i in design.nonmated_probes)
    cid = ea.collection_id_for(images, design)
    journal = Journal(tmp_path / "journal.sqlite")
    result = ea.run_identification(_endpoint(server, journal), images, design, cid, concurrency=2)
    assert cid not in _collections(server)  # deleted at the end
    assert result.extra["gallery_faces_indexed"] >= 28
    rates = ea.identification_rates(images, design, result, (40.0, 80.0, 99.0), gallery_sizes=(10,))
    whole = [r for r in rates if r.gallery == 30]
    assert sum(r.mated_probes for r in whole if r.threshold == 80) + sum(result.failures_to_acquire.values()) >= 6
    # real faces: every answered probe of someone in the gallery finds them at 40; a stricter
    # threshold never finds more
    found = {t: sum(r.mated_probes - r.missed for r in whole if r.threshold == t) for t in (40.0, 80.0, 99.0)}
    answered = sum(r.mated_probes for r in whole if r.threshold == 40.0)
    assert answered >= 2 and found[40.0] == answered and found[40.0] >= found[80.0] >= found[99.0]
    # the moratorium policy's refusals (probes under the quality floor) are answers, counted per group
    refused = [a for a in result.extra["_answers"] if "Error" in a["response"]]
    assert sum(result.failures_to_acquire.values()) == len(refused)
    assert all("quality floor" in a["response"]["Error"]["Message"] for a in refused)
    # faceledger withholds candidates under its gallery-aware threshold (FPIR 0.01 / 30 faces): said so
    assert result.extra["lowest_similarity_returned"] > 40 and not result.extra["complete_candidate_lists"]
    table = ea.aclu_table(rates, 30)
    assert len(table.splitlines()) == 2 + len(whole)  # header, rule, one row per group and threshold
    # a finished audit is read back from the journal: no collection, no call
    again = _endpoint(server, journal)
    ea.run_identification(again, images, design, cid, concurrency=2)
    assert again.sent == 0 and cid not in _collections(server)


def test_identification_deletes_the_gallery_when_the_audit_fails(server, ident_sample, tmp_path):
    """The endpoint fails every search: the audit stops with a typed error, and the gallery of
    faces it uploaded does not stay behind."""
    from faceledger.errors import EndpointError

    images, design = ident_sample
    design = ea.IdentificationDesign(design.gallery[:5], design.mated_probes[:1], design.nonmated_probes[:1])
    cid = ea.collection_id_for(images, design)
    proxy = FaultyProxy(server["port"], share=0.0, fail="SearchFacesByImage")
    try:
        with pytest.raises(EndpointError, match="kept failing"):
            ea.run_identification(_endpoint(server, Journal(tmp_path / "j.sqlite"), proxy.url, attempts=1, rounds=2,
                                            backoff=0.01), images, design, cid)
    finally:
        proxy.close()
    assert proxy.delivered[f"CreateCollection:{hashlib.sha256(json.dumps({'CollectionId': cid}).encode()).hexdigest()[:16]}"] <= 1
    assert cid not in _collections(server)


def test_report_says_in_sentences_what_the_figures_show(direct):
    from faceledger.evaluation.audit_report import render_html, summary_sentences

    report = audit(direct.scores, targets=(1e-1,), thresholds=(40.0, 80.0), resamples=50)
    sentences = summary_sentences(report)
    assert len(sentences) >= 4  # FMR and FNMR at each operating point
    at40 = next(p for p in report.points if p.name == "threshold 40")
    worst = max(at40.groups, key=lambda g: g.fnmr.rate)
    said = next(f for s, f in sentences if s.startswith("At the system's threshold 40") and "missed" in s)
    assert f"{worst.group}: {worst.fnmr.errors:,} of {worst.fnmr.trials:,} pairs" in said  # the figures behind it
    page = render_html(report, "Audit", about={"endpoint": "http://test", "protocol": "verification",
                                               "dataset": "lfw by gender", "plan": {"calls": {"CompareFaces": 64}}})
    assert page.index("id='summary'") < page.index("id='methods'") < page.index("<h2>Curves")
    bars = page.count("class='bar'")
    assert bars == sum(2 for p in report.points for g in p.groups if g.fmr.trials) or bars >= 2 * len(report.points)
    assert page.count("class='ci'") == bars and "src=" not in page and "<script" not in page  # self-contained


def test_plan_prices_rate_limit_and_image_fitting(tmp_path, sample):
    from faceledger.evaluation.endpoint_client import Plan, RateLimit, fit_image, is_amazon

    assert is_amazon(None) and is_amazon("https://rekognition.eu-west-1.amazonaws.com")
    assert not is_amazon("http://127.0.0.1:8080") and not is_amazon("http://rekognition.amazonaws.com.evil.example")
    plan = Plan("identification", "x", 600, {"IndexFaces": 500, "SearchFacesByImage": 100}, {"IndexFaces": 200},
                {"IndexFaces": 0.001, "SearchFacesByImage": 0.001}, stored_faces=500)
    assert plan.to_send == {"IndexFaces": 300, "SearchFacesByImage": 100}
    assert plan.cost == pytest.approx(0.4 + 500 * 0.00001)
    limit = RateLimit(20)
    t0 = time.monotonic()
    for _ in range(11):
        limit.wait()
    assert time.monotonic() - t0 >= 0.45
    images, _ = sample
    data = Path(images.items[0][0]).read_bytes()
    assert fit_image(data) is data  # within the limit: sent unchanged, so scores match a local run
    from PIL import Image
    import io

    smaller = fit_image(data, max_bytes=len(data) // 3)
    assert len(smaller) <= len(data) // 3 and Image.open(io.BytesIO(smaller)).size[0] < Image.open(io.BytesIO(data)).size[0]


def test_identification_from_the_command_line(server, tmp_path):
    out = tmp_path / "aclu"
    args = _cli(server, server["url"], out, "--protocol", "identification", "--gallery", "20", "--probes", "8",
                "--yes", "--json")
    args[args.index("--people") + 1] = "300"
    run = subprocess.run(args, env=_env(server), capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    report = json.loads(run.stdout)
    assert report["protocol"] == "identification" and report["gallery"] == 20 and report["calls_per_second"] > 0
    assert {r["threshold"] for r in report["identification"]} == {80.0, 99.0}
    page = (out / "report.html").read_text()
    assert "Searches of the gallery" in page and "id='methods'" in page
    assert (out / "aclu_table.md").read_text().startswith("| probe group |")
    assert not [c for c in _collections(server) if c.startswith("faceledger-audit-")]


def test_a_refusal_stops_the_audit_sending(server, sample, tmp_path):
    """A wrong secret is refused (not retried): the audit stops with a typed error and the calls
    queued behind it are never sent."""
    from faceledger.errors import EndpointError

    images, pairs = sample
    proxy = FaultyProxy(server["port"], share=0.0)
    try:
        endpoint = Endpoint(Journal(tmp_path / "j.sqlite"), endpoint_url=proxy.url, region="us-east-1", headers=HEADERS,
                            access_key=server["key"], secret_key="wrong" * 8)
        with pytest.raises(EndpointError, match="InvalidSignatureException"):
            ea.run_verification(endpoint, images, pairs, concurrency=2)
    finally:
        proxy.close()
    assert 1 <= proxy.seen <= 4 < len(pairs)


def test_a_journal_answers_for_one_endpoint_only(tmp_path):
    from faceledger.errors import InvalidParameterError

    journal = Journal(tmp_path / "j.sqlite")
    journal.bind("http://a.example")
    journal.bind("http://a.example")
    with pytest.raises(InvalidParameterError, match="journal of an audit of http://a.example"):
        Journal(tmp_path / "j.sqlite").bind("http://b.example")


# --- two systems side by side (--compare-with), the PDF, and the report in a real browser -----------


def _global_counts(report: dict) -> list[tuple]:
    return [(p["name"], g["group"], g["fmr"]["errors"], g["fmr"]["trials"], g["fnmr"]["errors"], g["fnmr"]["trials"])
            for p in report["points"] if p["name"].startswith("global") for g in p["groups"]]


def _pdf_tools():
    import shutil

    from faceledger.evaluation.report_pdf import BROWSERS

    return any(shutil.which(b) for b in BROWSERS) and shutil.which("pdftoppm")


def test_compare_with_the_engine_and_with_another_endpoint(server, other_server, tmp_path):
    """`--compare-with engine`: the same engine behind the endpoint errs on exactly the same pairs,
    so every group's counts are equal in both columns (each system in its own units); then another
    endpoint (the other score normalisation) on the same pairs reads differently, its calls
    journalled so that a rerun sends none."""
    out = tmp_path / "cmp"
    run = subprocess.run(_small(_cli(server, server["url"], out, "--compare-with", "engine", "--yes", "--json")),
                         env=_env(server), capture_output=True, timeout=900)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    report = json.loads(run.stdout)
    (engine_name,) = report["scorings"]
    engine = report["scorings"][engine_name]
    assert engine_name.startswith("this engine") and "engine" in report["compare_with"]["units"]
    counts = _global_counts(report)
    assert counts == _global_counts(engine) and sum(c[2] + c[4] for c in counts) > 0  # errors, equal to the last one
    assert report["pairs_scored_by_one"] == 0 and report["comparisons"] == engine["comparisons"] >= 50
    own = {p["name"]: p["threshold"] for p in report["points"]}
    assert own["threshold 80"] == 80.0 and not any(p["name"].startswith("threshold") for p in engine["points"])
    assert own["global FMR 0.1"] != engine["points"][0]["threshold"]  # Similarity and the engine's score: own units
    page = (out / "report.html").read_text()
    assert f"FMR: {server['url']}" in page and f"FMR: {engine_name}" in page  # two columns
    assert "id='summary-1'" in page and "id='summary-2'" in page and "id='methods-2'" in page

    pdf = out / "report.pdf"
    other = subprocess.run(_small(_cli(server, server["url"], out, "--compare-with", other_server["url"], "--yes", "--json",
                                *(["--pdf", str(pdf)] if _pdf_tools() else []))),
                           env=_env(server), capture_output=True, timeout=900)
    assert other.returncode == 0, other.stderr.decode()[-3000:]
    second = json.loads(other.stdout)
    assert second["calls_sent"] == 0  # the first endpoint's answers came from its journal
    assert second["compare_with"]["calls_sent"] == second["compare_with"]["plan"]["calls"]["CompareFaces"] > 0
    (name,) = second["scorings"]
    assert name == other_server["url"] and _global_counts(second) == counts
    first_scores = {(r["path_a"], r["path_b"]): float(r["score"]) for r in _csv(out / "scores.csv")}
    other_scores = {(r["path_a"], r["path_b"]): float(r["score"]) for r in _csv(out / "compare" / "scores.csv")}
    assert set(first_scores) == set(other_scores)  # the same pairs ...
    assert sum(abs(first_scores[k] - other_scores[k]) > 1 for k in first_scores) > len(first_scores) // 2  # ... read differently
    assert [p["threshold"] for p in second["points"]] != [p["threshold"] for p in second["scorings"][name]["points"]]
    if _pdf_tools():
        assert pdf.read_bytes().startswith(b"%PDF-")
    # the compared endpoint's answers are journalled: the plan of a rerun has nothing left to send
    plan = subprocess.run(_small(_cli(server, server["url"], out, "--compare-with", other_server["url"], "--dry-run", "--json")),
                          env=_env(server), capture_output=True, timeout=300)
    assert plan.returncode == 0, plan.stderr.decode()[-2000:]
    plan = json.loads(plan.stdout)
    assert plan["compare_with"]["to_send"]["CompareFaces"] == 0 and plan["to_send"]["CompareFaces"] == 0


def _small(args: list[str]) -> list[str]:
    """A smaller sample than _cli's (20 people, 40 non-mated pairs): three runs, two systems each."""
    args[args.index("--people") + 1], args[args.index("--nonmated") + 1] = "20", "40"
    return args


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_prints_to_a_pdf_a_reader_can_open(direct, tmp_path):
    """The HTML report printed by headless Chromium: a real PDF whose first page renders (poppler's
    pdftoppm) to an image that is not blank."""
    from PIL import Image

    from faceledger.evaluation.audit_report import render_html
    from faceledger.evaluation.report_pdf import html_to_pdf

    if not _pdf_tools():
        pytest.skip("needs chromium and pdftoppm (poppler-utils): .ci/run installs both")
    report = audit(direct.scores, targets=(1e-1,), thresholds=(40.0, 80.0), resamples=0)
    pdf = html_to_pdf(render_html(report, "Audit", about={"endpoint": "http://test", "protocol": "verification"}),
                      tmp_path / "out" / "report.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
                   check=True, capture_output=True, timeout=120)
    (png,) = tmp_path.glob("page*.png")
    pixels = np.asarray(Image.open(png).convert("L"))
    assert (pixels < 128).mean() > 0.005  # text and charts, not a white page


def test_pdf_without_a_browser_names_the_package(tmp_path, monkeypatch):
    from faceledger.errors import ToolMissingError
    from faceledger.evaluation.report_pdf import html_to_pdf

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="apt-get install chromium"):
        html_to_pdf("<html></html>", tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_endpoint_report_sections_render_in_headless_chromium(direct, tmp_path):
    """The page a reader sees, in a real browser: the summary sentences, the metric explanations,
    a bar chart with intervals per operating point, DET curves with the operating points labelled in
    the endpoint's units, the methods; and the bars are drawn (their colours on the screenshot)."""
    import shutil

    from PIL import Image

    from faceledger.evaluation import audit_report as ar
    from faceledger.evaluation.report_pdf import HEADLESS

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    report = audit(direct.scores, targets=(1e-1,), thresholds=(40.0, 80.0), resamples=20)
    about = {"endpoint": "http://test", "protocol": "verification", "dataset": "lfw by gender",
             "plan": {"calls": {"CompareFaces": 64}}}
    page = tmp_path / "report.html"
    page.write_text(ar.render_html(report, "Audit", about=about))
    flags = [browser, *HEADLESS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    n_points, groups = len(report.points), len(report.points[0].groups)
    assert dom.count('class="summary"') == 1 and dom.count("<li>") == len(ar.summary_sentences(report)) >= 4
    assert dom.count("<dt>") == len(ar.EXPLAINED) and 'id="methods"' in dom
    assert dom.count('class="plot bars"') == n_points
    drawn = sum(bool(getattr(g, k).trials) for p in report.points for g in p.groups for k in ("fmr", "fnmr"))
    assert dom.count('class="bar"') == dom.count('class="ci"') == drawn >= n_points
    assert dom.count('class="plot det"') == 1 and dom.count('class="curve"') >= groups
    labels = [float(x) for x in __import__("re").findall(r'class="op-label"[^>]*>([^<]+)<', dom)]
    assert {40.0, 80.0} <= set(labels)  # the endpoint's own Similarity on the DET curves
    assert dom.index('id="summary"') < dom.index('id="methods"') < dom.index("<h2>Curves")
    # the bar charts alone, screenshotted: each group's colour is drawn in the chart region
    bars = tmp_path / "bars.html"
    bars.write_text("".join(ar._head("bars")) + "".join(ar._bars_svg(p) for p in report.points) + "</body></html>")
    shot = tmp_path / "bars.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,900", bars.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    for colour in ar.PALETTE[:groups]:
        rgb = np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)])
        assert (np.abs(pixels.astype(int) - rgb).sum(axis=-1) < 60).sum() > 30, f"no bar drawn in {colour}"


def test_identification_compared_with_another_endpoint(server, other_server, tmp_path):
    """The same gallery and probes searched on two endpoints: both tables side by side, each
    endpoint's collection deleted, the second's calls in its own journal."""
    out = tmp_path / "aclu-cmp"
    args = _cli(server, server["url"], out, "--protocol", "identification", "--gallery", "20", "--probes", "8",
                "--compare-with", other_server["url"], "--yes", "--json")
    args[args.index("--people") + 1] = "300"
    run = subprocess.run(args, env=_env(server), capture_output=True, timeout=600)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    report = json.loads(run.stdout)
    other = report["compare_with"]
    assert other["endpoint"] == other_server["url"] and other["gallery"] == report["gallery"] == 20
    assert other["probes"] == report["probes"] == 8 and other["calls_sent"] > 20  # its gallery indexed, its probes searched
    assert {(r["group"], r["threshold"]) for r in other["identification"]} == \
        {(r["group"], r["threshold"]) for r in report["identification"]}
    page = (out / "report.html").read_text()
    assert f"falsely matched (FPIR): {server['url']}" in page and f"falsely matched (FPIR): {other_server['url']}" in page
    assert (out / "compare" / "aclu_table.md").is_file() and (out / "compare" / "journal.sqlite").is_file()
    for s in (server, other_server):
        assert not [c for c in _collections(s) if c.startswith("faceledger-audit-")]
    refused = subprocess.run(_cli(server, server["url"], tmp_path / "x", "--protocol", "identification",
                                  "--compare-with", "engine", "--dry-run", "--json"), env=_env(server), capture_output=True,
                             timeout=300)
    assert refused.returncode != 0 and "another endpoint" in refused.stdout.decode()
