"""The native REST API follows botocore's model, with no REST-specific list of parameters: each
route's members, ranges, enums and OpenAPI entry come from the operation's input shape."""

from __future__ import annotations

import base64
import inspect

import pytest
from starlette.testclient import TestClient

from faceledger.governance.app import open_service
from faceledger.interfaces.http import rest
from faceledger.interfaces.http.app import create_app
from faceledger.service import api_model, surface
from faceledger.service.video_jobs import VideoService as FaceService  # the service open_service makes: the image and video operations


@pytest.fixture(scope="module")
def http(tmp_path_factory, settings, engine):
    root = tmp_path_factory.mktemp("rest-surface")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         auth="none", policy="open")
    service = open_service(s, engine=engine)
    service.create_collection("surface")
    with TestClient(create_app(s, service), raise_server_exceptions=False) as client:
        yield client


def error(r) -> tuple[int, str, str]:
    body = r.json()
    return r.status_code, body["__type"], body["message"]


def test_every_row_names_what_the_model_has():
    """A row's operations are the service's, its path placeholders and renamed fields are members,
    its upload fields are Images: a wrong row fails here, not on a client."""
    for route in rest.ROUTES:
        for op in route.operations:
            assert op in api_model.service_model().operation_names and hasattr(FaceService, rest.snake(op)), op
            shape = surface.input_shape(op)
            for name in route.path_fields:
                member = route.member_of(op, name)
                assert member in shape.required_members, (route.path, name)
            assert set(route.names.values()) <= set(shape.members) | {m for o in route.operations
                                                                      for m in surface.input_shape(o).members}
        uploads = {route.member_of(op, name) for op in route.operations for name in route.uploads} - {None}
        assert len(uploads) >= len(route.uploads) and all(
            surface.input_shape(op).members[m].name == "Image" for op in route.operations for m in uploads
            if m in surface.input_shape(op).members), route.path


def test_every_route_lists_exactly_its_shapes_members(http):
    """The OpenAPI document names, per route, the operation's input members (the model's and
    faceledger's own, less those the service ignores), with the model's ranges and enums."""
    spec = http.get("/v1/openapi.json").json()
    for route in rest.ROUTES:
        op = spec["paths"][f"/v1{route.path}"][route.method.lower()]
        names = {p["name"] for p in op.get("parameters", [])}
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        names |= set(body.get("properties", {}))
        members = {route.member_of(o, n) or "" for o in route.operations for n in names}
        expected = {m for o in route.operations for m in rest.exposed(o)}
        assert members - {""} == expected, route.path
        implemented = {m for o in route.operations for m in surface.input_shape(o).members
                       if rest.snake(m) in inspect.signature(getattr(FaceService, rest.snake(o))).parameters}
        assert expected == implemented, route.path
    listed = {p["name"]: p["schema"] for p in spec["paths"]["/v1/collections"]["get"]["parameters"]}
    page = api_model.service_model().shape_for("PageSize").metadata
    assert listed["max_results"] == {"type": "integer", "minimum": page["min"], "maximum": page["max"]}
    compare = spec["paths"]["/v1/faces/compare"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert compare["properties"]["quality_filter"]["enum"] == api_model.enum("QualityFilter")
    assert compare["required"] == ["source", "target"]


def test_the_models_ranges_and_enums_hold_on_rest(http, lfw):
    """Members the REST code never named hold as the model states: SearchFaces' FaceMatchThreshold
    (0-100), ListFaces' MaxResults (at most 4096), CompareFaces' QualityFilter (an enum, listed in
    the refusal), a FaceId's pattern on the path, an unknown parameter refused by name."""
    face = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    status, code, message = error(http.get(f"/v1/collections/surface/faces/{face}/matches?face_match_threshold=101"))
    assert (status, code) == (400, "InvalidParameterException") and "between 0 and 100" in message
    status, code, message = error(http.get("/v1/collections/surface/faces?max_results=4097"))
    assert (status, code) == (400, "InvalidParameterException") and "between 0 and 4096" in message
    data = base64.b64encode(lfw.image("Colin_Powell", 1).read_bytes()).decode()
    status, code, message = error(http.post("/v1/faces/compare", json={"source": data, "target": data, "quality_filter": "BEST"}))
    assert (status, code) == (400, "InvalidParameterException")
    assert all(level in message for level in api_model.enum("QualityFilter"))
    status, code, message = error(http.get("/v1/collections/surface/faces/not-a-face-id/matches"))
    assert (status, code) == (400, "InvalidParameterException") and "pattern" in message
    status, code, message = error(http.get("/v1/collections?max_result=5"))
    assert status == 400 and "max_result" in message and "max_results" in message
    r = http.post("/v1/faces/compare", json={"source": data, "target": data, "quality_filter": "LOW", "similarity_threshold": 0})
    assert r.status_code == 200 and r.json()["FaceMatches"], r.text


def test_a_route_follows_the_model_when_the_model_changes(monkeypatch):
    """Derived, not retyped: tighten a range in (a copy of) botocore's model and the REST route's
    check and OpenAPI schema follow, with no REST code changed."""
    shapes = surface._resolver()._shape_map
    monkeypatch.setitem(shapes, "PageSize", {**shapes["PageSize"], "max": 7})
    surface.input_shape.cache_clear()
    try:
        route = next(r for r in rest.ROUTES if r.operations == ("ListCollections",))
        params = {p["name"]: p["schema"] for p in rest.openapi(route)["parameters"]}
        assert params["max_results"]["maximum"] == 7
        shape = surface.input_shape("ListCollections")
        with pytest.raises(Exception, match="between 0 and 7"):
            api_model.check_value("ListCollections", shape, {"MaxResults": 8})
    finally:
        monkeypatch.undo()
        surface.input_shape.cache_clear()


def test_search_users_route_picks_its_operation(http, lfw):
    """One path, two operations: a body with an image is SearchUsersByImage (its output shape,
    its ledger operation), one without is SearchUsers."""
    data = base64.b64encode(lfw.image("Colin_Powell", 1).read_bytes()).decode()
    why = {"X-Faceledger-Purpose": "access-control", "X-Faceledger-Case": "REST-1"}
    r = http.post("/v1/collections/surface/users/search", json={"image": data}, headers=why)
    assert r.status_code == 200, r.text
    assert "SearchedFace" in r.json() and "UnsearchedFaces" in r.json()
    status, code, message = error(http.post("/v1/collections/surface/users/search", json={}, headers=why))
    assert status == 400 and "exactly one of UserId and FaceId" in message
