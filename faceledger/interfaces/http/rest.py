"""The native REST API (``/v1/``): Rekognition's operations at resource paths, derived from
botocore's model rather than retyped.

Each route is one row of :data:`ROUTES`, naming only what the model cannot know: the HTTP method,
the path template (its ``{placeholders}`` are members, in snake_case), the fields that carry an
image (a base64 string in JSON, or a file in multipart/form-data), and the few field names that are
not a member's snake_case. Everything else comes from the operation's input shape
(:func:`surface.input_shape`: botocore's members plus faceledger's own): which members the route
takes (from the path; then from the query string for GET and DELETE, from the body for POST), their
types, ranges, patterns, enums and required-ness, the documentation, and the OpenAPI document at
``/v1/openapi.json``. A request becomes the Rekognition request the wire would carry and goes
through the wire's dispatch (:meth:`wire.Dispatcher.dispatch`): the same validation, the gate (the
policy and the ledger), the same service method, the same output shape.

Adding an operation: implement it on the service (``FaceService.<snake_case name>``; the wire at
``POST /`` then serves it by itself), and add one row here, e.g.
``Route("POST", "/videos/{job_id}/faces", "GetFaceDetection")``. Its parameters, checks and OpenAPI
entry follow from the model; tests/test_rest_surface.py checks the row against it.
"""

from __future__ import annotations

import base64
import inspect
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from faceledger.errors import InvalidParameterError, SerializationError
from faceledger.governance.gate import Gate
from faceledger.service import api_model, surface
from faceledger.service.video_jobs import VideoService
from faceledger.interfaces.http.wire import Dispatcher, parse_json, snake

_DIGITS = re.compile(r"[0-9]+")
_PLACEHOLDER = re.compile(r"{([a-z_]+)}")


@dataclass(frozen=True)
class Route:
    """One REST route: what botocore's model cannot know about it."""

    method: str
    path: str  #: under /v1; each {placeholder} is a member in snake_case (or a name in ``names``)
    operations: tuple[str, ...]  #: the first whose input takes every field given (SearchUsers / ...ByImage)
    uploads: tuple[str, ...] = ()  #: fields carrying an image: base64 in JSON, a file in multipart
    names: dict[str, str] = field(default_factory=dict)  #: field -> member, where not the member's snake_case

    def __post_init__(self) -> None:
        if isinstance(self.operations, str):
            object.__setattr__(self, "operations", (self.operations,))

    @property
    def path_fields(self) -> list[str]:
        return _PLACEHOLDER.findall(self.path)

    def member_of(self, operation: str, name: str) -> str | None:
        """The member a field, query parameter or path placeholder names, if the operation takes it."""
        return {self.field_of(m): m for m in exposed(operation)}.get(name)

    def field_of(self, member: str) -> str:
        return next((f for f, m in self.names.items() if m == member), snake(member))

    def fields(self, operation: str) -> dict[str, str]:
        """The fields besides the path's, to member: the query string's (GET, DELETE) or the body's (POST)."""
        return {self.field_of(m): m for m in exposed(operation) if self.field_of(m) not in self.path_fields}


#: The native API: one row per route. Keep every row's path stable (clients call them).
ROUTES: list[Route] = [
    Route("POST", "/faces/detect", "DetectFaces", uploads=("image",)),
    Route("POST", "/faces/compare", "CompareFaces", uploads=("source", "target"),
          names={"source": "SourceImage", "target": "TargetImage"}),
    Route("GET", "/collections", "ListCollections"),
    Route("POST", "/collections", "CreateCollection"),
    Route("GET", "/collections/{collection_id}", "DescribeCollection"),
    Route("DELETE", "/collections/{collection_id}", "DeleteCollection"),
    Route("POST", "/collections/{collection_id}/faces", "IndexFaces", uploads=("image",)),
    Route("GET", "/collections/{collection_id}/faces", "ListFaces"),
    Route("DELETE", "/collections/{collection_id}/faces/{face_id}", "DeleteFaces", names={"face_id": "FaceIds"}),
    Route("GET", "/collections/{collection_id}/faces/{face_id}/matches", "SearchFaces"),
    Route("POST", "/collections/{collection_id}/search", "SearchFacesByImage", uploads=("image",)),
    Route("GET", "/collections/{collection_id}/users", "ListUsers"),
    Route("POST", "/collections/{collection_id}/users", "CreateUser"),
    Route("DELETE", "/collections/{collection_id}/users/{user_id}", "DeleteUser"),
    Route("POST", "/collections/{collection_id}/users/{user_id}/faces", "AssociateFaces"),
    Route("POST", "/collections/{collection_id}/users/{user_id}/faces/remove", "DisassociateFaces"),
    Route("POST", "/collections/{collection_id}/users/search", ("SearchUsers", "SearchUsersByImage"), uploads=("image",)),
    # stored video (docs/video.md): Video is {"S3Object": {"Bucket", "Name"}} under the server's S3 root
    Route("POST", "/videos/faces", "StartFaceDetection"),
    Route("GET", "/videos/faces/{job_id}", "GetFaceDetection"),
    Route("POST", "/videos/searches", "StartFaceSearch"),
    Route("GET", "/videos/searches/{job_id}", "GetFaceSearch"),
]


