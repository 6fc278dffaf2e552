"""Unchanged Rekognition clients under the default policy: the AWS CLI, the README's boto3 snippet
and AWS's own example calls, with a key made as the README says (`keys create --purpose
access-control`), and no extra header or hook. Purposes that need a case carry a standing case."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from faceledger.governance.app import open_service
from faceledger.governance.keys import KeyStore
from faceledger.governance.ledger import Ledger
from faceledger.interfaces.http.app import create_app
from .live import LiveServer



def _aws() -> str:
    beside = Path(sys.executable).with_name("aws")
    found = str(beside) if beside.exists() else shutil.which("aws")
    assert found, "the AWS CLI (awscli, in the test extra) is not installed"
    return found


@pytest.fixture(scope="module")
def live(tmp_path_factory, settings, engine):
    """`faceledger serve` under the default policy (moratorium), its keys made by the CLI."""
    root = tmp_path_factory.mktemp("dropin")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         auth="sigv4", policy="moratorium")
    env = {**os.environ, "FACELEDGER_KEYS_FILE": str(s.keys_file), "PYTHONPATH": str(Path(__file__).parent.parent)}
    made = subprocess.run([sys.executable, "-m", "faceledger", "keys", "create", "--purpose", "access-control", "--json"],
                          env=env, capture_output=True, text=True, check=True)
    key = json.loads(made.stdout)
    app = create_app(s, open_service(s, engine=engine))
    http_server = LiveServer(app)
    port = http_server.port
    yield {"url": f"http://127.0.0.1:{port}", "key": key, "settings": s, "root": root}
    http_server.stop()


def aws(live, *args: str, key: dict | None = None) -> dict:
    key = key or live["key"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1")
    done = subprocess.run([_aws(), "--endpoint-url", live["url"], "--output", "json", "rekognition", *args],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"aws rekognition {args[0]} failed: {done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


def test_the_aws_cli_runs_every_collection_operation_unchanged(live, lfw):
    assert live["key"]["Purposes"] == ["access-control"] and live["key"]["Case"] is None
    colin1, colin2, colin3 = (f"fileb://{lfw.image('Colin_Powell', i)}" for i in (1, 2, 3))
    assert aws(live, "create-collection", "--collection-id", "door")["StatusCode"] == 200
    indexed = aws(live, "index-faces", "--collection-id", "door", "--image-bytes", colin1, "--external-image-id", "colin")
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    aws(live, "index-faces", "--collection-id", "door", "--image-bytes", colin2)
    found = aws(live, "search-faces-by-image", "--collection-id", "door", "--image-bytes", colin3,
                "--face-match-threshold", "40")
    assert face_id in {m["Face"]["FaceId"] for m in found["FaceMatches"]}
    by_id = aws(live, "search-faces", "--collection-id", "door", "--face-id", face_id, "--face-match-threshold", "40")
    assert len(by_id["FaceMatches"]) == 1
    compared = aws(live, "compare-faces", "--source-image-bytes", colin1, "--target-image-bytes", colin2,
                   "--similarity-threshold", "40")
    assert compared["FaceMatches"]
    assert len(aws(live, "list-faces", "--collection-id", "door")["Faces"]) == 2
    assert aws(live, "delete-faces", "--collection-id", "door", "--face-ids", face_id)["DeletedFaces"] == [face_id]
    # every search was recorded with the key's purpose and no case
    searches = [e.body for e in Ledger(live["settings"].ledger).entries_of("SearchFacesByImage")]
    assert searches[-1]["purpose"] == "access-control" and searches[-1].get("outcome") == "ok"


def _boto3(live, key: dict | None = None):
    key = key or live["key"]
    return boto3.client("rekognition", endpoint_url=live["url"], region_name="us-east-1",
                        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                        config=Config(retries={"max_attempts": 1}))


def test_readme_boto3_snippet_and_aws_example_calls_run_unchanged(live, lfw):
    """The README's snippet verbatim, and the calls of AWS's Python collections example (their
    parameters: MaxFaces, QualityFilter, DetectionAttributes, FaceMatchThreshold)."""
    KEY_ID, SECRET = live["key"]["AccessKeyId"], live["key"]["SecretAccessKey"]  # noqa: N806
    rek = boto3.client("rekognition", endpoint_url=live["url"], region_name="us-east-1",
                       aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
    rek.create_collection(CollectionId="staff")
    rek.index_faces(CollectionId="staff", Image={"Bytes": lfw.image("Colin_Powell", 1).read_bytes()},
                    ExternalImageId="colin", MaxFaces=1, QualityFilter="AUTO", DetectionAttributes=["DEFAULT"])
    probe = str(lfw.image("Colin_Powell", 4))
    found = rek.search_faces_by_image(CollectionId="staff", Image={"Bytes": open(probe, "rb").read()})
    assert "FaceMatches" in found and "SearchedFaceBoundingBox" in found
    face_id = rek.list_faces(CollectionId="staff", MaxResults=10)["Faces"][0]["FaceId"]
    assert "FaceMatches" in rek.search_faces(CollectionId="staff", FaceId=face_id, FaceMatchThreshold=50, MaxFaces=5)
    assert rek.delete_faces(CollectionId="staff", FaceIds=[face_id])["DeletedFaces"] == [face_id]
    rek.delete_collection(CollectionId="staff")


def test_a_standing_case_on_the_key_and_its_override(live, lfw):
    """A purpose that needs a case (missing-person) works unchanged with a key's standing case;
    a header overrides it per request; both are what the ledger records."""
    ks = KeyStore(live["settings"].keys_file)
    made, secret = ks.create("case", purposes=("missing-person",), roles=("user", "investigator"), case="MP-2026-7")
    key = {"AccessKeyId": made.access_key_id, "SecretAccessKey": secret}
    rek = _boto3(live, key)
    rek.create_collection(CollectionId="mp")
    rek.index_faces(CollectionId="mp", Image={"Bytes": lfw.image("Colin_Powell", 1).read_bytes()})
    probe = {"Bytes": lfw.image("Colin_Powell", 2).read_bytes()}
    rek.search_faces_by_image(CollectionId="mp", Image=probe, FaceMatchThreshold=40)
    override = _boto3(live, key)
    override.meta.events.register("before-sign.rekognition",
                                  lambda request, **_: request.headers.__setitem__("X-Faceledger-Case", "MP-2026-8"))
    override.search_faces_by_image(CollectionId="mp", Image=probe, FaceMatchThreshold=40)
    cases = [e.body["case_reference"] for e in Ledger(live["settings"].ledger).entries_of("SearchFacesByImage")
             if e.body["principal"] == made.access_key_id and e.body.get("outcome")]  # outcomes, not intents
    assert cases[-2:] == ["MP-2026-7", "MP-2026-8"]


def test_denials_stay_403_with_what_to_do(live, lfw):
    """The adversary: a key without a case for a purpose that needs one, a door key stating another
    purpose, a door key stating a denied purpose. Each is refused, says why, and is recorded."""
    ks = KeyStore(live["settings"].keys_file)
    made, secret = ks.create("no case", purposes=("missing-person",), roles=("user", "investigator"))
    no_case = _boto3(live, {"AccessKeyId": made.access_key_id, "SecretAccessKey": secret})
    door = _boto3(live)
    door.create_collection(CollectionId="deny")
    probe = {"Bytes": lfw.image("Colin_Powell", 1).read_bytes()}
    with pytest.raises(ClientError) as exc:
        no_case.search_faces_by_image(CollectionId="deny", Image=probe)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "X-Faceledger-Case" in str(exc.value) and "keys create --case" in str(exc.value)
    for purpose, says in (("missing-person", "may not act for the purpose"), ("law-enforcement", "denies")):
        rek = _boto3(live)
        rek.meta.events.register("before-sign.rekognition",
                                 lambda request, p=purpose, **_: request.headers.__setitem__("X-Faceledger-Purpose", p))
        with pytest.raises(ClientError) as exc:
            rek.search_faces_by_image(CollectionId="deny", Image=probe)
        assert exc.value.response["Error"]["Code"] == "AccessDeniedException" and says in str(exc.value)
    denied = [e.body for e in Ledger(live["settings"].ledger).entries_of("SearchFacesByImage")
              if e.body.get("outcome") == "AccessDeniedException"]
    assert len(denied) >= 3


def test_a_user_key_without_a_purpose_still_cannot_search(live, lfw):
    made, secret = KeyStore(live["settings"].keys_file).create("plain")
    assert made.roles == ("user",)
    rek = _boto3(live, {"AccessKeyId": made.access_key_id, "SecretAccessKey": secret})
    rek.create_collection(CollectionId="plain")
    with pytest.raises(ClientError) as exc:
        rek.search_faces_by_image(CollectionId="plain", Image={"Bytes": lfw.image("Colin_Powell", 1).read_bytes()})
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
