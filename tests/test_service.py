"""Collections, indexing, search and users on real LFW faces, with the cloud API's semantics."""

from __future__ import annotations

import pytest
from PIL import Image, ImageFilter

from faceledger import errors
from faceledger.service.operations import FaceService
from faceledger.store import SQLiteStore

from .conftest import encode

PEOPLE = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon"]


@pytest.fixture
def service(engine, tmp_path):
    store = SQLiteStore(tmp_path / "store.sqlite")
    yield FaceService(engine, store)
    store.close()


@pytest.fixture
def gallery(service, lfw):
    """One image of each of five people, indexed with their names as external ids (their largest face:
    Tony_Blair_0001 also shows a bystander's, which the default detector finds)."""
    service.create_collection("gallery")
    ids = {}
    for name in PEOPLE:
        r = service.index_faces("gallery", lfw.image(name, 1), external_image_id=name, max_faces=1)
        assert len(r.face_records) == 1
        ids[name] = r.face_records[0].face.face_id
    return ids


def test_collection_lifecycle(service):
    created = service.create_collection("photos")
    assert created.status_code == 200 and created.collection_arn.endswith(":collection/photos")
    assert created.face_model_version.startswith("dlib-resnet-v1-flip@")
    d = service.describe_collection("photos")
    assert d.face_count == 0 and d.user_count == 0
    service.create_collection("albums")
    assert service.list_collections().collection_ids == ["albums", "photos"]
    with pytest.raises(errors.ResourceAlreadyExistsError):
        service.create_collection("photos")
    service.delete_collection("photos")
    with pytest.raises(errors.ResourceNotFoundError):
        service.describe_collection("photos")
    with pytest.raises(errors.InvalidParameterError, match="pattern"):
        service.create_collection("no spaces allowed")
    with pytest.raises(errors.InvalidParameterError, match="between 1 and 255"):
        service.create_collection("x" * 256)


def test_search_by_image_finds_the_person_and_nobody_else(service, gallery, lfw):
    r = service.search_faces_by_image("gallery", lfw.image("Tony_Blair", 2), max_false_match_rate=1e-2)
    assert r.face_matches and r.face_matches[0].face.external_image_id == "Tony_Blair"
    assert r.face_matches[0].similarity >= r.identification.effective_threshold == pytest.approx(200 / 7)
    assert r.face_matches[0].false_match_rate <= 1e-2
    assert all(m.face.external_image_id == "Tony_Blair" for m in r.face_matches)
    stranger = service.search_faces_by_image("gallery", lfw.image("Aaron_Eckhart", 1), max_false_match_rate=1e-2)
    assert stranger.face_matches == []
    everyone = service.search_faces_by_image("gallery", lfw.image("Aaron_Eckhart", 1), face_match_threshold=0, max_faces=3)
    assert len(everyone.face_matches) == 3
    sims = [m.similarity for m in everyone.face_matches]
    assert sims == sorted(sims, reverse=True)


def test_search_faces_by_id_excludes_the_face_itself(service, gallery, lfw):
    second = service.index_faces("gallery", lfw.image("Colin_Powell", 2), external_image_id="Colin_Powell").face_records[0]
    r = service.search_faces("gallery", second.face.face_id, face_match_threshold=40)
    assert r.searched_face_id == second.face.face_id
    assert [m.face.face_id for m in r.face_matches] == [gallery["Colin_Powell"]]
    with pytest.raises(errors.ResourceNotFoundError):
        service.search_faces("gallery", "00000000-0000-0000-0000-000000000000")
    with pytest.raises(errors.InvalidParameterError):
        service.search_faces("gallery", second.face.face_id, max_faces=0)


def test_index_max_faces_and_quality_reasons(service, lfw):
    service.create_collection("c")
    canvas = Image.new("RGB", (750, 250))
    for i, name in enumerate(("Colin_Powell", "Donald_Rumsfeld", "Gerhard_Schroeder")):  # one face each
        canvas.paste(Image.open(lfw.image(name, 1)).convert("RGB"), (250 * i, 0))
    r = service.index_faces("c", encode(canvas, "PNG"), max_faces=1)
    assert len(r.face_records) == 1 and len(r.unindexed_faces) == 2
    assert all(u.reasons == ["EXCEEDS_MAX_FACES"] for u in r.unindexed_faces)
    blurred = Image.open(lfw.image("Colin_Powell", 3)).filter(ImageFilter.GaussianBlur(3))
    r = service.index_faces("c", encode(blurred, "PNG"), quality_filter="HIGH")
    assert r.face_records == [] and "LOW_SHARPNESS" in r.unindexed_faces[0].reasons
    r = service.index_faces("c", encode(blurred, "PNG"), quality_filter="NONE")
    assert len(r.face_records) == 1
    assert service.describe_collection("c").face_count == 2


def test_list_faces_pages_with_tokens(service, gallery):
    seen, token, pages = [], None, 0
    while True:
        r = service.list_faces("gallery", max_results=2, next_token=token)
        seen += [f.face_id for f in r.faces]
        pages += 1
        token = r.next_token
        if token is None:
            break
    assert pages == 3 and sorted(seen) == sorted(gallery.values())
    token = service.list_faces("gallery", max_results=2).next_token
    service.create_collection("other")
    with pytest.raises(errors.InvalidPaginationTokenError):
        service.list_faces("other", next_token=token)
    with pytest.raises(errors.InvalidPaginationTokenError):
        service.list_faces("gallery", next_token="garbage!")


