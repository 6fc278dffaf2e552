"""Every implemented operation's response, as the wire sends it, against botocore's output shapes:
botocore's own validator (types, required members, ranges) and a walk for what it does not check
(patterns, enums), so a client that reads a modelled member gets a value the model allows."""

from __future__ import annotations

import base64
import json
import re

import pytest
from botocore.validate import ParamValidator

from faceledger.governance.app import open_service
from faceledger.governance.gate import Gate
from faceledger.governance.ledger import Ledger
from faceledger.governance.policy import Context, Policy, Principal
from faceledger.interfaces.http.wire import Dispatcher, supported_operations
from faceledger.service import api_model

#: faceledger's own members (docs/http.md): not in the model, ignored by SDKs.
OWN = (set(api_model.MODEL_VERSION_MEMBERS.values()) | set(api_model.ORIENTATION_MEMBERS.values())
       | {m for ms in api_model.EXTENSIONS.values() for m in ms})


def strip_own(value, shape):
    """The response without faceledger's own members, and the list of those found where the model
    has none (each must be one of OWN)."""
    if shape.type_name == "structure":
        for k in value:
            if k not in shape.members:
                assert k in OWN, f"{shape.name}.{k} is neither modelled nor one of faceledger's own members"
        return {k: strip_own(v, shape.members[k]) for k, v in value.items() if k in shape.members}
    if shape.type_name == "list":
        return [strip_own(v, shape.member) for v in value]
    return value


def patterns_and_enums(value, shape, where: str, problems: list[str]) -> None:
    meta = shape.metadata
    if shape.type_name == "structure":
        for k, v in value.items():
            patterns_and_enums(v, shape.members[k], f"{where}.{k}", problems)
    elif shape.type_name == "list":
        for i, v in enumerate(value):
            patterns_and_enums(v, shape.member, f"{where}[{i}]", problems)
    elif shape.type_name == "string":
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            problems.append(f"{where} = {value!r} does not match {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            problems.append(f"{where} = {value!r} is not one of {shape.enum}")
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{where} is longer than {meta['max']}")


def check(operation: str, response: dict) -> None:
    shape = api_model.operation(operation).output_shape
    modelled = strip_own(json.loads(json.dumps(response)), shape)
    report = ParamValidator().validate(modelled, shape)
    assert not report.has_errors(), f"{operation}: {report.generate_report()}"
    problems: list[str] = []
    patterns_and_enums(modelled, shape, operation, problems)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def wire(tmp_path_factory, settings, engine):
    root = tmp_path_factory.mktemp("shapes")
    s = settings.replace(store=root / "store.sqlite", s3_root=root / "s3")
    gate = Gate(open_service(s, engine=engine), Policy.load("moratorium"), Ledger(root / "ledger.sqlite"))
    ctx = Context(Principal("op", ("admin",), ("access-control",)), "access-control", None, "http")
    return Dispatcher(gate, s3_root=s.s3_root), ctx


def test_every_operation_response_validates_against_the_model(wire, lfw, engine):
    img = lambda name, k: {"Bytes": base64.b64encode(lfw.image(name, k).read_bytes()).decode()}  # noqa: E731
    seen = {}
    dispatcher, ctx = wire

    def run(op, **body):
        response = dispatcher.call(op, json.dumps(body).encode(), ctx)
        check(op, response)
        seen[op] = response
        return response

    run("DetectFaces", Image=img("Colin_Powell", 1), Attributes=["ALL"])
    run("CompareFaces", SourceImage=img("Colin_Powell", 1), TargetImage=img("Colin_Powell", 2), SimilarityThreshold=0)
    run("CreateCollection", CollectionId="shapes")
    run("DescribeCollection", CollectionId="shapes")
    run("ListCollections")
    a = run("IndexFaces", CollectionId="shapes", Image=img("Colin_Powell", 1), ExternalImageId="colin")
    run("IndexFaces", CollectionId="shapes", Image=img("Colin_Powell", 2), DetectionAttributes=["ALL"])
    face = a["FaceRecords"][0]["Face"]["FaceId"]
    run("ListFaces", CollectionId="shapes")
    run("SearchFaces", CollectionId="shapes", FaceId=face, FaceMatchThreshold=0)
    run("SearchFacesByImage", CollectionId="shapes", Image=img("Colin_Powell", 3), FaceMatchThreshold=0)
    run("CreateUser", CollectionId="shapes", UserId="colin")
    run("ListUsers", CollectionId="shapes")
    run("AssociateFaces", CollectionId="shapes", UserId="colin", FaceIds=[face])
    run("SearchUsers", CollectionId="shapes", UserId="colin", UserMatchThreshold=0)
    run("SearchUsersByImage", CollectionId="shapes", Image=img("Colin_Powell", 4), UserMatchThreshold=0)
    # stored video: a 2-second clip of a face, a detection job and a face search job, run to the end
    from faceledger.governance.video import run_one

    from .video_media import Appearance, write_video

    (dispatcher.s3_root / "clips").mkdir(parents=True)
    write_video(dispatcher.s3_root / "clips" / "clip.mp4", [Appearance("colin", lfw.image("Colin_Powell", 5), 0.0, 2.0,
                (0.5, 0.5), (0.55, 0.5), (150, 150))], width=320, height=240, duration=2.0)
    clip = {"S3Object": {"Bucket": "clips", "Name": "clip.mp4"}}
    for start, get, extra in (("StartFaceDetection", "GetFaceDetection", {"FaceAttributes": "ALL"}),
                              ("StartFaceSearch", "GetFaceSearch", {"CollectionId": "shapes", "FaceMatchThreshold": 0})):
        job = run(start, Video=clip, JobTag="shapes", **extra)["JobId"]
        assert run(get, JobId=job)["JobStatus"] == "IN_PROGRESS"
        run_one(dispatcher.gate, job)
        done = run(get, JobId=job, MaxResults=3)
        assert done["JobStatus"] == "SUCCEEDED" and done["NextToken"], done
    assert seen["GetFaceSearch"]["Persons"][0]["FaceMatches"], "nothing to check the match's shape on"
    run("DisassociateFaces", CollectionId="shapes", UserId="colin", FaceIds=[face])
    run("DeleteFaces", CollectionId="shapes", FaceIds=[face])
    run("DeleteUser", CollectionId="shapes", UserId="colin")
    run("DeleteCollection", CollectionId="shapes")
    assert set(seen) == set(supported_operations(dispatcher.service))

    # what clients read: numeric model versions, the model id in faceledger's member, no orientation
    assert re.fullmatch(r"[0-9\.]+", seen["IndexFaces"]["FaceModelVersion"])
    assert seen["IndexFaces"]["FaceledgerModel"] == str(engine.model)
    assert re.fullmatch(r"[0-9\.]+", seen["ListFaces"]["Faces"][0]["IndexFacesModelVersion"])
    assert "OrientationCorrection" not in seen["DetectFaces"] and seen["DetectFaces"]["FaceledgerOrientation"]
    assert "SourceImageOrientationCorrection" not in seen["CompareFaces"]


def test_the_walk_catches_a_member_off_the_model():
    """The check itself, against the bug it is for: a model id where the pattern wants a number."""
    shape = api_model.service_model().shape_for("Face")
    problems: list[str] = []
    patterns_and_enums({"FaceId": "a" * 8 + "-" + "b" * 4 + "-" + "c" * 4 + "-" + "d" * 4 + "-" + "e" * 12,
                        "IndexFacesModelVersion": "dlib-resnet-v1-flip@55533b28a958"}, shape, "Face", problems)
    assert problems and "does not match" in problems[0]