@lru_cache(maxsize=None)
def exposed(operation: str) -> tuple[str, ...]:
    """The input members a route offers: the shape's (faceledger's own included) that the service
    method takes (a member it does not implement, or ClientRequestToken where it ignores it, is
    not offered)."""
    shape = surface.input_shape(operation)
    takes = set(inspect.signature(getattr(VideoService, snake(operation))).parameters)  # FaceService and video
    return tuple(m for m in shape.members if snake(m) in takes)


# --- requests -----------------------------------------------------------------------------------------


async def rekognition_request(route: Route, request: Request, body: bytes) -> tuple[str, dict]:
    """The operation a request asks for and its Rekognition request (images as Image.Bytes)."""
    given: dict[str, list[Any]] = {}  # field -> its values (text from a path, query or form; typed from JSON)
    typed: set[str] = set()  # fields whose values came typed (a JSON body)
    if route.method == "POST":
        if request.query_params:
            raise InvalidParameterError(f"POST /v1{route.path} takes its parameters in the body, not the query string")
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            for name, value, is_file in await _multipart_fields(request):
                if is_file and name not in route.uploads:
                    raise InvalidParameterError(f"{name!r} is not an image field; only {', '.join(route.uploads) or 'none'} take files")
                given.setdefault(name, []).append(value)
        else:
            data = parse_json(body)
            if not isinstance(data, dict):
                raise SerializationError("the request body must be a JSON object")
            given = {str(k): [v] for k, v in data.items()}
            typed = set(given)
    else:
        for name, value in request.query_params.multi_items():
            given.setdefault(name, []).append(value)
    for name in route.path_fields:
        if name in given:
            raise InvalidParameterError(f"{name} is part of the path /v1{route.path}; do not repeat it")
    operation = next((op for op in route.operations if set(given) <= set(route.fields(op))), route.operations[0])
    fields = route.fields(operation)
    shape = surface.input_shape(operation)
    out: dict[str, Any] = {}
    for name, value in request.path_params.items():
        member = route.member_of(operation, name)
        out[member] = surface.from_text(name, shape.members[member], [value])
    for name, values in given.items():
        member = fields.get(name)
        if member is None:
            raise InvalidParameterError(f"{route.method} /v1{route.path} has no parameter {name[:80]!r}; it takes "
                                        f"{', '.join(fields) or 'none besides the path'}")
        if name in route.uploads:
            (value,) = values if len(values) == 1 else (None,)
            if not isinstance(value, str):
                raise InvalidParameterError(f"{name} is an image: a base64 string in JSON, or one file in multipart/form-data")
            out[member] = {"Bytes": value}
        elif name in typed:
            out[member] = values[0]
        else:
            out[member] = surface.from_text(name, shape.members[member], values)
    return operation, out


async def _multipart_fields(request: Request) -> list[tuple[str, str, bool]]:
    """A multipart/form-data body as (field, value, is a file); files base64-encoded; any
    malformation is a 400."""
    try:
        form = await request.form()
        fields = []
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                fields.append((key, base64.b64encode(await value.read()).decode(), True))
            else:
                fields.append((key, value, False))
        return fields
    except MultiPartException as exc:
        raise InvalidParameterError(f"malformed multipart/form-data body: {exc.message}") from None
    except HTTPException as exc:  # Starlette's own 400 for a malformed form, made a typed error
        if exc.status_code >= 500:
            raise
        raise InvalidParameterError(f"malformed multipart/form-data body: {exc.detail}") from None


# --- OpenAPI ------------------------------------------------------------------------------------------


