"""Identification through side doors, tried as an adversary would, on real LFW faces.

Under the default (moratorium) policy a key without the identification purpose must not be able
to rank a gallery by other means than search: not by AssociateFaces sweeps that read each face's
Confidence, not by CompareFaces against a mosaic of gallery faces. Every identification route
applies the quality floor (also to stored faces), whoever ran a search may not review or export it,
and one account cannot see or touch another's collections. Each attack is first run against the
bare service (no gate) to show that it works there: the protection, not the data, stops it.
"""

from __future__ import annotations

import io

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image, ImageFilter

from faceledger import errors
from faceledger.governance.app import open_service
from faceledger.governance.gate import Gate
from faceledger.governance.keys import KeyStore
from faceledger.governance.ledger import Ledger
from faceledger.governance.policy import Context, Policy, Principal
from faceledger.scoring.calibration import similarity_of_fmr

from .conftest import encode
from .live import LiveServer

GALLERY = 49  # people: one 7 x 7 mosaic
PROBES = 20
TILE = 120  # pixels of each mosaic tile: the centre of a 250 x 250 LFW image
POLICY = Policy.load("moratorium")
SHARP = 17  # a probe whose face clears the moratorium's floor, and whose gallery face no sweep associates


def _ctx(name, roles=("user",), purposes=(), purpose=None, case=None, account="000000000000"):
    return Context(Principal(name, roles, purposes, account), purpose, case, "test")


def _blurred(path) -> bytes:
    return encode(Image.open(path).filter(ImageFilter.GaussianBlur(4)), "PNG")


@pytest.fixture(scope="module")
def world(tmp_path_factory, settings, engine, lfw):
    """A gallery of 49 people (one LFW image each) indexed by the adversary's own plain key, as in
    the issue, and probes: another image of 20 of them."""
    root = tmp_path_factory.mktemp("side-doors")
    service = open_service(settings.replace(store=root / "store.sqlite"), engine=engine)
    ledger_path = root / "ledger.sqlite"
    gate = Gate(service, POLICY, Ledger(ledger_path))
    people = [n for n, ps in lfw.people().items() if len(ps) >= 2][:GALLERY]
    owner = _ctx("gallery-owner")
    gate.call(owner, "CreateCollection", lambda: service.create_collection("gallery"))
    faces = {}
    for name in people:
        r = gate.call(owner, "IndexFaces", lambda n=name: service.index_faces(
            "gallery", lfw.image(n, 1), external_image_id=n, quality_filter="NONE"), collection="gallery")
        faces[name] = r.face_records[0].face.face_id
    probes = {n: lfw.image(n, 2).read_bytes() for n in people[:PROBES]}
    return {"service": service, "gate": gate, "ledger_path": ledger_path, "people": people, "faces": faces,
            "probes": probes, "lfw": lfw}


# --- AssociateFaces sweeps ------------------------------------------------------------------------------


def _association_sweep(call, service, probe_name, probe, faces, chunk, threshold):
    """The issue's attack: index the probe, make it a user, then associate gallery faces with that
    user and rank them by the Confidence each failed association reports. Returns the name the
    sweep ranks first (None: nothing to rank) and the faces it got associated."""
    user = f"probe-{probe_name}-{chunk}-{threshold}"
    indexed = call("IndexFaces", lambda **x: service.index_faces("gallery", probe, quality_filter="NONE", **x))
    probe_face = indexed.face_records[0].face.face_id
    call("CreateUser", lambda **x: service.create_user("gallery", user, **x))
    call("AssociateFaces", lambda **x: service.associate_faces("gallery", user, [probe_face], **x))
    by_face = {v: k for k, v in faces.items()}
    ids = list(faces.values())
    scores, associated = {}, []
    for i in range(0, len(ids), chunk):
        r = call("AssociateFaces", lambda **x: service.associate_faces(
            "gallery", user, ids[i:i + chunk], user_match_threshold=threshold, **x))
        associated += [a.face_id for a in r.associated_faces if a.face_id != probe_face]
        scores.update({u.face_id: u.confidence for u in r.unsuccessful_face_associations if u.confidence is not None})
    if associated:
        return by_face.get(associated[0]), associated
    return (by_face[max(scores, key=scores.get)] if scores else None), associated


