"""The ASGI application: Rekognition's JSON 1.1 protocol at ``POST /``, a native REST API under
``/v1/`` (OpenAPI at ``/v1/openapi.json``), ``/healthz`` and ``/metrics``.

Both APIs are thin translations onto the same FaceService methods and answer with the same
JSON shapes (botocore's output shapes). CPU-bound work runs in a thread pool, off the event loop;
for parallel CPU use run several worker processes (`faceledger serve --workers N`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from faceledger.service import api_model
from faceledger.governance.gate import Gate
from faceledger.governance.app import open_gate
from faceledger.governance.policy import Context, Principal
from faceledger.errors import (
    FaceledgerError, InternalError, InvalidParameterError, InvalidSignatureError, RequestTimeoutError, RequestTooLargeError,
    UnknownOperationError, UnrecognizedClientError,
)
from faceledger.service.operations import FaceService
from faceledger.settings import Settings
from faceledger.interfaces.http import sigv4
from faceledger.governance.keys import open_keys
from faceledger.interfaces.http.console import console_router
from faceledger.interfaces.http.metrics import Metrics
from faceledger.interfaces.http.wire import TARGET_PREFIX, Dispatcher, error_body, parse_json

log = logging.getLogger("faceledger.interfaces.http")
#: ASCII digits only: str.isdigit() also accepts characters such as "²" that int() refuses.
_DIGITS = re.compile(r"[0-9]+")
AMZ_JSON = "application/x-amz-json-1.1"


def create_app(settings: Settings | None = None, service: FaceService | None = None) -> FastAPI:
    settings = settings or Settings.load()
    gate = open_gate(settings, service)
    service = gate.service
    dispatcher = Dispatcher(gate, s3_root=settings.s3_root, max_image_bytes=settings.max_image_bytes)
    keys = open_keys(settings)
    metrics = Metrics(dispatcher.operations | {"Review", "ExportCandidates"})
    app = FastAPI(
        title="faceledger native API", version="1",
        description="Face detection, comparison, collections, search and users. The same service and the same "
        "JSON shapes as the Rekognition-compatible endpoint at POST /.",
        openapi_url="/v1/openapi.json", docs_url="/v1/docs", redoc_url=None,
    )
    app.state.service = service
    app.state.metrics = metrics

    def too_large() -> RequestTooLargeError:
        return RequestTooLargeError(f"the request body is over the {settings.max_request_bytes:,}-byte limit")

    def declared_size(request: Request) -> None:
        """A Content-Length over the limit is refused before anything else: it costs no read."""
        declared = request.headers.get("content-length")
        if declared and _DIGITS.fullmatch(declared) and int(declared) > settings.max_request_bytes:
            raise too_large()

    async def body_of(request: Request) -> bytes:
        """The body, at most max_request_bytes, within body_read_timeout seconds. Called only once
        the request's credentials passed :func:`precheck`: no anonymous client makes us read one."""
        chunks, size = [], 0

        async def read() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > settings.max_request_bytes:
                    raise too_large()
                chunks.append(chunk)

        try:
            await asyncio.wait_for(read(), timeout=settings.body_read_timeout)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(
                f"the request body did not arrive within {settings.body_read_timeout} s ({size:,} bytes read); "
                "send it faster or in a smaller request") from None
        body = b"".join(chunks)
        request._body = body  # Starlette replays a cached body to request.form() (multipart uploads)
        return body

    def raw_headers(request: Request) -> dict[str, list[str]]:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.raw:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        return headers

    def precheck(request: Request) -> Any:
        """The credentials, checked before the body is read: the key, the scope, the date and that
        the signature covers every header that shapes the request (sigv4.precheck)."""
        if settings.auth == "none" or request.headers.get("authorization", "").startswith("Bearer "):
            return None
        return sigv4.precheck(headers=raw_headers(request), secret_for=keys.secret, region=settings.region)

    async def received(request: Request) -> tuple[bytes, Context]:
        declared_size(request)
        checked = precheck(request)
        body = await body_of(request)
        return body, authenticate(request, body, checked)

    def authenticate(request: Request, body: bytes, checked: Any = None) -> Context:
        """Who is asking (from the signing key), why (X-Faceledger-Purpose, X-Faceledger-Case;
        a key that carries exactly one purpose states it by default, and its standing case, if any,
        unless the request names another: unchanged clients send neither header) and in which
        account (the key's, or X-Faceledger-Account where the policy lets its role act across
        accounts)."""
        key_id = _key_id(request, body, checked)
        standing_case = ""
        if key_id is None:  # auth none: local testing, with the operator's roles
            principal = Principal("unauthenticated", gate.policy.local_roles, ("*",))
        else:
            key = keys.get(key_id)
            principal = Principal(key.principal, key.roles, key.purposes, key.account)
            standing_case = key.case
        purpose = request.headers.get("x-faceledger-purpose") or (
            principal.purposes[0] if len(principal.purposes) == 1 and principal.purposes[0] != "*" else None)
        ctx = Context(principal, purpose, request.headers.get("x-faceledger-case") or standing_case or None, "http",
                      request.headers.get("x-faceledger-account") or None)
        request.state.ctx = ctx  # for the ledger entry of a request refused after authentication
        return ctx

    def _key_id(request: Request, body: bytes, checked: Any = None) -> str | None:
        if settings.auth == "none":
            return None
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):  # the native API's simple scheme: KEY_ID:SECRET over TLS
            key_id, _, secret = header[7:].partition(":")
            expected = keys.secret(key_id)
            if expected is None:
                raise UnrecognizedClientError("unknown or revoked access key")
            if not _same(expected, secret):
                raise InvalidSignatureError("the secret does not match the access key")
            return key_id
        return sigv4.verify(
            method=request.method, path=request.url.path, query=request.url.query, headers=raw_headers(request),
            body=body, secret_for=keys.secret, region=settings.region, checked=checked,
        ).access_key_id

    async def answer(request: Request, operation: str, work: Callable[[], Awaitable[Any]], media_type: str) -> Response:
        request_id = str(uuid.uuid4())
        start = time.perf_counter()
        try:
            status, payload, outcome = 200, await work(), "ok"
        except FaceledgerError as exc:
            exc = await run_in_threadpool(refused, request, operation, exc)
            status, payload, outcome = exc.http_status, error_body(exc), exc.code
        except Exception as unexpected:  # noqa: BLE001 - reported as 500 with the request id, logged with its traceback
            log.exception("request %s (%s) failed", request_id, operation)
            exc = InternalError(f"internal error; quote request id {request_id} when reporting it")
            if not getattr(unexpected, "ledger_recorded", False):
                exc = await run_in_threadpool(refused, request, operation, exc)
            status, payload, outcome = exc.http_status, error_body(exc), exc.code
        metrics.observe(operation, outcome, time.perf_counter() - start)
        return Response(json.dumps(payload), status_code=status, media_type=media_type, headers={"x-amzn-RequestId": request_id})

    def refused(request: Request, operation: str, exc: Exception) -> Exception:
        """Errors raised before the gate (authentication, validation) reach the ledger through it."""
        body = getattr(request, "_body", None)
        return gate.refused(getattr(request.state, "ctx", None), operation, exc,
                            body_sha256=hashlib.sha256(body).hexdigest() if body is not None else None)

    # --- the Rekognition JSON 1.1 protocol ----------------------------------------------------------

    @app.post("/", include_in_schema=False)
    async def rekognition(request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None  # metrics bound it

        async def work() -> Any:
            body, ctx = await received(request)
            op = dispatcher.operation_of(target)
            return await run_in_threadpool(dispatcher.call, op, body, ctx)

        return await answer(request, operation, work, AMZ_JSON)

    @app.exception_handler(HTTPException)
    async def unrouted(request: Request, exc: HTTPException) -> Response:
        """Starlette's own 404/405 (no such route or method), in the protocol's typed error body."""
        error = UnknownOperationError(f"no operation at {request.method} {request.url.path[:200]}: {exc.detail}")
        metrics.observe(None, error.code, 0.0)
        return Response(json.dumps(error_body(error)), status_code=exc.status_code if exc.status_code < 500 else 400,
                        media_type="application/json")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "model": service.model})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    app.include_router(_native_router(gate, dispatcher, received, answer))
    app.include_router(console_router(settings, gate, keys))  # /console: docs/console.md
    return app


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


