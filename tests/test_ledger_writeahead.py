"""No change without its ledger entry: intents are written ahead, a ledger that cannot be written
refuses the request (503) before anything changes, every request that reaches the server is
recorded, refused or not, and SIGKILLs of a real `faceledger serve` under concurrent writers leave
no stored or deleted face without its intent."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from faceledger import errors
from faceledger.governance.app import open_service
from faceledger.governance.gate import Gate
from faceledger.governance.keys import KeyStore
from faceledger.governance.ledger import Ledger
from faceledger.governance.policy import Context, Policy, Principal
from faceledger.interfaces.http.app import create_app
from .live import LiveServer, free_port as _free_port

ADMIN = Context(Principal("op", ("admin",), ("*",)), None, None)


def _client(url: str, key: str, secret: str):
    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}, parameter_validation=False, read_timeout=60,
                                      connect_timeout=5))


class LedgerLock:
    """Another process's write transaction on the ledger database, as a stuck writer or an
    attacker holding the file would leave it."""

    def __init__(self, path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)

    def __enter__(self):
        self.db.execute("BEGIN EXCLUSIVE")
        return self

    def __exit__(self, *exc) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


def test_the_gate_writes_the_intent_before_running_and_runs_nothing_without_it(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", busy_ms=200)
    gate = Gate(None, Policy.load("moratorium"), ledger)
    ran = []

    def change():
        ran.append(ledger.end()[0])  # what the ledger held when the change happened
        return {"collection_arn": "arn"}

    gate.call(ADMIN, "CreateCollection", change, collection="c")
    intent, outcome = list(ledger.entries())[-2:]
    assert ran == [intent.seq] and intent.body["phase"] == "intent" and "outcome" not in intent.body
    assert outcome.body["phase"] == "outcome" and outcome.body["intent"] == intent.seq and outcome.body["outcome"] == "ok"
    with LedgerLock(ledger.path):
        with pytest.raises(errors.BackendUnavailableError, match="not served"):
            gate.call(ADMIN, "CreateCollection", change, collection="d")
    assert len(ran) == 1  # never ran


@pytest.fixture(scope="module")
def live(tmp_path_factory, settings, engine):
    """An in-process `faceledger serve` app whose ledger gives up waiting for its lock after 0.3 s."""
    root = tmp_path_factory.mktemp("writeahead")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         ledger_busy_ms=300, auth="sigv4")
    key, secret = KeyStore(s.keys_file).create("t", principal="writer", roles=("admin",), purposes=("access-control",))
    app = create_app(s, open_service(s, engine=engine))
    http_server = LiveServer(app)
    port = http_server.port
    url = f"http://127.0.0.1:{port}"
    yield {"url": url, "rek": _client(url, key.access_key_id, secret), "ledger": Ledger(s.ledger),
           "bearer": {"Authorization": f"Bearer {key.access_key_id}:{secret}"}}
    http_server.stop()


def _code(exc) -> str:
    return exc.value.response["Error"]["Code"]


def test_with_the_ledger_locked_nothing_is_stored_or_deleted(live, lfw):
    rek, ledger = live["rek"], live["ledger"]
    rek.create_collection(CollectionId="locked")
    face = rek.index_faces(CollectionId="locked", Image={"Bytes": lfw.image("Colin_Powell", 1).read_bytes()})
    face_id = face["FaceRecords"][0]["Face"]["FaceId"]
    end = ledger.end()[0]
    with LedgerLock(ledger.path):
        with pytest.raises(ClientError) as exc:
            rek.index_faces(CollectionId="locked", Image={"Bytes": lfw.image("Tony_Blair", 1).read_bytes()})
        assert _code(exc) == "ServiceUnavailableException" and exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        with pytest.raises(ClientError) as exc:
            rek.delete_faces(CollectionId="locked", FaceIds=[face_id])
        assert _code(exc) == "ServiceUnavailableException"
        with pytest.raises(ClientError) as exc:  # a request refused by validation cannot be recorded either
            rek.index_faces(CollectionId="locked", Image={"Bytes": b"x"}, MaxFaces=0)
        assert _code(exc) == "ServiceUnavailableException"
    faces = rek.list_faces(CollectionId="locked")["Faces"]
    assert [f["FaceId"] for f in faces] == [face_id]  # Tony Blair was not stored, Colin Powell not deleted
    assert [e.body["operation"] for e in ledger.entries(after_seq=end)] == ["ListFaces", "ListFaces"]


def test_requests_refused_before_the_policy_are_recorded(live):
    ledger, url = live["ledger"], live["url"]
    target = {"X-Amz-Target": "RekognitionService.IndexFaces", "Content-Type": "application/x-amz-json-1.1"}
    cases = [
        ({**live["bearer"], **target}, {"CollectionId": "x", "Image": {"Bytes": "!!not base64!!"}}, "InvalidParameterException"),
        ({**live["bearer"], **target}, {"CollectionId": "x", "Image": {"Bytes": "AAAA"}, "MaxFaces": 0}, None),
        ({**live["bearer"], **target}, "[1, 2", "SerializationException"),
        ({**live["bearer"], "X-Amz-Target": "RekognitionService.Nope"}, {}, "UnknownOperationException"),
        ({"Authorization": "Bearer AKIANOSUCHKEY:nope", **target}, {}, "UnrecognizedClientException"),
    ]
    for headers, body, code in cases:
        end = ledger.end()[0]
        data = body if isinstance(body, str) else json.dumps(body)
        r = httpx.post(url + "/", headers=headers, content=data)
        assert 400 <= r.status_code < 500, r.text
        entries = list(ledger.entries(after_seq=end))
        assert len(entries) == 1, entries
        e = entries[0].body
        assert e["phase"] == "refused" and e["outcome"] == r.json()["__type"] and (code is None or e["outcome"] == code)
        assert e["body_sha256"] == hashlib.sha256(data.encode()).hexdigest()
    assert ledger.verify()[1] == []


# --- 10 SIGKILLs of a real server under 4 concurrent writers -----------------------------------------------


def _serve(env: dict, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "faceledger.interfaces.cli.main", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("faceledger serve did not start within 90 s")


def test_sigkills_under_concurrent_writers_leave_no_change_without_its_intent(tmp_path, lfw):
    people = [p for p, imgs in sorted(lfw.people().items()) if imgs][:400]
    images = {f"img-{i}": lfw.image(p, 1).read_bytes() for i, p in enumerate(people)}
    digests = {ext: hashlib.sha256(b).hexdigest() for ext, b in images.items()}
    env = {**os.environ, "FACELEDGER_STORE": str(tmp_path / "store.sqlite"), "FACELEDGER_KEYS_FILE": str(tmp_path / "k.json"),
           "FACELEDGER_LEDGER": str(tmp_path / "ledger.sqlite"), "FACELEDGER_ONNX_THREADS": "1"}
    key, secret = KeyStore(tmp_path / "k.json").create("t", principal="writer", roles=("admin",))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    rng = random.Random(20)
    proc = _serve(env, port)
    _client(url, key.access_key_id, secret).create_collection(CollectionId="crash")
    queue = list(images)
    lock = threading.Lock()
    acked: dict[str, str] = {}  # face id -> external image id, as the client was told
    stop = threading.Event()

    def writer(w: int) -> None:
        rek = _client(url, key.access_key_id, secret)
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                ext = queue.pop()
            try:
                if acked and rng.random() < 0.3:  # now and then delete a face the client knows
                    with lock:
                        victim = rng.choice(sorted(acked))
                    rek.delete_faces(CollectionId="crash", FaceIds=[victim])
                r = rek.index_faces(CollectionId="crash", Image={"Bytes": images[ext]}, ExternalImageId=ext, MaxFaces=1)
                # a server killed mid-response: botocore reads the cut body without checking its
                # length and returns {"message": <the part>}: the client was told nothing, as on an error
                with lock:
                    acked.update({f["Face"]["FaceId"]: ext for f in r.get("FaceRecords", [])})
            except (BotoCoreError, ClientError):
                time.sleep(0.3)  # the server is down or refused: go on with the next image

    kills = 0
    for _ in range(10):
        stop.clear()
        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        # Kill while writes are under way: once this life of the server has acknowledged a few
        # writes (a fixed sleep killed a loaded machine's server before its first write), then at a
        # random moment.
        with lock:
            before = len(acked)
        deadline = time.monotonic() + 120
        while len(acked) < before + 3 and queue and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.5))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        stop.set()
        for t in threads:
            t.join(90)
        proc = _serve(env, port)
    try:
        rek = _client(url, key.access_key_id, secret)
        stored, token = [], None
        while True:
            page = rek.list_faces(CollectionId="crash", MaxResults=4096, **({"NextToken": token} if token else {}))
            stored += page["Faces"]
            token = page.get("NextToken")
            if not token:
                break
    finally:
        proc.terminate()
        proc.wait(30)
    ledger = Ledger(tmp_path / "ledger.sqlite", create=False)
    assert ledger.verify()[1] == []
    intents = [e.body for e in ledger.entries() if e.body.get("phase") == "intent"]
    indexed = {(d, e["collection"]) for e in intents if e["operation"] == "IndexFaces" for d in e["image_sha256"]}
    deleting = {f for e in intents if e["operation"] == "DeleteFaces" for f in e["parameters"]["FaceIds"]}
    outcomes = {e.body["intent"] for e in ledger.entries() if e.body.get("phase") == "outcome"}
    unfinished = [e for e in ledger.entries() if e.body.get("phase") == "intent" and e.seq not in outcomes]
    stored_ids = {f["FaceId"] for f in stored}
    assert kills == 10 and len(stored) > 20, (kills, len(stored))
    without_intent = [f for f in stored if (digests[f["ExternalImageId"]], "crash") not in indexed]
    deleted_without_intent = [f for f in acked if f not in stored_ids and f not in deleting]
    print(f"{kills} kills, {len(stored)} faces stored, {len(acked)} acknowledged, {len(deleting)} deletions asked, "
          f"{len(unfinished)} intents without an outcome")
    assert without_intent == [] and deleted_without_intent == []
