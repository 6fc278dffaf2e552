"""The store contract, the same tests on every backend: the embedded SQLite store, Milvus (Milvus
Lite, embedded in the test) with its catalog in Milvus, and Milvus with the catalog in a real
PostgreSQL server, as several replicas would share it."""

from __future__ import annotations

import pytest

from faceledger import errors
from faceledger.store import SQLiteStore
from faceledger.store.catalog import MilvusCatalog, PostgresCatalog
from faceledger.store.milvus import MilvusStore

BACKENDS = ("sqlite", "milvus", "postgres+milvus")


@pytest.fixture(scope="module", params=BACKENDS)
def service(request, engine, settings, tmp_path_factory):
    """Chosen by the settings, as a user would: store_backend and database."""
    from faceledger.governance.app import open_service

    s = settings.replace(store=tmp_path_factory.mktemp("store") / "store.sqlite")
    if request.param != "sqlite":
        s = s.replace(store_backend="milvus")
    if request.param == "postgres+milvus":
        import uuid

        import psycopg

        url = request.getfixturevalue("pg_url")
        name = "store_" + uuid.uuid4().hex[:8]
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        s = s.replace(database=url.rsplit("/", 1)[0] + "/" + name)
    svc = open_service(s, engine=engine)
    expected = {"sqlite": (SQLiteStore, type(None)), "milvus": (MilvusStore, MilvusCatalog),
                "postgres+milvus": (MilvusStore, PostgresCatalog)}[request.param]
    assert isinstance(svc.store, expected[0]) and isinstance(getattr(svc.store, "catalog", None), expected[1])
    svc.test_store_folder = s.store.parent  # where Milvus Lite's file lives (tests search it for image bytes)
    yield svc
    svc.store.close()


def test_milvus_keeps_templates_only(service, lfw, request):
    """Asked to keep images, the Milvus store refuses (without claiming the name); an indexed
    image leaves no bytes in it: not through the API, not in Milvus Lite's files."""
    if not isinstance(service.store, MilvusStore):
        pytest.skip("the embedded store keeps images when asked")
    with pytest.raises(errors.InvalidParameterError, match="templates only"):
        service.create_collection("with-images", store_images=True)
    with pytest.raises(errors.ResourceNotFoundError):
        service.describe_collection("with-images")  # the refused name was not claimed
    data = lfw.image("Colin_Powell", 4).read_bytes()
    name = "templates-" + request.node.callspec.id.replace("+", "-")
    service.create_collection(name)
    rec = service.index_faces(name, data).face_records[0]
    assert service.store.stored_image(name, rec.face.image_id) is None
    for path in (p for p in service.test_store_folder.rglob("*") if p.is_file()):
        assert data[1000:1400] not in path.read_bytes(), path


def test_collections_faces_search_and_deletion(service, lfw):
    service.create_collection("m")
    with pytest.raises(errors.ResourceAlreadyExistsError):
        service.create_collection("m")
    ids = {}
    for name in ("Colin_Powell", "Tony_Blair", "George_W_Bush"):
        r = service.index_faces("m", lfw.image(name, 1), external_image_id=name, max_faces=1)  # Tony_Blair_0001 shows a bystander too
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


def test_users(service, lfw):
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


def test_every_backend_knows_an_image_it_indexed(service, lfw):
    """What a resumed `faceledger index` relies on: the store answers whether this image (by the
    SHA-256 of its bytes) was indexed under this ExternalImageId, on every backend."""
    import hashlib

    service.create_collection("resume")
    path = lfw.image("Colin_Powell", 1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert not service.store.indexed_image("resume", digest, "Colin_Powell_0001")
    service.index_faces("resume", path, external_image_id="Colin_Powell_0001")
    assert service.store.indexed_image("resume", digest, "Colin_Powell_0001")
    assert not service.store.indexed_image("resume", digest, "another_id")
    assert not service.store.indexed_image("resume", hashlib.sha256(b"other").hexdigest(), "Colin_Powell_0001")
    service.delete_collection("resume")