# --- the native REST API -----------------------------------------------------------------------------


class ImageBody(BaseModel):
    image: str = Field(description="The image, base64-encoded (or send multipart/form-data with a file field 'image').")


class CompareBody(BaseModel):
    source: str = Field(description="Source image, base64")
    target: str = Field(description="Target image, base64")
    similarity_threshold: float | None = Field(None, ge=0, le=100)
    quality_filter: str | None = None


class CollectionBody(BaseModel):
    collection_id: str
    store_images: bool = False
    model: str | None = None  # `faceledger models list`; default: the server's model


class IndexBody(ImageBody):
    external_image_id: str | None = None
    max_faces: int | None = Field(None, ge=1)
    quality_filter: str | None = None


class SearchBody(ImageBody):
    max_faces: int | None = Field(None, ge=1, le=4096)
    face_match_threshold: float | None = Field(None, ge=0, le=100)
    max_false_match_rate: float | None = Field(None, gt=0, le=1, description="Threshold as a false match rate target")
    quality_filter: str | None = None


class UserBody(BaseModel):
    user_id: str


class FaceIdsBody(BaseModel):
    face_ids: list[str]
    user_match_threshold: float | None = Field(None, ge=0, le=100)


class UserSearchBody(BaseModel):
    image: str | None = None
    user_id: str | None = None
    face_id: str | None = None
    user_match_threshold: float | None = Field(None, ge=0, le=100)
    max_users: int | None = Field(None, ge=1, le=500)
    max_false_match_rate: float | None = Field(None, gt=0, le=1)


