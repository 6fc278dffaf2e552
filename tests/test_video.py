"""Stored video: face detection and face search jobs on videos made from LFW photos (the truth known).

The videos (tests/video_media.py) are generated here, in a temporary folder: H.264 in MP4 with a
variable frame rate, and in MOV with the pixels stored turned and a display matrix turning them
back. Three people are in the collection (indexed from other photos of them); one is not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faceledger import errors
from faceledger.governance.app import open_gate
from faceledger.governance.policy import Context, Principal
from faceledger.governance.video import run_one
from faceledger.scoring.calibration import similarity_of_fmr
from faceledger.service import api_model
from faceledger.interfaces.http.wire import Dispatcher
from faceledger.vision import video

from .video_media import Appearance, write_video

FMR = 1e-4
WIDTH, HEIGHT, DURATION = 640, 360, 6.0


def _people(lfw, engine, settings, n=3):
    """``n`` people whose first photo a still search finds among their next two at FMR 1e-5 (at
    such rates dlib matches only part of LFW's genuine pairs: the video, searched at 1e-4, must do
    what a still does, not better), and one more person as the outsider."""
    from faceledger.governance.app import open_service

    m = open_service(settings, engine=engine).bound()
    bar = similarity_of_fmr(FMR / 10)  # a margin: a pair just over the bar may fall under it once resized and encoded
    everyone = lfw.people()
    chosen = []
    for name in sorted(k for k, ps in everyone.items() if len(ps) >= 4):
        if len(chosen) == n:
            return chosen + [(name, everyone[name])]
        probe, *gallery = [engine.embed(p, max_faces=1) for p in everyone[name][:3]]
        if probe and all(gallery) and max(m.similarity(m.scoring.score(probe[0].template.vector, g[0].template.vector))
                                          for g in gallery) >= bar:
            chosen.append((name, everyone[name]))
    raise AssertionError("not enough LFW people")


@pytest.fixture(scope="module")
def media(lfw, engine, settings, tmp_path_factory):
    """The script (who appears when), and the two videos under an S3 root."""
    (a, pa), (b, pb), (c, pc), (d, pd) = _people(lfw, engine, settings)
    script = [
        Appearance(a, pa[0], 0.4, 2.6, (0.2, 0.5), (0.4, 0.45), (140, 170)),  # enters, moves right, grows
        Appearance(b, pb[0], 1.0, 4.6, (0.8, 0.45), (0.6, 0.55), (170, 130)),  # moves left, shrinks
        Appearance(d, pd[0], 2.8, 4.4, (0.3, 0.5), (0.4, 0.5), (150, 150)),  # not in the collection
        Appearance(a, pa[0], 3.8, 5.6, (0.15, 0.5), (0.2, 0.5), (150, 150)),  # the same person again, later
    ]
    root = tmp_path_factory.mktemp("s3")
    (root / "footage").mkdir()
    mp4 = write_video(root / "footage" / "walk.mp4", script, width=WIDTH, height=HEIGHT, duration=DURATION)
    mov = write_video(root / "footage" / "phone.mov", script, width=WIDTH, height=HEIGHT, duration=DURATION, rotate=90)
    short = write_video(root / "footage" / "short.mp4", [Appearance(a, pa[0], 0.0, 2.0, (0.5, 0.5), (0.55, 0.5), (150, 150))],
                        width=320, height=240, duration=2.0)
    gallery = {a: pa[1:3], b: pb[1:3], c: pc[1:3]}
    return {"script": script, "mp4": mp4, "mov": mov, "short": short, "root": root, "gallery": gallery, "outsider": d}


@pytest.fixture(scope="module")
def gate(settings, media, tmp_path_factory, engine):
    """A gate under the moratorium policy, with its own store, ledger and job queue."""
    home = tmp_path_factory.mktemp("videostate")
    s = settings.replace(store=home / "store.sqlite", ledger=home / "ledger.sqlite", s3_root=media["root"])
    from faceledger.governance.app import open_service

    g = open_gate(s, open_service(s, engine=engine))
    admin = Context(Principal("operator", ("admin",), ("*",)), None, None, "python")
    svc = g.service
    g.call(admin, "CreateCollection", lambda **x: svc.create_collection("known"), collection="known")
    for name, photos in media["gallery"].items():
        for p in photos:
            g.call(admin, "IndexFaces", lambda **x: svc.index_faces("known", p, external_image_id=name, max_faces=1),
                   collection="known")
    return g


INVESTIGATOR = Context(Principal("ines", ("investigator",), ("missing-person",)), "missing-person", "CASE-7", "python")
REVIEWER = Context(Principal("rita", ("reviewer",), ()), None, None, "python")
USER = Context(Principal("ulf", ("user",), ()), None, None, "python")
NO_PURPOSE = Context(Principal("ivan", ("investigator",), ()), None, None, "python")  # may search, states no purpose


def _start_search(gate, ctx, path, **kwargs):
    svc = gate.service
    return gate.call(ctx, "StartFaceSearch", lambda **x: svc.start_face_search(
        path, "known", face_match_threshold=similarity_of_fmr(FMR), **kwargs, **x), collection="known").job_id


def _all_persons(gate, ctx, job_id, sort_by="TIMESTAMP", page=7):
    svc, persons, token = gate.service, [], None
    while True:
        r = gate.call(ctx, "GetFaceSearch", lambda **x: svc.get_face_search(
            job_id, max_results=page, next_token=token, sort_by=sort_by, **x))
        wire = api_model.output("GetFaceSearch", r)
        persons += wire.get("Persons", [])
        token = wire.get("NextToken")
        if not token:
            return wire, persons


@pytest.fixture(scope="module", params=["mp4", "mov"])  # the MOV: stored turned, with a display matrix
def search_job(request, gate, media):
    job_id = _start_search(gate, INVESTIGATOR, media[request.param])
    done = run_one(gate, job_id)
    assert done.status == "SUCCEEDED", done.status_message
    wire, persons = _all_persons(gate, INVESTIGATOR, job_id)
    return job_id, wire, persons


def _tracks(persons):
    tracks: dict[int, list] = {}
    for p in persons:
        tracks.setdefault(p["Person"]["Index"], []).append(p)
    return tracks


def test_face_search_finds_each_person_with_the_right_identity_and_times(search_job, media, gate):
    """Every appearance is one PersonIndex, seen from its entry to its exit within 0.5 s, matched to
    the right person of the collection; the outsider is returned with no candidate at FMR 1e-4."""
    job_id, wire, persons = search_job
    assert wire["JobStatus"] == "SUCCEEDED" and wire["VideoMetadata"]["FrameWidth"] == WIDTH
    assert wire["VideoMetadata"]["FrameHeight"] == HEIGHT and abs(wire["VideoMetadata"]["DurationMillis"] - 6000) < 100
    tracks = _tracks(persons)
    assert len(tracks) == len(media["script"]), {i: (t[0]["Timestamp"], t[-1]["Timestamp"]) for i, t in tracks.items()}
    names = {fid: name for fid, name in _face_names(gate).items()}
    found = []
    for index, seen in tracks.items():
        first, last = seen[0]["Timestamp"], seen[-1]["Timestamp"]
        truth = min(media["script"], key=lambda a: abs(a.t_in * 1000 - first) + abs(a.t_out * 1000 - last))
        assert abs(first - truth.t_in * 1000) <= 500 and abs(last - truth.t_out * 1000) <= 500, (truth.name, first, last)
        matches = seen[0]["FaceMatches"]
        if truth.name == media["outsider"]:
            assert matches == [], "a person outside the collection was returned"
        else:
            assert matches and names[matches[0]["Face"]["FaceId"]] == truth.name, (truth.name, first, last, index, [
                (r[0], r[1], len(json.loads(r[2]))) for r in gate.service.video_jobs._db().execute(
                    "SELECT person, searched_at, matches FROM tracks WHERE job_id = ?", (job_id,))])
            assert {names[m["Face"]["FaceId"]] for m in matches} == {truth.name}  # no one else above the bar
            assert matches[0]["FalseMatchRate"] <= FMR
        found.append((truth.name, truth.t_in))
    assert sorted(found) == sorted((a.name, a.t_in) for a in media["script"])  # each appearance once
    assert all(isinstance(p["Timestamp"], int) for p in persons)


def _face_names(gate):
    admin = Context(Principal("operator", ("admin",), ("*",)), None, None, "python")
    r = gate.call(admin, "ListFaces", lambda **x: gate.service.list_faces("known"), collection="known")
    return {f.face_id: f.external_image_id for f in r.faces}


def test_pages_sorted_by_index_hold_the_same_results(search_job, gate):
    job_id, _, by_time = search_job
    _, by_index = _all_persons(gate, INVESTIGATOR, job_id, sort_by="INDEX", page=5)
    key = lambda p: (p["Timestamp"], p["Person"]["Index"])  # noqa: E731
    assert sorted(by_index, key=key) == sorted(by_time, key=key)
    assert [p["Person"]["Index"] for p in by_index] == sorted(p["Person"]["Index"] for p in by_index)
    assert [p["Timestamp"] for p in by_time] == sorted(p["Timestamp"] for p in by_time)
    with pytest.raises(errors.InvalidPaginationTokenError):  # a token is bound to its job and order
        token = api_model.output("GetFaceSearch", gate.call(INVESTIGATOR, "GetFaceSearch", lambda **x: gate.service.get_face_search(
            job_id, max_results=2, sort_by="INDEX", **x)))["NextToken"]
        gate.call(INVESTIGATOR, "GetFaceSearch", lambda **x: gate.service.get_face_search(
            job_id, max_results=2, next_token=token, sort_by="TIMESTAMP", **x))


def test_search_results_are_in_the_ledger_and_reviewable(search_job, gate):
    """The candidates enter the ledger (linked to the Start that asked, with its purpose and case)
    before GetFaceSearch shows them; a reviewer reviews them; the searcher may not."""
    job_id, wire, _ = search_job
    seq = wire["ResultsLedgerEntry"]
    entry = gate.ledger.get(seq).body
    assert entry["job_id"] == job_id and entry["phase"] == "results" and entry["outcome"] == "ok"
    assert entry["principal"] == "ines" and entry["purpose"] == "missing-person" and entry["case_reference"] == "CASE-7"
    start = gate.ledger.get(entry["start_entry"]).body
    assert start["operation"] == "StartFaceSearch" and start["result"]["job_id"] == job_id
    ids = {c["id"] for c in entry["result"]["candidates"]}
    assert ids and all(c["false_match_rate"] <= FMR for c in entry["result"]["candidates"])
    assert entry["video_sha256"] and len(entry["video_sha256"]) == 64
    from faceledger.governance.ledger_index import LedgerIndex

    index = LedgerIndex(gate.ledger.path.with_name(f"index-{job_id}.sqlite"), gate.ledger)
    index.catch_up()
    assert seq in index.queue("000000000000").seqs  # the review console's queue lists the video's candidates
    review = gate.review(REVIEWER, seq, "confirmed", "the faces match on inspection", sorted(ids)[:1])
    assert review.reviews == seq
    with pytest.raises(errors.AccessDeniedError):  # separation of duties
        gate.review(INVESTIGATOR, seq, "confirmed", "mine")


def test_face_search_refused_without_the_identification_purpose(gate, media):
    """Someone who may not identify can neither start a video search nor read another's: refused,
    and the refusal is in the ledger."""
    before = gate.ledger.last("StartFaceSearch")
    for ctx in (NO_PURPOSE, USER):
        with pytest.raises(errors.AccessDeniedError):
            _start_search(gate, ctx, media["mp4"])
        last = gate.ledger.last("StartFaceSearch")
        assert last.seq != (before.seq if before else None) and last.body["outcome"] == "AccessDeniedException"
        assert last.body["principal"] == ctx.principal.name
    job_id = _start_search(gate, INVESTIGATOR, media["mp4"], client_request_token="not-run-by-the-adversary")
    for ctx in (NO_PURPOSE, USER):
        with pytest.raises(errors.AccessDeniedError):
            gate.call(ctx, "GetFaceSearch", lambda **x: gate.service.get_face_search(job_id, **x))
        last = gate.ledger.last("GetFaceSearch")
        assert last.body["outcome"] == "AccessDeniedException" and last.body["principal"] == ctx.principal.name
    other_account = Context(Principal("oscar", ("investigator",), ("missing-person",), "111111111111"),
                            "missing-person", "CASE-9", "python")
    with pytest.raises(errors.ResourceNotFoundError):  # another tenant's job does not exist for it
        gate.call(other_account, "GetFaceSearch", lambda **x: gate.service.get_face_search(job_id, **x))


def test_no_candidate_leaves_before_the_ledger_has_it(gate, media):
    """A search job that finished but whose results are not in the ledger yet (the worker died
    between the two) shows nothing; the next worker writes the entry, then the results show."""
    jobs = gate.service.video_jobs
    job_id = _start_search(gate, INVESTIGATOR, media["short"], client_request_token="crash-before-ledger")
    assert jobs.run(jobs.claim(job_id)).status == "SUCCEEDED"  # run, not recorded: as a crash would leave it
    get = lambda: api_model.output("GetFaceSearch", gate.call(  # noqa: E731
        INVESTIGATOR, "GetFaceSearch", lambda **x: gate.service.get_face_search(job_id, **x)))
    held = get()
    assert held["JobStatus"] == "IN_PROGRESS" and "Persons" not in held
    assert run_one(gate, job_id) is None  # nothing to claim, but the pending results are recorded on the way
    shown = get()
    assert shown["JobStatus"] == "SUCCEEDED" and shown["Persons"]
    assert gate.ledger.get(shown["ResultsLedgerEntry"]).body["job_id"] == job_id


def test_face_detection_is_not_identification(gate, media):
    """A user with no purpose runs detection on a rotated MOV: faces in upright coordinates,
    timestamps in ms; the job is idempotent under its ClientRequestToken."""
    svc = gate.service
    start = lambda **kw: gate.call(USER, "StartFaceDetection", lambda **x: svc.start_face_detection(  # noqa: E731
        {"S3Object": {"Bucket": "footage", "Name": "phone.mov"}}, **kw, **x)).job_id
    job_id = start(client_request_token="det-1", job_tag="lobby", notification_channel={
        "SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:done", "RoleArn": "arn:aws:iam::123456789012:role/r"})
    assert start(client_request_token="det-1", job_tag="lobby", notification_channel={
        "SNSTopicArn": "arn:aws:sns:us-east-1:123456789012:done", "RoleArn": "arn:aws:iam::123456789012:role/r"}) == job_id
    with pytest.raises(errors.IdempotentParameterMismatchError):
        start(client_request_token="det-1", job_tag="other")
    pending = api_model.output("GetFaceDetection", gate.call(USER, "GetFaceDetection", lambda **x: svc.get_face_detection(job_id)))
    assert pending["JobStatus"] == "IN_PROGRESS" and "Faces" not in pending
    assert run_one(gate, job_id).status == "SUCCEEDED"
    wire = api_model.output("GetFaceDetection", gate.call(USER, "GetFaceDetection", lambda **x: svc.get_face_detection(job_id)))
    assert wire["JobStatus"] == "SUCCEEDED" and wire["JobTag"] == "lobby"
    assert wire["VideoMetadata"]["Codec"] == "h264" and wire["VideoMetadata"]["FrameWidth"] == WIDTH
    faces = wire["Faces"]
    seen = sorted({f["Timestamp"] for f in faces})
    assert 400 <= seen[0] <= 900 and 5100 <= seen[-1] <= 5600
    # upright: the eyes are above the mouth in every face (a frame left turned would put them beside it)
    for f in faces:
        marks = {m["Type"]: m for m in f["Face"]["Landmarks"]}
        assert marks["eyeLeft"]["Y"] < marks["mouthLeft"]["Y"]
    line = json.loads(gate.service.video_jobs.notifications.read_text().splitlines()[-1])
    assert line["JobId"] == job_id and line["Status"] == "SUCCEEDED" and line["API"] == "StartFaceDetection"


def test_a_job_interrupted_by_a_crash_is_resumed_then_failed_with_a_reason(gate, media):
    jobs, svc = gate.service.video_jobs, gate.service
    job_id = gate.call(USER, "StartFaceDetection", lambda **x: svc.start_face_detection(media["mp4"])).job_id
    assert jobs.claim(job_id).status == "RUNNING"  # a worker took it, then stopped without a word
    assert jobs.recover(lease=-1) == [job_id]
    job = jobs.job(job_id, any_account=True)
    assert job.status == "QUEUED" and "resumed" in job.status_message
    jobs.claim(job_id)
    jobs.recover(lease=-1)  # stopped again: MAX_ATTEMPTS runs interrupted
    job = jobs.job(job_id, any_account=True)
    assert job.status == "FAILED" and "interrupted 2 times" in job.status_message
    wire = api_model.output("GetFaceDetection", gate.call(USER, "GetFaceDetection", lambda **x: svc.get_face_detection(job_id)))
    assert wire["JobStatus"] == "FAILED" and "interrupted" in wire["StatusMessage"]


def test_a_killed_worker_process_leaves_a_job_that_the_next_worker_finishes(gate, media, settings, tmp_path):
    """SIGKILL of the process running a job; after a restart the job is taken up and succeeds."""
    svc, jobs = gate.service, gate.service.video_jobs
    job_id = gate.call(USER, "StartFaceDetection", lambda **x: svc.start_face_detection(media["mp4"])).job_id
    s = svc.video_settings
    code = (
        "import sys, time\n"
        "from faceledger.governance.app import open_gate\n"
        "from faceledger.settings import Settings\n"
        "s = Settings.load(store=sys.argv[1], ledger=sys.argv[2])\n"
        "g = open_gate(s)\n"
        "jobs = g.service.video_jobs\n"
        "job = jobs.claim(sys.argv[3])\n"
        "print('claimed', flush=True)\n"
        "jobs.run(job, progress=lambda t, d: time.sleep(0.5))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(s.store), str(s.ledger), job_id],
                            stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"claimed"
    deadline = time.time() + 60
    while not jobs._db().execute("SELECT COUNT(*) FROM results WHERE job_id = ?", (job_id,)).fetchone()[0]:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert jobs.job(job_id, any_account=True).status == "RUNNING"  # as the crash left it
    assert jobs.recover(lease=-1) == [job_id]  # the restarted server's worker sees it stopped
    done = run_one(gate, job_id)
    assert done.status == "SUCCEEDED"
    times = [f["Timestamp"] for f in api_model.output("GetFaceDetection", gate.call(
        USER, "GetFaceDetection", lambda **x: svc.get_face_detection(job_id)))["Faces"]]
    assert len(times) == len(set((t, i) for i, t in enumerate(times))) and times == sorted(times)  # no duplicates from the killed run


def test_video_operations_on_the_wire(gate, media, tmp_path):
    """AWS JSON 1.1 through the dispatcher: S3Object under the root, shapes from botocore's model,
    every way out of the bucket refused, a file that is not H.264 MP4/MOV refused at Start."""
    d = Dispatcher(gate, s3_root=media["root"])
    assert {"StartFaceDetection", "GetFaceDetection", "StartFaceSearch", "GetFaceSearch"} <= d.operations
    body = json.dumps({"Video": {"S3Object": {"Bucket": "footage", "Name": "walk.mp4"}}, "ClientRequestToken": "w-1"})
    first = d.call("StartFaceDetection", body.encode(), USER)
    assert d.call("StartFaceDetection", body.encode(), USER) == first  # idempotent on the wire too
    outside = media["root"].parent / "outside.mp4"
    outside.write_bytes(media["mp4"].read_bytes())
    for name in ("../../outside.mp4", "nothing.mp4"):
        with pytest.raises(errors.InvalidS3ObjectError):
            d.call("StartFaceDetection", json.dumps({"Video": {"S3Object": {"Bucket": "footage", "Name": name}}}).encode(), USER)
    (media["root"] / "footage" / "still.mp4").write_bytes(Path(__file__).read_bytes())
    with pytest.raises(errors.InvalidParameterError):
        d.call("StartFaceDetection", json.dumps({"Video": {"S3Object": {"Bucket": "footage", "Name": "still.mp4"}}}).encode(), USER)
    with pytest.raises(errors.InvalidParameterError):  # the model's own checks: SortBy's enum
        d.call("GetFaceSearch", json.dumps({"JobId": first["JobId"], "SortBy": "NAME"}).encode(), INVESTIGATOR)
    with pytest.raises(errors.ResourceNotFoundError):  # a detection job is no search job
        d.call("GetFaceSearch", json.dumps({"JobId": first["JobId"]}).encode(), INVESTIGATOR)


def test_sampling_follows_presentation_time_and_rotation(media):
    """Variable frame rate: samples every 200 ms of presentation time; the MOV's display matrix
    read and applied (frames as shown: landscape, though stored portrait)."""
    info = video.probe(media["mov"])
    assert info.rotation == 90 and (info.frame_width, info.frame_height) == (WIDTH, HEIGHT)
    stamps = []
    for frame in video.sample_frames(media["mp4"]):
        assert frame.pixels.shape == (HEIGHT, WIDTH, 3)
        stamps.append(frame.timestamp_ms)
    assert len(stamps) == 30 and all(i * 200 <= t < i * 200 + 60 for i, t in enumerate(stamps))
    rotated = next(iter(video.sample_frames(media["mov"])))
    assert rotated.pixels.shape == (HEIGHT, WIDTH, 3)


def test_cli_video_detect_and_a_refused_search(media):
    """`faceledger video detect FILE --json`: the wire's output; `video search` without a purpose is
    refused before anything runs (exit 3, AccessDeniedException)."""
    from typer.testing import CliRunner

    from faceledger.interfaces.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["video", "detect", str(media["mp4"]), "--json"])
    assert r.exit_code == 0, r.output
    wire = json.loads(r.stdout.strip().splitlines()[-1])
    assert wire["JobStatus"] == "SUCCEEDED" and wire["Faces"] and wire["VideoMetadata"]["FrameWidth"] == WIDTH
    r = runner.invoke(app, ["video", "search", str(media["mp4"]), "--collection", "known", "--json"])
    assert r.exit_code == 3 and "AccessDeniedException" in r.stdout


def test_boto3_runs_a_detection_job_against_the_server(media, settings, engine, tmp_path):
    """An unchanged boto3 client: StartFaceDetection (boto3 fills ClientRequestToken itself), the
    server's worker thread runs the job, GetFaceDetection polled until SUCCEEDED."""
    import boto3

    from faceledger.governance.app import open_service
    from faceledger.interfaces.http.app import create_app

    from .live import LiveServer

    s = settings.replace(store=tmp_path / "store.sqlite", ledger=tmp_path / "ledger.sqlite", auth="none",
                         s3_root=media["root"])
    http_server = LiveServer(create_app(s, open_service(s, engine=engine)))
    port = http_server.port
    try:
        rek = boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="y")
        job_id = rek.start_face_detection(Video={"S3Object": {"Bucket": "footage", "Name": "walk.mp4"}})["JobId"]
        deadline = time.time() + 120
        while (r := rek.get_face_detection(JobId=job_id, MaxResults=10))["JobStatus"] == "IN_PROGRESS":
            assert time.time() < deadline
            time.sleep(0.5)
        assert r["JobStatus"] == "SUCCEEDED" and len(r["Faces"]) == 10 and r["NextToken"]
        assert r["VideoMetadata"]["Codec"] == "h264" and r["Faces"][0]["Face"]["BoundingBox"]["Width"] > 0
        rest = rek.get_face_detection(JobId=job_id, NextToken=r["NextToken"])
        assert rest["Faces"] and rest["Faces"][0]["Timestamp"] >= r["Faces"][-1]["Timestamp"]
        # the native REST API: the same operations at /v1/videos/...
        import httpx

        base = f"http://127.0.0.1:{port}/v1"
        started = httpx.post(f"{base}/videos/faces", json={"video": {"S3Object": {"Bucket": "footage", "Name": "walk.mp4"}},
                                                           "client_request_token": "rest-1"})
        assert started.status_code == 200, started.text
        got = httpx.get(f"{base}/videos/faces/{started.json()['JobId']}", params={"max_results": 2})
        assert got.status_code == 200 and got.json()["JobStatus"] in ("IN_PROGRESS", "SUCCEEDED")
        refused = httpx.post(f"{base}/videos/searches", json={"video": {"S3Object": {"Bucket": "footage", "Name": "walk.mp4"}},
                                                              "collection_id": "nowhere"})
        assert refused.status_code == 403 and refused.json()["__type"] == "AccessDeniedException"  # no purpose stated
    finally:
        http_server.stop()