def test_association_sweeps_identify_no_one_without_the_identification_purpose(world):
    service, gate, faces = world["service"], world["gate"], world["faces"]

    def bare(operation, run):  # no gate: the library alone
        return run()

    # Against the bare service the attack works: the 20 of 20 at rank 1.
    found = sum(_association_sweep(bare, service, n, p, faces, 100, 100)[0] == n for n, p in world["probes"].items())
    assert found >= 0.9 * PROBES, found

    adversary = _ctx("mallory")

    def gated(operation, run):
        return gate.call(adversary, operation, run, collection="gallery")

    # Through the gate: 49 faces in one call is identification, refused for a plain key...
    with pytest.raises(errors.AccessDeniedError, match="identification"):
        _association_sweep(gated, service, "x", next(iter(world["probes"].values())), faces, 100, 100)
    # ...and in calls under the bound no Confidence comes back, so nothing can be ranked; the
    # daily budget runs out on the way.
    identified, refused = 0, 0
    for name, probe in world["probes"].items():
        try:
            identified += _association_sweep(gated, service, name, probe, faces, 5, 100)[0] == name
        except errors.ComparisonBudgetError:
            refused += 1
    assert identified == 0 and refused > 0
    ledger = Ledger(world["ledger_path"])
    spent = sum(e.body.get("budgeted", 0) for e in ledger.entries_of("AssociateFaces") if e.body["principal"] == "mallory")
    assert 0 < spent <= POLICY.daily_comparisons
    assert all(u["confidence"] is None for e in ledger.entries_of("AssociateFaces") if e.body["principal"] == "mallory"
               for u in e.body.get("result", {}).get("unsuccessful_associations", []))
    # The budget is counted from the ledger: a restarted gate (or another replica) sees it spent.
    again = Gate(service, POLICY, Ledger(world["ledger_path"]))
    over = [faces[n] for n in world["people"][-(POLICY.daily_comparisons - spent + 1):]]
    with pytest.raises(errors.ComparisonBudgetError):
        again.call(adversary, "AssociateFaces", lambda **x: service.associate_faces(
            "gallery", f"probe-{world['people'][0]}-5-100", over, **x), collection="gallery")


def test_pass_fail_association_sweeps_stop_at_the_budget(world):
    """Pass or fail alone is a 1:1 oracle (as CompareFaces is): what bounds it is the budget."""
    service, gate, faces = world["service"], world["gate"], world["faces"]
    adversary = _ctx("mallory-binary")
    outcomes = []
    for name, probe in world["probes"].items():
        try:
            ranked, _ = _association_sweep(lambda op, run: gate.call(adversary, op, run, collection="gallery"),
                                           service, name, probe, faces, 5, None)
            outcomes.append("identified" if ranked == name else "missed")
        except errors.ComparisonBudgetError:
            outcomes.append("refused")
    first_refusal = outcomes.index("refused")
    assert set(outcomes[first_refusal:]) == {"refused"}  # once spent, no further comparisons at all
    spent = sum(e.body.get("budgeted", 0) for e in Ledger(world["ledger_path"]).entries_of("AssociateFaces")
                if e.body["principal"] == "mallory-binary")
    assert spent <= POLICY.daily_comparisons
    # 200 comparisons sweep a 49-face gallery about four times: a handful of probes, never all 20
    assert outcomes.count("identified") <= POLICY.daily_comparisons // (GALLERY // 2), outcomes


def test_an_allowed_identification_by_association_discloses_and_records_the_scores(world):
    service, gate, faces = world["service"], world["gate"], world["faces"]
    investigator = _ctx("ivy", ("investigator", "user"), ("missing-person",), "missing-person", "C-7")
    name, probe = list(world["probes"].items())[SHARP]
    ranked, _ = _association_sweep(lambda op, run: gate.call(investigator, op, run, collection="gallery"),
                                   service, name + "-allowed", probe, faces, 100, 100)
    assert ranked == name
    entry = next(e for e in Ledger(world["ledger_path"]).entries_of("AssociateFaces")
                 if e.body["principal"] == "ivy" and "treated_as_identification" in e.body)
    scores = [s for s in entry.body["result"]["unsuccessful_associations"] if s["reasons"] == ["LOW_MATCH_CONFIDENCE"]]
    assert len(scores) > GALLERY - 10 and all(isinstance(s["confidence"], float) for s in scores)
    assert entry.body["purpose"] == "missing-person" and entry.body["case_reference"] == "C-7"