class ReviewBody(BaseModel):
    decision: str = Field(description="confirmed, rejected or inconclusive")
    reason: str
    face_ids: list[str] = Field(default_factory=list, description="The candidates the decision is about (all if empty).")


def _native_router(gate: Gate, dispatcher: Dispatcher, received, answer) -> APIRouter:
    router = APIRouter(prefix="/v1")
    service = gate.service

    async def parsed(request: Request, model: type[BaseModel] | None, images: tuple[str, ...] = ()) -> tuple[dict, Context]:
        """The body as keyword arguments: JSON (images in base64) or multipart (images as files)."""
        body, ctx = await received(request)
        if model is None:
            return {}, ctx
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            fields = await _multipart_fields(request)
        else:
            fields = parse_json(body)
        try:
            data = model.model_validate(fields).model_dump(exclude_none=True)
        except Exception as exc:  # pydantic's ValidationError, made a typed client error
            raise InvalidParameterError(f"invalid request body: {exc}") from None
        for name in images:
            if name in data:
                try:
                    data[name] = base64.b64decode(data[name], validate=True)
                except (binascii.Error, ValueError):
                    raise InvalidParameterError(f"{name} is not valid base64") from None
        return data, ctx

    def route(operation: str, model: type[BaseModel] | None, call: Callable[[dict, dict], Any], images: tuple[str, ...] = ()):
        async def endpoint(request: Request) -> Response:
            async def work() -> Any:
                kwargs, ctx = await parsed(request, model, images)
                path, query = dict(request.path_params), dict(request.query_params)
                if operation in ("Review", "ExportCandidates"):  # the gate's own operations
                    result = await run_in_threadpool(call, kwargs, path, ctx)
                    return api_model.plain(result)
                result = await run_in_threadpool(
                    gate.call, ctx, operation, lambda **extra: call(kwargs, path, query, **extra),
                    collection=path.get("collection_id") or kwargs.get("collection_id"),
                    images=[kwargs[n] for n in images if n in kwargs])
                return api_model.output(operation, result)

            return await answer(request, operation, work, "application/json")

        return endpoint

    def add(method: str, path: str, operation: str, model, call, images=(), summary: str = "", query=()) -> None:
        extra: dict[str, Any] = {}
        if model is not None:
            schema = {"$ref": f"#/components/schemas/{model.__name__}"}
            content = {"application/json": {"schema": schema}}
            if images:
                content["multipart/form-data"] = {"schema": schema}
            extra["requestBody"] = {"required": True, "content": content}
        if query:
            extra["parameters"] = [
                {"name": n, "in": "query", "required": False, "schema": {"type": "integer" if n.startswith("max_") else "string"}}
                for n in query
            ]
        router.add_api_route(
            path, route(operation, model, call, images), methods=[method], summary=summary or operation,
            openapi_extra=extra or None, response_model=None, responses={200: {"description": f"as {operation}'s output"}},
        )

    def q_float(q: dict, name: str) -> float | None:
        value = q.get(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise InvalidParameterError(f"{name} must be a number") from None

    def q_int(q: dict, name: str) -> int | None:
        value = q.get(name)
        if value is None:
            return None
        if not re.fullmatch(r"-?[0-9]+", value):
            raise InvalidParameterError(f"{name} must be an integer")
        return int(value)

    add("POST", "/faces/detect", "DetectFaces", ImageBody, lambda b, p, q: service.detect_faces(b["image"]), ("image",))
    add("POST", "/faces/compare", "CompareFaces", CompareBody, lambda b, p, q: service.compare_faces(
        b["source"], b["target"], similarity_threshold=b.get("similarity_threshold"),
        quality_filter=b.get("quality_filter") or "NONE"), ("source", "target"))
    add("GET", "/collections", "ListCollections", None, lambda b, p, q: service.list_collections(
        max_results=q_int(q, "max_results"), next_token=q.get("next_token")), query=("max_results", "next_token"))
    add("POST", "/collections", "CreateCollection", CollectionBody, lambda b, p, q: service.create_collection(
        b["collection_id"], store_images=b.get("store_images", False), model=b.get("model")))
    add("GET", "/collections/{collection_id}", "DescribeCollection", None,
        lambda b, p, q: service.describe_collection(p["collection_id"]))
    add("DELETE", "/collections/{collection_id}", "DeleteCollection", None,
        lambda b, p, q: service.delete_collection(p["collection_id"]))
    add("POST", "/collections/{collection_id}/faces", "IndexFaces", IndexBody, lambda b, p, q: service.index_faces(
        p["collection_id"], b["image"], external_image_id=b.get("external_image_id"), max_faces=b.get("max_faces"),
        quality_filter=b.get("quality_filter") or "AUTO"), ("image",))
    add("GET", "/collections/{collection_id}/faces", "ListFaces", None, lambda b, p, q: service.list_faces(
        p["collection_id"], max_results=q_int(q, "max_results"), next_token=q.get("next_token"), user_id=q.get("user_id")),
        query=("max_results", "next_token", "user_id"))
    add("DELETE", "/collections/{collection_id}/faces/{face_id}", "DeleteFaces", None,
        lambda b, p, q: service.delete_faces(p["collection_id"], [p["face_id"]]))
    add("GET", "/collections/{collection_id}/faces/{face_id}/matches", "SearchFaces", None,
        lambda b, p, q, **x: service.search_faces(p["collection_id"], p["face_id"], max_faces=q_int(q, "max_faces"),
                                                  max_false_match_rate=q_float(q, "max_false_match_rate"), **x),
        query=("max_faces", "max_false_match_rate"))
    add("POST", "/collections/{collection_id}/search", "SearchFacesByImage", SearchBody,
        lambda b, p, q, **x: service.search_faces_by_image(
            p["collection_id"], b["image"], max_faces=b.get("max_faces"), face_match_threshold=b.get("face_match_threshold"),
            quality_filter=b.get("quality_filter") or "NONE", max_false_match_rate=b.get("max_false_match_rate"), **x),
        ("image",))
    add("GET", "/collections/{collection_id}/users", "ListUsers", None, lambda b, p, q: service.list_users(
        p["collection_id"], max_results=q_int(q, "max_results"), next_token=q.get("next_token")),
        query=("max_results", "next_token"))
    add("POST", "/collections/{collection_id}/users", "CreateUser", UserBody,
        lambda b, p, q: service.create_user(p["collection_id"], b["user_id"]))
    add("DELETE", "/collections/{collection_id}/users/{user_id}", "DeleteUser", None,
        lambda b, p, q: service.delete_user(p["collection_id"], p["user_id"]))
    add("POST", "/collections/{collection_id}/users/{user_id}/faces", "AssociateFaces", FaceIdsBody,
        lambda b, p, q: service.associate_faces(p["collection_id"], p["user_id"], b["face_ids"],
                                                user_match_threshold=b.get("user_match_threshold")))
    add("POST", "/collections/{collection_id}/users/{user_id}/faces/remove", "DisassociateFaces", FaceIdsBody,
        lambda b, p, q: service.disassociate_faces(p["collection_id"], p["user_id"], b["face_ids"]))
    add("POST", "/collections/{collection_id}/users/search", "SearchUsers", UserSearchBody,
        lambda b, p, q, **x: _search_users(service, p["collection_id"], b, **x), ("image",))
    add("POST", "/ledger/{entry}/review", "Review", ReviewBody,
        lambda b, p, ctx: gate.review(ctx, _entry(p), b["decision"], b["reason"], b.get("face_ids", ())),
        summary="Record a reviewer's decision on a search's candidate list")
    add("GET", "/ledger/{entry}/candidates", "ExportCandidates", None,
        lambda b, p, ctx: gate.export_candidates(ctx, _entry(p)),
        summary="A search's candidates for a case file (after a confirmed review, if the policy says so)")
    return router


async def _multipart_fields(request: Request) -> dict[str, Any]:
    """A multipart/form-data body as fields, files base64-encoded; any malformation is a 400."""
    try:
        form = await request.form()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                fields[key] = base64.b64encode(await value.read()).decode()
            else:
                fields[key] = value
        return fields
    except MultiPartException as exc:
        raise InvalidParameterError(f"malformed multipart/form-data body: {exc.message}") from None
    except HTTPException as exc:  # Starlette's own 400 for a malformed form, made a typed error
        if exc.status_code >= 500:
            raise
        raise InvalidParameterError(f"malformed multipart/form-data body: {exc.detail}") from None


def _entry(path: dict) -> int:
    text = str(path.get("entry", ""))
    if not _DIGITS.fullmatch(text) or len(text) > 18:
        raise InvalidParameterError("a ledger entry is a positive integer (at most 18 digits)")
    return int(text)


def _search_users(service: FaceService, collection_id: str, b: dict, **extra):
    if "image" in b:
        return service.search_users_by_image(collection_id, b["image"], user_match_threshold=b.get("user_match_threshold"),
                                             max_users=b.get("max_users"), max_false_match_rate=b.get("max_false_match_rate"),
                                             **extra)
    return service.search_users(collection_id, user_id=b.get("user_id"), face_id=b.get("face_id"),
                                user_match_threshold=b.get("user_match_threshold"), max_users=b.get("max_users"),
                                max_false_match_rate=b.get("max_false_match_rate"), **extra)