def test_segments_tile_the_video_exactly(media):
    """Segments (how a job is split across workers) yield exactly the samples of the whole."""
    whole = [(f.timestamp_ms, f.pixels.mean()) for f in video.sample_frames(media["mp4"])]
    parts = [(f.timestamp_ms, f.pixels.mean()) for start in range(0, 6000, 1400)
             for f in video.sample_frames(media["mp4"], start_ms=start, end_ms=start + 1400)]
    assert parts == whole


def test_a_job_split_across_worker_processes_gives_the_streamed_results(gate, media, monkeypatch):
    """Two worker processes, segments of 0.6 s: the same faces at the same times as one worker streaming."""
    from faceledger.service import video_jobs

    svc, jobs = gate.service, gate.service.video_jobs

    def faces(workers):
        monkeypatch.setattr(jobs, "workers", workers)
        job_id = gate.call(USER, "StartFaceDetection", lambda **x: svc.start_face_detection(media["mp4"], **x)).job_id
        assert run_one(gate, job_id).status == "SUCCEEDED"
        wire = api_model.output("GetFaceDetection", gate.call(USER, "GetFaceDetection", lambda **x: svc.get_face_detection(job_id)))
        return [(f["Timestamp"], round(f["Face"]["BoundingBox"]["Left"], 4), round(f["Face"]["BoundingBox"]["Top"], 4))
                for f in wire["Faces"]]

    monkeypatch.setattr(video_jobs, "SEGMENT_SECONDS", 0.6)
    split = faces(2)  # 10 segments: parallel_map uses real processes from 8 tasks on
    assert split and split == faces(None)
