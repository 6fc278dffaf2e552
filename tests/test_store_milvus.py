"""The service on the Milvus backend (Milvus Lite, embedded in the test): the same operations."""

from __future__ import annotations

import pytest

from faceledger import errors
from faceledger.store.milvus import MilvusStore


@pytest.fixture(scope="module")
def service(engine, settings, tmp_path_factory):
    """Chosen by the settings, as a user would: store_backend = milvus, Milvus Lite in a file."""
    from faceledger.app import open_service

    s = settings.replace(store=tmp_path_factory.mktemp("milvus") / "store.sqlite", store_backend="milvus")
    svc = open_service(s, engine=engine)
    assert isinstance(svc.store, MilvusStore) and (s.store.parent / "store.milvus.db").exists()
    yield svc
    svc.store.close()


def test_collections_faces_search_and_deletion_on_milvus(service, lfw):
    service.create_collection("m")
    with pytest.raises(errors.ResourceAlreadyExistsError):
        service.create_collection("m")
    with pytest.raises(errors.InvalidParameterError, match="store_images"):
        service.create_collection("with-images", store_images=True)
    ids = {}
    for name in ("Colin_Powell", "Tony_Blair", "George_W_Bush"):
        r = service.index_faces("m", lfw.image(name, 1), external_image_id=name)
        ids[name] = r.face_records[0].face.face_id
    assert service.describe_collection("m").face_count == 3
    found = service.search_faces_by_image("m", lfw.image("Tony_Blair", 2), max_false_match_rate=1e-2)
    assert [m.face.external_image_id for m in found.face_matches] == ["Tony_Blair"]
    assert found.identification.gallery_size == 3 and found.face_matches[0].false_match_rate <= 1e-2
    page = service.list_faces("m", max_results=2)
    rest = service.list_faces("m", max_results=2, next_token=page.next_token)
    assert len(page.faces) == 2 and len(rest.faces) == 1
    assert {f.face_id for f in page.faces + rest.faces} == set(ids.values())
    assert service.delete_faces("m", [ids["Tony_Blair"]]).deleted_faces == [ids["Tony_Blair"]]
    gone = service.search_faces_by_image("m", lfw.image("Tony_Blair", 2), face_match_threshold=0, max_faces=5)
    assert ids["Tony_Blair"] not in {m.face.face_id for m in gone.face_matches}  # deletion is real
    assert service.describe_collection("m").face_count == 2


def test_users_on_milvus(service, lfw):
    service.create_collection("u")
    first = service.index_faces("u", lfw.image("Colin_Powell", 1)).face_records[0].face.face_id
    second = service.index_faces("u", lfw.image("Colin_Powell", 2)).face_records[0].face.face_id
    service.create_user("u", "colin")
    with pytest.raises(errors.ConflictError):
        service.create_user("u", "colin")
    r = service.associate_faces("u", "colin", [first, second], user_match_threshold=40)
    assert len(r.associated_faces) == 2 and r.user_status == "ACTIVE"
    found = service.search_users_by_image("u", lfw.image("Colin_Powell", 3), user_match_threshold=30)
    assert found.user_matches[0].user.user_id == "colin"
    service.delete_user("u", "colin")
    assert all(f.user_id is None for f in service.list_faces("u").faces)
    service.delete_collection("u")
    with pytest.raises(errors.ResourceNotFoundError):
        service.describe_collection("u")