def openapi(route: Route) -> dict:
    """The route's OpenAPI operation, from the operations' input shapes."""
    ops = route.operations
    shapes = {op: surface.input_shape(op) for op in ops}
    first = shapes[ops[0]]
    parameters = []
    for name in route.path_fields:
        member_shape = first.members[route.member_of(ops[0], name)]
        schema = surface.json_schema(member_shape.member if member_shape.type_name == "list" else member_shape)
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema,
                           "description": surface.documentation(member_shape)})
    members: dict[str, tuple[str, Any]] = {}  # field -> (member, its shape), over the route's operations
    for op in ops:
        for name, member in route.fields(op).items():
            members.setdefault(name, (member, shapes[op].members[member]))
    required = set.intersection(*(set(shapes[op].required_members) for op in ops))
    extra: dict[str, Any] = {"description": " ".join(surface.documentation(api_model.operation(op)) for op in ops)}
    if route.method != "POST":
        parameters += [{"name": name, "in": "query", "required": member in required, "schema": surface.json_schema(s),
                        "description": surface.documentation(s),
                        **({"style": "form", "explode": True} if s.type_name == "list" else {})}
                       for name, (member, s) in members.items()]
    else:
        def body(upload: dict) -> dict:
            properties = {name: ({**upload, "description": f"The image ({member})."} if name in route.uploads
                                 else {**surface.json_schema(s), "description": surface.documentation(s)})
                          for name, (member, s) in members.items()}
            schema = {"type": "object", "properties": properties, "additionalProperties": False}
            needed = [name for name, (member, _) in members.items() if member in required]
            return {"schema": {**schema, **({"required": needed} if needed else {})}}

        content = {"application/json": body({"type": "string", "contentEncoding": "base64"})}
        if route.uploads:
            content["multipart/form-data"] = body({"type": "string", "format": "binary"})
        extra["requestBody"] = {"required": True, "content": content}
    if parameters:
        extra["parameters"] = parameters
    return extra


# --- the router -------------------------------------------------------------------------------------


class ReviewBody(BaseModel):
    decision: str = Field(description="confirmed, rejected or inconclusive")
    reason: str
    face_ids: list[str] = Field(default_factory=list, description="The candidates the decision is about (all if empty).")


def native_router(gate: Gate, dispatcher: Dispatcher, received, answer) -> APIRouter:
    """``/v1/``: a route per row of :data:`ROUTES`, and the gate's own Review and ExportCandidates."""
    router = APIRouter(prefix="/v1")

    def endpoint_for(route: Route):
        async def endpoint(request: Request) -> Response:
            async def work() -> Any:
                body, ctx = await received(request)
                operation, rekognition = await rekognition_request(route, request, body)
                return await run_in_threadpool(dispatcher.dispatch, operation, rekognition, ctx, extended=True)

            return await answer(request, route.operations[0], work, "application/json")

        return endpoint

    for route in ROUTES:
        router.add_api_route(
            route.path, endpoint_for(route), methods=[route.method], summary=" / ".join(route.operations),
            operation_id=route.operations[0], openapi_extra=openapi(route), response_model=None,
            responses={200: {"description": f"as {' or '.join(route.operations)}'s output (botocore's output shape)"}},
        )

    async def review(request: Request) -> Response:
        async def work() -> Any:
            body, ctx = await received(request)
            try:
                b = ReviewBody.model_validate(parse_json(body))
            except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, made a typed client error
                raise InvalidParameterError(f"invalid request body: {exc}") from None
            entry = _entry(request.path_params)
            return api_model.plain(await run_in_threadpool(gate.review, ctx, entry, b.decision, b.reason, b.face_ids))

        return await answer(request, "Review", work, "application/json")

    async def export(request: Request) -> Response:
        async def work() -> Any:
            _, ctx = await received(request)
            return api_model.plain(await run_in_threadpool(gate.export_candidates, ctx, _entry(request.path_params)))

        return await answer(request, "ExportCandidates", work, "application/json")

    entry = {"name": "entry", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}
    router.add_api_route(
        "/ledger/{entry}/review", review, methods=["POST"], summary="Record a reviewer's decision on a search's candidate list",
        response_model=None, openapi_extra={"parameters": [entry], "requestBody": {"required": True, "content": {
            "application/json": {"schema": ReviewBody.model_json_schema()}}}})
    router.add_api_route(
        "/ledger/{entry}/candidates", export, methods=["GET"], response_model=None, openapi_extra={"parameters": [entry]},
        summary="A search's candidates for a case file (after a confirmed review, if the policy says so)")
    return router


def _entry(path: dict) -> int:
    text = str(path.get("entry", ""))
    if not _DIGITS.fullmatch(text) or len(text) > 18:
        raise InvalidParameterError("a ledger entry is a positive integer (at most 18 digits)")
    return int(text)
