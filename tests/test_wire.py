"""The wire against an adversary: what a signature must cover, what /metrics may be made to
say, and a live-server sample of the malformed-request corpus."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from faceledger.governance.app import open_service
from faceledger.governance.keys import KeyStore
from faceledger.interfaces.http.app import create_app
from faceledger.interfaces.http.metrics import Metrics

from .malformed import corpus
from .live import LiveServer


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings, engine):
    root = tmp_path_factory.mktemp("wire")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         s3_root=root / "s3", auth="sigv4", body_read_timeout=2)
    key, secret = KeyStore(s.keys_file).create("wire", principal="wire-tests", roles=("admin",), purposes=("access-control",))
    app = create_app(s, open_service(s, engine=engine))
    http_server = LiveServer(app)
    port = http_server.port
    yield {"url": f"http://127.0.0.1:{port}", "key": key.access_key_id, "secret": secret, "root": root, "app": app}
    http_server.stop()


def signed(server, operation: str, body: dict | bytes, *, sign_only: tuple[str, ...] | None = None,
           extra: dict[str, str] | None = None) -> AWSRequest:
    """A JSON 1.1 request signed as botocore signs it, or over ``sign_only`` headers alone."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = AWSRequest("POST", server["url"] + "/", data=data, headers={
        "X-Amz-Target": f"RekognitionService.{operation}", "Content-Type": "application/x-amz-json-1.1", **(extra or {})})

    class Narrow(SigV4Auth):
        def headers_to_sign(self, request):
            headers = super().headers_to_sign(request)
            if sign_only is not None:
                for name in list(headers.keys()):
                    if name.lower() not in sign_only:
                        del headers[name]
            return headers

    Narrow(Credentials(server["key"], server["secret"]), "rekognition", "us-east-1").add_auth(req)
    return req


def send(req: AWSRequest, **changes: str) -> httpx.Response:
    headers = {k: v for k, v in req.headers.items()}
    headers.update(changes)
    return httpx.post(req.url, headers=headers, content=req.body, timeout=30)


def rekognition(server):
    return boto3.client("rekognition", endpoint_url=server["url"], region_name="us-east-1",
                        aws_access_key_id=server["key"], aws_secret_access_key=server["secret"],
                        config=Config(retries={"max_attempts": 1}))


def test_a_replayed_signature_cannot_change_the_operation(server):
    """The issue's attack: DescribeCollection signed over host;x-amz-date, replayed as DeleteCollection."""
    rek = rekognition(server)
    rek.create_collection(CollectionId="kept")
    narrow = signed(server, "DescribeCollection", {"CollectionId": "kept"}, sign_only=("host", "x-amz-date"))
    r = send(narrow)
    assert r.status_code == 403 and r.json()["__type"] == "InvalidSignatureException"
    assert "x-amz-target" in r.json()["message"] and "content-type" in r.json()["message"]
    r = send(narrow, **{"X-Amz-Target": "RekognitionService.DeleteCollection"})
    assert r.status_code == 403 and r.json()["__type"] == "InvalidSignatureException"
    # Signed as botocore signs: the target is covered, so changing it breaks the signature.
    full = signed(server, "DescribeCollection", {"CollectionId": "kept"})
    assert send(full).status_code == 200
    r = send(full, **{"X-Amz-Target": "RekognitionService.DeleteCollection"})
    assert r.status_code == 403 and r.json()["__type"] == "InvalidSignatureException"
    assert "kept" in rek.list_collections()["CollectionIds"]