def test_deletion_is_real(service, gallery, lfw, tmp_path):
    victim = gallery["Tony_Blair"]
    vector = service.store.get_faces("gallery", [victim], vectors=True)[victim].vector
    r = service.delete_faces("gallery", [victim, "00000000-0000-0000-0000-000000000000"])
    assert r.deleted_faces == [victim]
    assert r.unsuccessful_face_deletions[0].reasons == ["FACE_NOT_FOUND"]
    hits = service.search_faces_by_image("gallery", lfw.image("Tony_Blair", 2), face_match_threshold=0, max_faces=10)
    assert victim not in [m.face.face_id for m in hits.face_matches]
    assert service.describe_collection("gallery").face_count == 4
    service.store.close()  # writes the index files
    # the template's bytes are gone from the database, its write-ahead log and the index files
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".npz" for p in files)
    for path in files:
        assert vector.tobytes() not in path.read_bytes(), path


def test_images_are_not_stored_unless_asked(service, lfw, tmp_path):
    data = lfw.image("Colin_Powell", 4).read_bytes()
    service.create_collection("private")
    rec = service.index_faces("private", data).face_records[0]
    assert service.store.stored_image("private", rec.face.image_id) is None
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):  # the database, its WAL, the index files
        assert data[1000:1400] not in path.read_bytes(), path
    service.create_collection("keeps", store_images=True)
    rec = service.index_faces("keeps", data).face_records[0]
    assert service.store.stored_image("keeps", rec.face.image_id) == data
    service.delete_faces("keeps", [rec.face.face_id])
    assert service.store.stored_image("keeps", rec.face.image_id) is None
    service.store.close()
    for path in (p for p in tmp_path.rglob("*") if p.is_file()):  # a deleted image's bytes are gone from disk too
        assert data[1000:1400] not in path.read_bytes(), path


def test_users(service, gallery, lfw):
    service.create_user("gallery", "colin")
    with pytest.raises(errors.ConflictError):
        service.create_user("gallery", "colin")
    second = service.index_faces("gallery", lfw.image("Colin_Powell", 2)).face_records[0].face.face_id
    r = service.associate_faces("gallery", "colin", [gallery["Colin_Powell"], second])
    assert {a.face_id for a in r.associated_faces} == {gallery["Colin_Powell"], second} and r.user_status == "ACTIVE"
    r = service.associate_faces("gallery", "colin", [gallery["Tony_Blair"], "00000000-0000-0000-0000-000000000000"])
    reasons = {u.face_id: u.reasons for u in r.unsuccessful_face_associations}
    assert reasons[gallery["Tony_Blair"]] == ["LOW_MATCH_CONFIDENCE"]
    assert reasons["00000000-0000-0000-0000-000000000000"] == ["FACE_NOT_FOUND"]
    service.create_user("gallery", "tony")
    service.associate_faces("gallery", "tony", [gallery["Tony_Blair"]])
    r = service.associate_faces("gallery", "tony", [second])
    assert r.unsuccessful_face_associations[0].reasons == ["ASSOCIATED_TO_A_DIFFERENT_USER"]

    found = service.search_users_by_image("gallery", lfw.image("Colin_Powell", 3), max_false_match_rate=1e-2)
    assert [m.user.user_id for m in found.user_matches] == ["colin"]
    by_face = service.search_users("gallery", face_id=gallery["Colin_Powell"])
    assert by_face.user_matches[0].user.user_id == "colin"
    with pytest.raises(errors.InvalidParameterError, match="exactly one"):
        service.search_users("gallery")

    blocked = service.delete_faces("gallery", [second])
    assert blocked.unsuccessful_face_deletions[0].reasons == ["ASSOCIATED_TO_AN_EXISTING_USER"]
    r = service.disassociate_faces("gallery", "colin", [second, gallery["Tony_Blair"]])
    assert [d.face_id for d in r.disassociated_faces] == [second]
    assert r.unsuccessful_face_disassociations[0].reasons == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    assert [u.user_id for u in service.list_users("gallery").users] == ["colin", "tony"]
    service.delete_user("gallery", "colin")
    with pytest.raises(errors.ResourceNotFoundError):
        service.delete_user("gallery", "colin")
    assert service.list_faces("gallery", user_id="tony").faces[0].face_id == gallery["Tony_Blair"]


def test_refuses_to_infer_demographics(service, gallery, lfw):
    with pytest.raises(errors.InvalidParameterError, match="never estimates sex, age"):
        service.index_faces("gallery", lfw.image("Colin_Powell", 5), detection_attributes=["GENDER"])
    r = service.index_faces("gallery", lfw.image("Colin_Powell", 5), detection_attributes=["ALL"])
    assert len(r.face_records) == 1


def test_templates_of_another_model_are_never_mixed(service, lfw):
    service.store.create_collection("foreign", "arcface-r100@0123456789ab")
    with pytest.raises(errors.InvalidParameterError, match="never compared"):
        service.index_faces("foreign", lfw.image("Colin_Powell", 1))
    with pytest.raises(errors.InvalidParameterError, match="never compared"):
        service.search_faces_by_image("foreign", lfw.image("Colin_Powell", 1))


def test_unknown_collection(service, lfw):
    with pytest.raises(errors.ResourceNotFoundError):
        service.index_faces("missing", lfw.image("Colin_Powell", 1))
    with pytest.raises(errors.ResourceNotFoundError):
        service.list_faces("missing")