# --- CompareFaces mosaics ---------------------------------------------------------------------------------


def _mosaic(lfw, people, side):
    """A side x side grid of the gallery people's first images (their centres), as PNG bytes."""
    grid = Image.new("RGB", (side * TILE, side * TILE))
    c = (250 - TILE) // 2
    for i, name in enumerate(people[:side * side]):
        face = Image.open(lfw.image(name, 1)).convert("RGB").crop((c, c, c + TILE, c + TILE))
        grid.paste(face, ((i % side) * TILE, (i // side) * TILE))
    buf = io.BytesIO()
    grid.save(buf, "PNG")
    return buf.getvalue()


def _tile_of(match) -> int:
    b = match.face.bounding_box
    col, row = int((b.left + b.width / 2) * 7), int((b.top + b.height / 2) * 7)
    return row * 7 + col


def test_a_compare_faces_mosaic_is_identification(world):
    service, gate, people = world["service"], world["gate"], world["people"]
    mosaic = _mosaic(world["lfw"], people, 7)
    probes = list(world["probes"].items())

    def ranked_first(result):
        return people[_tile_of(result.face_matches[0])] if result.face_matches else None

    # The bare service ranks the mosaic: the probe's own tile first.
    bare = [ranked_first(service.compare_faces(p, mosaic, similarity_threshold=0)) == n for n, p in probes[:5]]
    assert all(bare), bare

    # Through the gate, 49 faces are a gallery: a plain key and a law-enforcement key are refused.
    police = _ctx("officer", ("investigator",), ("law-enforcement",), "law-enforcement", "LE-1")
    for ctx, which in ((police, probes), (_ctx("mallory-mosaic"), probes[:5])):
        identified = 0
        for name, probe in which:
            with pytest.raises(errors.AccessDeniedError, match="identification"):
                identified += ranked_first(gate.call(ctx, "CompareFaces", lambda **x: service.compare_faces(
                    probe, mosaic, similarity_threshold=0, **x), images=[probe, mosaic])) == name
        assert identified == 0
    refusals = [e.body for e in Ledger(world["ledger_path"]).entries_of("CompareFaces")
                if e.body["principal"] == "officer" and e.body.get("phase") != "intent"]  # each call: intent, outcome
    assert len(refusals) == PROBES and all(b["outcome"] == "AccessDeniedException" and "result" not in b for b in refusals)

    # An allowed identification is served as one: the threshold rises with 49 faces, the scores
    # go to the ledger.
    ivy = _ctx("ivy-compare", ("investigator",), ("missing-person",), "missing-person", "C-8")
    name, probe = probes[SHARP]
    r = gate.call(ivy, "CompareFaces", lambda **x: service.compare_faces(probe, mosaic, similarity_threshold=0, **x),
                  images=[probe, mosaic])
    assert ranked_first(r) == name
    assert all(m.similarity >= similarity_of_fmr(POLICY.max_fpir / GALLERY) for m in r.face_matches)
    entry = Ledger(world["ledger_path"]).last("CompareFaces").body
    assert entry["principal"] == "ivy-compare" and entry["treated_as_identification"]
    assert entry["result"]["candidates"][0]["similarity"] == pytest.approx(r.face_matches[0].similarity, abs=1e-3)

    # Under the bound (a 2 x 2 grid), a plain key compares, and is charged for each face.
    small = _mosaic(world["lfw"], people, 2)
    gate.call(_ctx("mallory-small"), "CompareFaces", lambda **x: service.compare_faces(probe, small, **x))
    assert Ledger(world["ledger_path"]).last("CompareFaces").body["budgeted"] == 4


# --- the quality floor on every identification route ---------------------------------------------------------


def test_the_floor_holds_on_every_identification_route(world):
    """A probe the floor refuses on SearchFacesByImage is refused on every other route too,
    including once it is stored (IndexFaces with QualityFilter NONE) and searched by FaceId."""
    service, gate, lfw, people = world["service"], world["gate"], world["lfw"], world["people"]
    ivy = _ctx("ivy-floor", ("investigator", "user"), ("missing-person",), "missing-person", "C-9")
    sharp = lfw.image("Colin_Powell", 3).read_bytes()  # clears the moratorium's floor
    blurred = _blurred(lfw.image("Colin_Powell", 3))

    def call(operation, run):
        return gate.call(ivy, operation, run, collection="gallery")

    def stored(image, user):
        face = call("IndexFaces", lambda **x: service.index_faces("gallery", image, quality_filter="NONE", **x))
        face_id = face.face_records[0].face.face_id
        call("CreateUser", lambda **x: service.create_user("gallery", user, **x))
        call("AssociateFaces", lambda **x: service.associate_faces("gallery", user, [face_id], **x))
        return face_id

    blurred_face, sharp_face = stored(blurred, "blurred-probe"), stored(sharp, "sharp-probe")
    candidates = [world["faces"][n] for n in people[30:40]]  # ten never associated: past the bound, so identification
    mosaic = _mosaic(lfw, people, 7)
    routes = {
        "SearchFacesByImage": lambda img, face, user, **x: service.search_faces_by_image("gallery", img, **x),
        "SearchUsersByImage": lambda img, face, user, **x: service.search_users_by_image("gallery", img, **x),
        "SearchFaces": lambda img, face, user, **x: service.search_faces("gallery", face, **x),
        "SearchUsers": lambda img, face, user, **x: service.search_users("gallery", face_id=face, **x),
        "SearchUsers by user": lambda img, face, user, **x: service.search_users("gallery", user_id=user, **x),
        "CompareFaces": lambda img, face, user, **x: service.compare_faces(img, mosaic, **x),
        "AssociateFaces": lambda img, face, user, **x: service.associate_faces("gallery", user, candidates, **x),
    }
    for route, run in routes.items():
        operation = route.split()[0]
        with pytest.raises(errors.ProbeQualityError, match="floor"):
            call(operation, lambda **x: run(blurred, blurred_face, "blurred-probe", **x))
        call(operation, lambda **x: run(sharp, sharp_face, "sharp-probe", **x))  # the same route serves a good probe


def test_a_face_indexed_before_quality_was_kept_clears_no_floor(world):
    service, gate = world["service"], world["gate"]
    face = world["faces"][world["people"][3]]
    db = service.store._db
    with service.store._lock:
        db.execute("UPDATE faces SET quality = NULL WHERE face_id = ?", (face,))
    ivy = _ctx("ivy-legacy", ("investigator",), ("missing-person",), "missing-person", "C-10")
    with pytest.raises(errors.ProbeQualityError, match="before faceledger kept face quality"):
        gate.call(ivy, "SearchFaces", lambda **x: service.search_faces("gallery", face, **x), collection="gallery")


# --- separation of duties ---------------------------------------------------------------------------------


def test_whoever_searched_may_neither_review_nor_export(world):
    service, gate = world["service"], world["gate"]
    ivan = _ctx("ivan", ("investigator", "reviewer"), ("missing-person",), "missing-person", "C-11")
    rita = _ctx("rita", ("reviewer",), ("missing-person",), "missing-person", "C-11")
    name, probe = list(world["probes"].items())[1]  # clears the floor
    r = gate.call(ivan, "SearchFacesByImage", lambda **x: service.search_faces_by_image(
        "gallery", probe, face_match_threshold=0, **x), collection="gallery", images=[probe])
    assert r.face_matches
    for act in (lambda: gate.review(ivan, r.ledger_entry, "confirmed", "it is them"),
                lambda: gate.export_candidates(ivan, r.ledger_entry)):
        with pytest.raises(errors.AccessDeniedError, match="separation of duties"):
            act()
        assert Ledger(world["ledger_path"]).entries()  # refused, and recorded:
        last = list(Ledger(world["ledger_path"]).entries())[-1].body
        assert last["principal"] == "ivan" and last["outcome"] == "AccessDeniedException"
    gate.review(rita, r.ledger_entry, "confirmed", "same scar above the left eyebrow, checked against the file")
    with pytest.raises(errors.AccessDeniedError, match="separation of duties"):
        gate.export_candidates(ivan, r.ledger_entry)  # a confirmation by another does not let the searcher export
    assert gate.export_candidates(rita, r.ledger_entry).candidates


# --- accounts -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenants(tmp_path_factory, settings, engine):
    """`faceledger serve` with SigV4 and keys in two accounts."""
    from faceledger.interfaces.http.app import create_app

    root = tmp_path_factory.mktemp("tenants")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         auth="sigv4")
    keys = KeyStore(s.keys_file)
    made = {
        "alice": keys.create("A", principal="alice", account="111111111111"),
        "bob": keys.create("B", principal="bob", account="222222222222"),
        "bob-search": keys.create("B", principal="bob-search", roles=("investigator",), purposes=("missing-person",),
                                  account="222222222222"),
        "bob-admin": keys.create("B", principal="bob-admin", roles=("admin",), purposes=("missing-person",),
                                 account="222222222222"),
        "local": keys.create("default account"),
    }
    app = create_app(s, open_service(s, engine=engine))
    http_server = LiveServer(app)
    port = http_server.port

    def client(who, headers=None):
        key, secret = made[who]
        rek = boto3.client("rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                           aws_access_key_id=key.access_key_id, aws_secret_access_key=secret,
                           config=Config(retries={"max_attempts": 1}))
        def state(request, **_):  # signed, as docs/policy.md says boto3 code states them
            for name, value in (headers or {}).items():
                request.headers[name] = value

        rek.meta.events.register("before-sign.rekognition", state)
        return rek

    yield {"client": client, "settings": s}
    http_server.stop()


def _code(exc) -> str:
    return exc.value.response["Error"]["Code"]


def test_an_account_cannot_reach_another_accounts_collections(tenants, lfw):
    alice, bob = tenants["client"]("alice"), tenants["client"]("bob")
    colin = lfw.image("Colin_Powell", 1).read_bytes()
    made = alice.create_collection(CollectionId="patients")
    assert made["CollectionArn"] == "arn:aws:rekognition:us-east-1:111111111111:collection/patients"
    face = alice.index_faces(CollectionId="patients", Image={"Bytes": colin})["FaceRecords"][0]["Face"]["FaceId"]

    assert "patients" not in bob.list_collections()["CollectionIds"]
    assert "patients" not in tenants["client"]("local").list_collections()["CollectionIds"]
    searcher = tenants["client"]("bob-search", {"X-Faceledger-Case": "B-1"})
    attempts = {
        "describe": lambda: bob.describe_collection(CollectionId="patients"),
        "list faces": lambda: bob.list_faces(CollectionId="patients"),
        "index": lambda: bob.index_faces(CollectionId="patients", Image={"Bytes": colin}),
        "delete faces": lambda: bob.delete_faces(CollectionId="patients", FaceIds=[face]),
        "search": lambda: searcher.search_faces_by_image(CollectionId="patients", Image={"Bytes": colin}),
        "search by face": lambda: searcher.search_faces(CollectionId="patients", FaceId=face),
        "delete": lambda: bob.delete_collection(CollectionId="patients"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(ClientError) as exc:
            attempt()
        assert _code(exc) == "ResourceNotFoundException", what  # as if it did not exist: no existence leak either
    assert alice.describe_collection(CollectionId="patients")["FaceCount"] == 1  # untouched

    # The same name in another account is another collection.
    own = bob.create_collection(CollectionId="patients")
    assert own["CollectionArn"].split(":")[4] == "222222222222"
    assert bob.describe_collection(CollectionId="patients")["FaceCount"] == 0
    # An admin acts in another account only where the policy says: the moratorium says nowhere.
    with pytest.raises(ClientError) as exc:
        tenants["client"]("bob-admin", {"X-Faceledger-Account": "111111111111"}).delete_collection(CollectionId="patients")
    assert _code(exc) == "AccessDeniedException" and "may not act in account 111111111111" in str(exc.value)
    assert alice.describe_collection(CollectionId="patients")["FaceCount"] == 1
    entries = [e.body for e in Ledger(tenants["settings"].ledger).entries_of("DescribeCollection")]
    assert {e["account"] for e in entries} >= {"111111111111", "222222222222"}
