"""The ASGI application: Rekognition's JSON 1.1 protocol at ``POST /``, a native REST API under
``/v1/`` (rest.py: its routes derived from botocore's model; OpenAPI at ``/v1/openapi.json``),
``/healthz`` and ``/metrics``.

Both APIs are thin translations onto the same FaceService methods and answer with the same
JSON shapes (botocore's output shapes). CPU-bound work runs in a thread pool, off the event loop;
for parallel CPU use run several worker processes (`faceledger serve --workers N`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from faceledger.governance.app import open_gate
from faceledger.governance.policy import Context, Principal
from faceledger.errors import (
    FaceledgerError, InternalError, InvalidSignatureError, RequestTimeoutError, RequestTooLargeError,
    UnknownOperationError, UnrecognizedClientError,
)
from faceledger.service.operations import FaceService
from faceledger.settings import Settings
from faceledger.interfaces.http import sigv4
from faceledger.governance.keys import open_keys
from faceledger.interfaces.http.console import console_router
from faceledger.interfaces.http.metrics import Metrics
from faceledger.interfaces.http.rest import native_router as _native_router
from faceledger.interfaces.http.wire import TARGET_PREFIX, Dispatcher, error_body

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

    def video_worker() -> None:  # stored-video jobs run on a thread of each server process
        from faceledger.governance.video import start_worker

        app.state.video_worker = start_worker(gate)

    def stop_video_worker() -> None:
        if getattr(app.state, "video_worker", None) is not None:
            app.state.video_worker.stop()

    app.router.on_startup.append(video_worker)
    app.router.on_shutdown.append(stop_video_worker)

    return app


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())
