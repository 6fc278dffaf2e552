"""Unchanged boto3 code against `faceledger serve`: every operation, error paths, SigV4, the native API."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time

import boto3
import botocore.auth
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from faceledger.governance.app import open_service
from faceledger.interfaces.http.app import create_app
from faceledger.governance.keys import KeyStore
from .live import LiveServer, free_port as _free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings, engine):
    root = tmp_path_factory.mktemp("server")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", s3_root=root / "s3", auth="sigv4")
    (root / "s3" / "photos").mkdir(parents=True)
    key, secret = KeyStore(s.keys_file).create("tests", principal="test-suite", roles=("admin",),
                                                purposes=("access-control",))
    app = create_app(s, open_service(s, engine=engine))
    http_server = LiveServer(app)
    port = http_server.port
    yield {"url": f"http://127.0.0.1:{port}", "key": key.access_key_id, "secret": secret, "settings": s, "root": root}
    http_server.stop()


def client(server, *, secret=None, key=None, region="us-east-1", validate=True, case="TEST-1", purpose=None):
    rek = boto3.client(
        "rekognition", endpoint_url=server["url"], region_name=region,
        aws_access_key_id=key or server["key"], aws_secret_access_key=secret or server["secret"],
        config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
    )

    def state_why(request, **_):  # how boto3 code states a case reference (and purpose): docs/policy.md
        if case:
            request.headers["X-Faceledger-Case"] = case
        if purpose:
            request.headers["X-Faceledger-Purpose"] = purpose

    rek.meta.events.register("before-sign.rekognition", state_why)
    return rek


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def test_every_face_operation_end_to_end(server, lfw):
    rek = client(server)
    colin = lfw.image("Colin_Powell", 1).read_bytes()
    colin2 = lfw.image("Colin_Powell", 2).read_bytes()
    tony = lfw.image("Tony_Blair", 2).read_bytes()  # one face (Tony_Blair_0001 also shows a bystander's)

    faces = rek.detect_faces(Image={"Bytes": colin})
    assert len(faces["FaceDetails"]) == 1 and faces["FaceDetails"][0]["Confidence"] > 90
    assert {"Width", "Height", "Left", "Top"} == set(faces["FaceDetails"][0]["BoundingBox"])
    assert faces["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]

    # Similarity is a function of the false match rate: 40 is FMR 1.9e-3, the cloud API's 80 is 2.5e-6
    same = rek.compare_faces(SourceImage={"Bytes": colin}, TargetImage={"Bytes": colin2}, SimilarityThreshold=40)
    assert same["FaceMatches"][0]["Similarity"] >= 40
    other = rek.compare_faces(SourceImage={"Bytes": colin}, TargetImage={"Bytes": tony})
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1

    assert rek.create_collection(CollectionId="e2e")["StatusCode"] == 200
    assert "e2e" in rek.list_collections()["CollectionIds"]
    indexed = rek.index_faces(CollectionId="e2e", Image={"Bytes": colin}, ExternalImageId="colin-1")
    colin_face = indexed["FaceRecords"][0]["Face"]["FaceId"]
    (server["root"] / "s3" / "photos" / "tony.jpg").write_bytes(tony)
    from_s3 = rek.index_faces(CollectionId="e2e", Image={"S3Object": {"Bucket": "photos", "Name": "tony.jpg"}})
    tony_face = from_s3["FaceRecords"][0]["Face"]["FaceId"]
    second = rek.index_faces(CollectionId="e2e", Image={"Bytes": colin2})["FaceRecords"][0]["Face"]["FaceId"]
    assert rek.describe_collection(CollectionId="e2e")["FaceCount"] == 3
    listed = rek.list_faces(CollectionId="e2e", MaxResults=2)
    assert len(listed["Faces"]) == 2 and listed["NextToken"]
    rest = rek.list_faces(CollectionId="e2e", MaxResults=2, NextToken=listed["NextToken"])
    assert len(rest["Faces"]) == 1 and "NextToken" not in rest

    found = rek.search_faces_by_image(CollectionId="e2e", Image={"Bytes": lfw.image("Colin_Powell", 3).read_bytes()},
                                      FaceMatchThreshold=40)
    assert {m["Face"]["FaceId"] for m in found["FaceMatches"]} == {colin_face, second}
    by_id = rek.search_faces(CollectionId="e2e", FaceId=colin_face, FaceMatchThreshold=40)
    assert [m["Face"]["FaceId"] for m in by_id["FaceMatches"]] == [second]

    rek.create_user(CollectionId="e2e", UserId="colin")
    assoc = rek.associate_faces(CollectionId="e2e", UserId="colin", FaceIds=[colin_face, second], UserMatchThreshold=40)
    assert len(assoc["AssociatedFaces"]) == 2 and assoc["UserStatus"] == "ACTIVE"
    assert rek.list_users(CollectionId="e2e")["Users"] == [{"UserId": "colin", "UserStatus": "ACTIVE"}]
    users = rek.search_users_by_image(CollectionId="e2e", Image={"Bytes": lfw.image("Colin_Powell", 4).read_bytes()},
                                      UserMatchThreshold=40)
    assert users["UserMatches"][0]["User"]["UserId"] == "colin"
    by_face = rek.search_users(CollectionId="e2e", FaceId=second, UserMatchThreshold=40)
    assert by_face["UserMatches"][0]["User"]["UserId"] == "colin"
    dis = rek.disassociate_faces(CollectionId="e2e", UserId="colin", FaceIds=[second])
    assert dis["DisassociatedFaces"] == [{"FaceId": second}]
    rek.delete_user(CollectionId="e2e", UserId="colin")
    deleted = rek.delete_faces(CollectionId="e2e", FaceIds=[tony_face])
    assert deleted["DeletedFaces"] == [tony_face]
    assert rek.delete_collection(CollectionId="e2e")["StatusCode"] == 200


def test_identification_is_purpose_bound_over_the_wire(server, lfw):
    """A key without an identification purpose, and a denied purpose, get AccessDenied; both are recorded."""
    from faceledger.governance.ledger import Ledger

    rek = client(server)
    rek.create_collection(CollectionId="purpose")
    probe = {"Bytes": lfw.image("Colin_Powell", 1).read_bytes()}
    plain, plain_secret = KeyStore(server["settings"].keys_file).create("no purpose", roles=("investigator",))
    with pytest.raises(ClientError) as exc:
        client(server, key=plain.access_key_id, secret=plain_secret, purpose="missing-person").search_faces_by_image(
            CollectionId="purpose", Image=probe)
    assert code(exc) == "AccessDeniedException" and "may not act for the purpose" in str(exc.value)
    with pytest.raises(ClientError) as exc:
        client(server, purpose="law-enforcement").search_faces_by_image(CollectionId="purpose", Image=probe)
    assert code(exc) == "AccessDeniedException" and "denies identification" in str(exc.value)
    casey, casey_secret = KeyStore(server["settings"].keys_file).create("needs a case", roles=("investigator",),
                                                                         purposes=("missing-person",))
    with pytest.raises(ClientError) as exc:  # missing-person needs a case; access-control (the server key's) does not
        client(server, key=casey.access_key_id, secret=casey_secret, case=None).search_faces_by_image(
            CollectionId="purpose", Image=probe)
    assert code(exc) == "AccessDeniedException" and "case reference" in str(exc.value)
    denied = [e.body for e in Ledger(server["settings"].ledger).entries_of("SearchFacesByImage")
              if e.body.get("outcome") == "AccessDeniedException"]
    assert len(denied) >= 3 and {d["principal"] for d in denied} >= {plain.access_key_id, "test-suite", casey.access_key_id}


def test_error_paths_have_the_cloud_api_codes(server, lfw):
    rek = client(server)
    with pytest.raises(ClientError) as e:
        rek.describe_collection(CollectionId="missing")
    assert code(e) == "ResourceNotFoundException"
    rek.create_collection(CollectionId="dupe")
    with pytest.raises(ClientError) as e:
        rek.create_collection(CollectionId="dupe")
    assert code(e) == "ResourceAlreadyExistsException"
    with pytest.raises(ClientError) as e:  # boto3 does not check patterns; the server does
        rek.create_collection(CollectionId="no spaces")
    assert code(e) == "InvalidParameterException"
    loose = client(server, validate=False)
    with pytest.raises(ClientError) as e:  # ranges boto3 would have checked are checked again
        loose.search_faces_by_image(CollectionId="dupe", Image={"Bytes": b"x"}, MaxFaces=0)
    assert code(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        rek.detect_faces(Image={"Bytes": b"this is not an image"})
    assert code(e) == "InvalidImageFormatException"
    with pytest.raises(ClientError) as e:
        loose.detect_faces(Image={"Bytes": b"\xff\xd8\xff" + b"\x00" * (5 * 1024 * 1024 + 10)})
    assert code(e) == "ImageTooLargeException"
    with pytest.raises(ClientError) as e:
        rek.detect_faces(Image={"S3Object": {"Bucket": "photos", "Name": "../../keys.json"}})
    assert code(e) == "InvalidS3ObjectException"
    with pytest.raises(ClientError) as e:
        rek.detect_faces(Image={"Bytes": lfw.image("Colin_Powell", 1).read_bytes()}, Attributes=["GENDER"])
    assert code(e) == "InvalidParameterException" and "never estimates" in e.value.response["Error"]["Message"]


def test_signatures_are_verified(server, monkeypatch):
    with pytest.raises(ClientError) as e:
        client(server, secret="wrong" * 8).list_collections()
    assert code(e) == "InvalidSignatureException"
    with pytest.raises(ClientError) as e:
        client(server, key="AKIAUNKNOWNUNKNOWN00").list_collections()
    assert code(e) == "UnrecognizedClientException"
    with pytest.raises(ClientError) as e:
        client(server, region="eu-west-1").list_collections()
    assert code(e) == "InvalidSignatureException" and "region" in e.value.response["Error"]["Message"]
    past = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(minutes=6)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: past)
    with pytest.raises(ClientError) as e:
        client(server).list_collections()
    assert code(e) == "InvalidSignatureException" and "expired" in e.value.response["Error"]["Message"]


def test_revoked_key_is_refused(server):
    store = KeyStore(server["settings"].keys_file)
    key, secret = store.create("short-lived")
    rek = client(server, key=key.access_key_id, secret=secret)
    rek.list_collections()
    store.revoke(key.access_key_id)
    with pytest.raises(ClientError) as e:
        rek.list_collections()
    assert code(e) == "UnrecognizedClientException"


def test_unsigned_requests_and_oversized_bodies(server):
    import httpx

    r = httpx.post(server["url"] + "/", headers={"X-Amz-Target": "RekognitionService.ListCollections"}, content=b"{}")
    assert r.status_code == 403 and r.json()["__type"] == "MissingAuthenticationTokenException"
    assert r.headers["x-amzn-requestid"]
    r = httpx.post(server["url"] + "/", content=b"x" * (9 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["__type"] == "ImageTooLargeException"  # a code the model knows
    with pytest.raises(client(server).exceptions.ImageTooLargeException):  # boto3's typed exception
        client(server, validate=False).detect_faces(Image={"Bytes": b"\xff\xd8\xff" + b"\x00" * (9 * 1024 * 1024)})


def test_native_api_health_metrics_and_openapi(server, lfw):
    import httpx

    auth = {"Authorization": f"Bearer {server['key']}:{server['secret']}"}
    assert httpx.get(server["url"] + "/healthz").json()["status"] == "ok"
    data = lfw.image("Colin_Powell", 1).read_bytes()
    r = httpx.post(server["url"] + "/v1/faces/detect", headers=auth, files={"image": ("c.jpg", data, "image/jpeg")})
    assert r.status_code == 200 and len(r.json()["FaceDetails"]) == 1
    r = httpx.post(server["url"] + "/v1/faces/detect", headers=auth, json={"image": base64.b64encode(data).decode()})
    assert r.status_code == 200 and len(r.json()["FaceDetails"]) == 1
    assert httpx.post(server["url"] + "/v1/collections", headers=auth, json={"collection_id": "native"}).status_code == 200
    r = httpx.post(server["url"] + "/v1/collections/native/faces", headers=auth, json={"image": base64.b64encode(data).decode()})
    assert len(r.json()["FaceRecords"]) == 1
    r = httpx.get(server["url"] + "/v1/collections/nope", headers=auth)
    assert r.status_code == 400 and r.json()["__type"] == "ResourceNotFoundException"
    assert httpx.get(server["url"] + "/v1/collections", headers={"Authorization": "Bearer AKIAX:nope"}).status_code == 403
    spec = httpx.get(server["url"] + "/v1/openapi.json").json()
    assert "/v1/collections/{collection_id}/search" in spec["paths"]
    metrics = httpx.get(server["url"] + "/metrics").text
    assert 'faceledger_requests_total{operation="DetectFaces",outcome="ok"}' in metrics
    assert "faceledger_request_seconds_bucket" in metrics


def test_key_file_is_private(server):
    mode = server["settings"].keys_file.stat().st_mode & 0o777
    assert mode == 0o600


def test_keys_cli_create_list_revoke(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from faceledger.interfaces.cli.main import app

    monkeypatch.setenv("FACELEDGER_KEYS_FILE", str(tmp_path / "keys.json"))
    runner = CliRunner()
    made = runner.invoke(app, ["keys", "create", "--description", "ci", "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["AccessKeyId"].startswith("AKIA") and len(key["SecretAccessKey"]) == 40
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert listed[0]["AccessKeyId"] == key["AccessKeyId"] and listed[0]["Revoked"] is None
    assert runner.invoke(app, ["keys", "revoke", key["AccessKeyId"]]).exit_code == 0
    assert json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)[0]["Revoked"]
    again = runner.invoke(app, ["keys", "revoke", key["AccessKeyId"], "--json"])
    assert again.exit_code == 3 and "already revoked" in again.stdout
    (tmp_path / "keys.json").chmod(0o644)
    refused = runner.invoke(app, ["keys", "list"])
    assert refused.exit_code == 3 and "chmod 600" in refused.stderr


def test_serve_command_starts_a_working_server(tmp_path):
    import os
    import subprocess
    import sys

    import httpx

    port = _free_port()
    env = {**os.environ, "FACELEDGER_STORE": str(tmp_path / "s.sqlite"), "FACELEDGER_KEYS_FILE": str(tmp_path / "k.json")}
    proc = subprocess.Popen([sys.executable, "-m", "faceledger.interfaces.cli.main", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r.json()["status"] == "ok"
        unsigned = httpx.post(f"http://127.0.0.1:{port}/", headers={"X-Amz-Target": "RekognitionService.ListCollections"})
        assert unsigned.status_code == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_non_ascii_digits_in_paths_and_queries_are_client_errors(server):
    """str.isdigit() accepts "²"; int() does not: such input must be a 400, never a 500."""
    import httpx

    headers = {"Authorization": f"Bearer {server['key']}:{server['secret']}"}
    for url in ("/v1/ledger/%C2%B2/candidates", "/v1/collections?max_results=%C2%B2",
                "/v1/ledger/1000000000000000000000000/candidates"):
        r = httpx.get(server["url"] + url, headers=headers)
        assert r.status_code == 400, (url, r.text)