def test_headers_added_after_signing_are_refused(server):
    """X-Faceledger-Purpose / -Case (and any x-amz-*) must be signed; content-type too."""
    ok = signed(server, "ListCollections", {})
    assert send(ok).status_code == 200
    for header, value in [("X-Faceledger-Purpose", "law-enforcement"), ("X-Faceledger-Case", "CASE-9"),
                          ("X-Amz-Security-Token", "x"), ("X-Faceledger-Anything", "1")]:
        r = send(ok, **{header: value})
        assert r.status_code == 403 and r.json()["__type"] == "InvalidSignatureException", header
        assert header.lower() in r.json()["message"]
    r = send(ok, **{"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 403
    no_type = signed(server, "ListCollections", {}, sign_only=("host", "x-amz-date", "x-amz-target"))
    assert send(no_type).status_code == 403
    # signed before sending, as docs/policy.md tells boto3 users: honoured
    stated = signed(server, "ListCollections", {}, extra={"X-Faceledger-Case": "CASE-9"})
    assert send(stated).status_code == 200


def test_unauthenticated_bodies_are_not_read(server):
    """An unsigned or unknown-key request is refused before its body is read: a client that
    never finishes sending still gets its 403 at once (the server did not wait for the body)."""
    host, port = server["url"][7:].split(":")
    for auth in ("", "Authorization: AWS4-HMAC-SHA256 Credential=NOPE/20250101/us-east-1/rekognition/aws4_request, "
                     "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64 + "\r\n"):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n"
                          "X-Amz-Target: RekognitionService.ListCollections\r\n" + auth + "\r\n").encode() + b"{")
            start = time.monotonic()
            reply = sock.recv(4096).decode("latin-1")
            assert reply.startswith("HTTP/1.1 403") and time.monotonic() - start < 1.5, reply[:200]


def test_a_slow_body_times_out(server):
    """A signed request whose body trickles is cut off after body_read_timeout (2 s here): 408."""
    req = signed(server, "ListCollections", b"{}" + b" " * 100)
    host, port = server["url"][7:].split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "content-length")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {len(req.body)}\r\n\r\n".encode()
                     + req.body[:10])
        start = time.monotonic()
        reply = sock.recv(4096).decode("latin-1")
    assert reply.startswith("HTTP/1.1 408") and 1.5 < time.monotonic() - start < 6, reply[:200]


def test_the_aws_cli_works_unchanged(server):
    """The AWS CLI (botocore's signer, its own defaults) passes the signed-header rule untouched."""
    aws = Path(sys.executable).with_name("aws")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server["key"], "AWS_SECRET_ACCESS_KEY": server["secret"],
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    out = subprocess.run([str(aws), "rekognition", "create-collection", "--collection-id", "from-cli",
                          "--endpoint-url", server["url"]], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([str(aws), "rekognition", "list-collections", "--endpoint-url", server["url"]],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "from-cli" in json.loads(out.stdout)["CollectionIds"], out.stderr


_SERIES = re.compile(r'^faceledger_request(?:s_total|_seconds_(?:bucket|sum|count))\{operation="([A-Za-z]+)",'
                     r'outcome="([A-Za-z0-9]+)"(?:,le="[^"\\\n]+")?\} [0-9.e+-]+$')


def test_metrics_labels_come_only_from_known_operations(server):
    """20,000 targets an attacker chose (quotes, newlines, random names) add one 'unknown' series."""
    before = httpx.get(server["url"] + "/metrics").text
    with httpx.Client() as client:
        for i in range(300):
            target = ['RekognitionService.X"} 1 evil{a="', f"RekognitionService.Op{i}", f"Other.{i}", "\\"][i % 4]
            client.post(server["url"] + "/", headers={"X-Amz-Target": target}, content=b"{}")
    text = httpx.get(server["url"] + "/metrics").text
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(_SERIES.match(line) for line in lines), [line for line in lines if not _SERIES.match(line)][:3]
    operations = {_SERIES.match(line)[1] for line in lines}
    assert "unknown" in operations and not any(o.startswith("Op") or o == "X" for o in operations)
    assert len(text) - len(before) < 5000  # one new series (plus its histogram), not 300
    m = Metrics({"DetectFaces"})
    for i in range(20_000):
        m.observe(f'Op{i}"\n', f"Code{i % 3}", 0.01)
    assert len(m.render()) < 10_000


def test_a_sample_of_the_corpus_against_a_live_server(server, lfw):
    """Every 10th malformed request, signed with the server's key, over real HTTP: no 5xx."""
    cases = corpus(lfw.image("Colin_Powell", 1).read_bytes(), server["root"] / "s3")[::10]
    creds = Credentials(server["key"], server["secret"])
    statuses = []
    with httpx.Client(timeout=60) as client:
        for case in cases:
            headers = {k: v for k, v in case.headers.items() if k != "content-length"}
            if case.path == "/":
                req = AWSRequest(case.method, server["url"] + case.path, data=case.body, headers=headers)
                SigV4Auth(creds, "rekognition", "us-east-1").add_auth(req)
                headers = dict(req.headers.items())
            else:
                headers["Authorization"] = f"Bearer {server['key']}:{server['secret']}"
            r = client.request(case.method, server["url"] + case.path, headers=headers, content=case.body)
            statuses.append((case.name, r.status_code))
    assert len(statuses) >= 50
    assert not [s for s in statuses if s[1] >= 500], [s for s in statuses if s[1] >= 500]
