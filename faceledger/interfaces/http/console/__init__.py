"""The review console at /console: server-rendered pages over governance.console.Console.

A thin translation, as every interface: each page asks Console (which asks the policy, through the
gate, and writes the ledger) and renders what it returns. Everything is served by the package
(templates/, static/); no script or style comes from elsewhere, and the Content-Security-Policy
says so. The session cookie is HttpOnly, SameSite=Strict, Secure over TLS; every POST carries the
session's CSRF token (sign-in: a double-submit token of its own).
"""

from __future__ import annotations

import html
import json
import secrets
from importlib import resources
from string import Template
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from faceledger.errors import (AccessDeniedError, FaceledgerError, InvalidParameterError, ResourceNotFoundError,
                               UnknownOperationError)
from faceledger.governance.console import Console
from faceledger.governance.gate import REVIEW_DECISIONS
from faceledger.governance.sessions import Session, SessionExpiredError, SessionStore

COOKIE = "faceledger_console"
PRE_COOKIE = "faceledger_console_signin"
_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Frame-Options": "DENY", "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}
FORM_BYTES = 64 * 1024  # the console's forms are a few fields: a reason, a key's description
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
_LABELS = {"queue": "Review queue", "ledger": "Ledger", "audits": "Audits", "policy": "Policy",
           "collections": "Collections", "keys": "Keys", "health": "Health"}


def _template(name: str) -> Template:
    return Template(resources.files(__package__).joinpath("templates", name).read_text())


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def fmr(value: float | None) -> str:
    """A false match rate people can read: 1 in N, with the rate to two significant figures."""
    if value is None:
        return "not calibrated"
    if value <= 0:
        return "below the calibration's range"
    return f"{value:.2g} (1 in {round(1 / value):,})"


def console_router(settings, gate, keys) -> APIRouter:
    """The console's routes; ``create_app`` includes them with one line."""
    console = Console(gate, keys, settings)
    sessions: SessionStore = console.sessions
    router = APIRouter(prefix="/console", include_in_schema=False)
    base, signin_page = _template("base.html"), _template("signin.html")

    def page(title: str, body: str, session: Session | None = None, here: str = "", status: int = 200,
             nav: list[str] | None = None) -> HTMLResponse:
        links = "".join(f'<a href="/console/{s}"{" class=here" if s == here else ""}>{_LABELS[s]}</a>' for s in nav or [])
        who = ""
        if session is not None:
            k = session.key
            who = (f"{esc(k.principal)} <span class=muted>({esc(', '.join(k.roles))})</span>"
                   f'<form method="post" action="/console/signout"><input type="hidden" name="csrf" '
                   f'value="{esc(session.csrf)}"><button class="plain" type="submit">Sign out</button></form>')
        text = base.substitute(title=esc(title), nav=links, who=who, body=body)
        return HTMLResponse(text, status_code=status, headers=_HEADERS)

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    def signin_response(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        body = signin_page.substitute(csrf=esc(token), minutes=settings.console_session_seconds // 60,
                                      message=f'<div class="notice error">{esc(message)}</div>' if message else "")
        response = page("Sign in", body, status=status)
        response.set_cookie(PRE_COOKIE, token, httponly=True, samesite="strict", secure=secure(request),
                            path="/console/signin", max_age=900)
        return response

    async def form_of(request: Request) -> dict[str, str]:
        """A urlencoded form of at most FORM_BYTES (read before anyone is authenticated: bounded)."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > FORM_BYTES:
                return {}  # no CSRF token in it: refused as any form without one
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=50)
        except ValueError:  # more fields than any console form has
            return {}
        return {k: v[0] for k, v in fields.items()}

    def session_of(request: Request) -> Session:
        return sessions.session(request.cookies.get(COOKIE))

    def failed(request: Request, exc: FaceledgerError, session: Session | None, nav: list[str]) -> Response:
        """A refusal as a page (the gate recorded it); a missing or ended session goes to sign-in."""
        if isinstance(exc, SessionExpiredError):
            gate.refused(None, "ConsoleSession", exc, interface="console")
            if request.method == "GET":
                return RedirectResponse("/console/signin", status_code=303, headers=_HEADERS)
            return signin_response(request, exc.message, status=401)
        if not getattr(exc, "ledger_recorded", False):
            gate.refused(session.context() if session else None, "Console", exc, interface="console")
        body = f'<div class="notice error"><strong>{esc(exc.code)}</strong>: {esc(exc.message)}</div>'
        return page("Refused" if exc.http_status in (401, 403) else "Error", body, session,
                    status=exc.http_status if exc.http_status >= 400 else 400, nav=nav)

    def view(here: str, render: Callable[[Request, Session], tuple[str, str]], *, post: bool = False):
        """A page: the session (CSRF on POST), then ``render`` in a worker thread; errors as pages."""
        async def endpoint(request: Request) -> Response:
            session, nav = None, []
            fields = await form_of(request) if post else {}
            try:
                session = await run_in_threadpool(session_of, request)
                nav = console.sections(session.context())
                if post:
                    SessionStore.check_csrf(session, fields.get("csrf"))
                request.state.fields = fields
                result = await run_in_threadpool(render, request, session)
            except FaceledgerError as exc:
                return await run_in_threadpool(failed, request, exc, session, nav)
            if isinstance(result, Response):
                return result
            title, body = result
            return page(title, body, session, here, nav=nav)

        return endpoint

    def csrf_field(session: Session) -> str:
        return f'<input type="hidden" name="csrf" value="{esc(session.csrf)}">'

    # --- sign-in ----------------------------------------------------------------------------------------

    @router.get("/signin")
    async def signin_form(request: Request) -> Response:
        return signin_response(request)

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        fields = await form_of(request)
        pre = request.cookies.get(PRE_COOKIE)
        if not pre or not secrets.compare_digest(pre.encode(), fields.get("csrf", "").encode()):
            refusal = AccessDeniedError("the sign-in form expired or came from another site: try again")
            await run_in_threadpool(gate.refused, None, "ConsoleSignIn", refusal, interface="console")
            return signin_response(request, refusal.message, 403)
        try:
            token, session = await run_in_threadpool(sessions.sign_in, fields.get("key_id", ""), fields.get("secret", ""))
        except FaceledgerError as exc:
            await run_in_threadpool(gate.refused, None, "ConsoleSignIn", exc, interface="console")
            return signin_response(request, exc.message, 403)
        await run_in_threadpool(sessions.sign_out, request.cookies.get(COOKIE))  # a session held before ends here
        try:
            await run_in_threadpool(console.signed_in, session.context(), session.key.access_key_id)
        except FaceledgerError as exc:  # the ledger could not record it: no session without its entry
            await run_in_threadpool(sessions.sign_out, token)
            return signin_response(request, exc.message, exc.http_status)
        sections = console.sections(session.context())
        response = RedirectResponse(f"/console/{sections[0]}" if sections else "/console/none", status_code=303,
                                    headers=_HEADERS)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure(request), path="/console")
        response.delete_cookie(PRE_COOKIE, path="/console/signin")
        return response

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        fields = await form_of(request)
        try:
            session = await run_in_threadpool(session_of, request)
            SessionStore.check_csrf(session, fields.get("csrf"))
        except FaceledgerError:
            return RedirectResponse("/console/signin", status_code=303, headers=_HEADERS)
        await run_in_threadpool(sessions.sign_out, request.cookies.get(COOKIE))
        await run_in_threadpool(console.signed_out, session.context(), session.key.access_key_id)
        response = RedirectResponse("/console/signin", status_code=303, headers=_HEADERS)
        response.delete_cookie(COOKIE, path="/console")
        return response

    @router.get("")
    @router.get("/")
    async def home(request: Request) -> Response:
        try:
            session = await run_in_threadpool(session_of, request)
        except FaceledgerError:
            return RedirectResponse("/console/signin", status_code=303, headers=_HEADERS)
        sections = console.sections(session.context())
        return RedirectResponse(f"/console/{sections[0]}" if sections else "/console/none", status_code=303, headers=_HEADERS)

    def nothing(request: Request, s: Session):
        return "Nothing to open", ('<p class="lead">This key\'s roles open no page of the console under the policy in '
                                   "force. Ask an operator for a key with the reviewer, auditor or operator role.</p>")

    router.add_api_route("/none", view("", nothing), methods=["GET"])

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in _STATIC:
            return Response("not found", status_code=404)
        data = resources.files(__package__).joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name], headers={"Cache-Control": "max-age=3600",
                                                                 "X-Content-Type-Options": "nosniff"})

    # --- reviewer ---------------------------------------------------------------------------------------

    def queue(request: Request, s: Session):
        q = request.query_params
        case, purpose = q.get("case", ""), q.get("purpose", "")
        data = console.queue(s.context(), case=case, purpose=purpose, before=_int(q.get("before")))
        rows = "".join(
            f"<tr><td><a href=\"/console/review/{i.seq}\">{i.seq}</a></td><td>{esc(i.time[:19].replace('T', ' '))}</td>"
            f"<td>{esc(i.case_reference or '')}</td><td class=hide-narrow>{esc(i.purpose or '')}</td><td class=hide-narrow>{esc(i.principal)}</td>"
            f"<td class=hide-narrow>{esc(i.collection or '')}</td><td class=num>{i.undecided} of {i.candidates}</td>"
            f"<td class=num>{'' if i.best_similarity is None else f'{i.best_similarity:.1f}'}</td></tr>"
            for i in data.items)
        filters = (f'<form method="get" class="card filters"><label>Case <input name="case" value="{esc(case)}"></label>'
                   f'<label>Purpose <input name="purpose" value="{esc(purpose)}"></label><button type="submit">Filter</button></form>')
        table = ("<div class=table><table><thead><tr><th>Search</th><th>Time (UTC)</th><th>Case</th><th class=hide-narrow>Purpose</th>"
                 "<th class=hide-narrow>Searched by</th><th class=hide-narrow>Collection</th><th>Awaiting</th>"
                 f"<th>Best similarity</th></tr></thead><tbody>{rows or '<tr><td colspan=8 class=muted>Nothing awaits review.</td></tr>'}"
                 "</tbody></table></div>")
        more = _pager("/console/queue", {"case": case, "purpose": purpose}, data.next_before)
        lead = (f'<p class="lead">{data.open_total:,} identification(s) with candidates awaiting a decision, newest first. '
                "Each is a list of candidates for you to compare with the probe, never an identification.</p>")
        return "Review queue", lead + filters + table + more

    def review(request: Request, s: Session):
        seq = _int(request.path_params["seq"], required=True)
        return "Review", _review_body(console.item(s.context(), seq), s, csrf_field(s))

    def decide(request: Request, s: Session):
        seq = _int(request.path_params["seq"], required=True)
        f = request.state.fields
        decision = f.get("decision", "")
        if decision not in REVIEW_DECISIONS:
            raise InvalidParameterError(f"a decision is one of {', '.join(REVIEW_DECISIONS)}")
        r = console.decide(s.context(), seq, f.get("candidate", ""), decision, f.get("reason", ""))
        return RedirectResponse(f"/console/review/{seq}?recorded={r.ledger_entry}", status_code=303, headers=_HEADERS)

    router.add_api_route("/queue", view("queue", queue), methods=["GET"])
    router.add_api_route("/review/{seq}", view("queue", review), methods=["GET"])
    router.add_api_route("/review/{seq}", view("queue", decide, post=True), methods=["POST"])

    # --- auditor ----------------------------------------------------------------------------------------

    def ledger(request: Request, s: Session):
        q = request.query_params
        names = ("principal", "purpose", "case_ref", "operation", "outcome", "since", "until")
        given = {n: q.get(n, "") for n in names}
        data = console.ledger(s.context(), before=_int(q.get("before")), **given)
        v = data.verification
        if v is None:
            status = '<span class="pill warn">not verified from the console yet</span>'
        else:
            mark = ('<span class="pill ok">intact</span>' if v.get("intact") else
                    f'<span class="pill bad">broken at entry {esc(v["problems"][0]["seq"])}</span>')
            heads = (f"{v.get('heads')} signed head(s) checked, the last covering entry {v.get('last_head')}"
                     if v.get("heads_checked") else "chain only (no ledger_public_key set: signed heads not checked)")
            status = (f"{mark} {esc(v.get('entries'))} entries checked at {esc(str(v.get('time'))[:19])} by "
                      f"{esc(v.get('principal'))} (entry {v['entry']}): {esc(heads)}")
        verify_form = (f'<form method="post" action="/console/ledger/verify">{csrf_field(s)}'
                       '<button type="submit">Verify the ledger now</button></form>')
        inputs = "".join(f'<label>{n.replace("_ref", "").capitalize()} <input name="{n}" value="{esc(given[n])}"'
                         f'{" placeholder=2026-01-31T00:00" if n in ("since", "until") else ""}></label>' for n in names)
        rows = "".join(
            f"<tr><td><a href=\"/console/ledger/{r.seq}\">{r.seq}</a></td><td>{esc(r.time[:19].replace('T', ' '))}</td>"
            f"<td>{esc(r.operation)}</td><td>{esc(r.principal or '')}</td><td class=hide-narrow>{esc(r.purpose or '')}</td>"
            f"<td class=hide-narrow>{esc(r.case_reference or '')}</td>"
            f"<td><span class=\"{'ok' if r.outcome == 'ok' else 'muted' if r.outcome == 'intent' else 'bad'}\">{esc(r.outcome or '')}</span></td>"
            f"<td class=hide-narrow>{esc(r.detail)}</td></tr>" for r in data.rows)
        body = (f'<div class="card">Verification: {status}{verify_form}</div>'
                f'<form method="get" class="card filters">{inputs}<button type="submit">Search</button></form>'
                f'<p class="muted">{data.end:,} entries in the ledger; newest first.</p>'
                "<div class=table><table><thead><tr><th>Entry</th><th>Time (UTC)</th><th>Operation</th><th>Principal</th>"
                "<th class=hide-narrow>Purpose</th><th class=hide-narrow>Case</th><th>Outcome</th><th class=hide-narrow>Detail</th>"
                f"</tr></thead><tbody>{rows or '<tr><td colspan=8 class=muted>No entry matches.</td></tr>'}</tbody></table></div>"
                + _pager("/console/ledger", given, data.next_before))
        return "Ledger", body

    def ledger_entry(request: Request, s: Session):
        seq = _int(request.path_params["seq"], required=True)
        e = console.entry(s.context(), seq)
        text = json.dumps({"seq": e.seq, "hash": e.hash, **e.body}, indent=2, sort_keys=True)
        return f"Ledger entry {e.seq}", f'<p><a href="/console/ledger">Back to the ledger</a></p><pre>{esc(text)}</pre>'

    def verify(request: Request, s: Session):
        console.verify(s.context())
        return RedirectResponse("/console/ledger", status_code=303, headers=_HEADERS)

    def audits(request: Request, s: Session):
        found = console.audits(s.context())
        rows = "".join(f"<tr><td><a href=\"/console/audits/{esc(r['name'])}\">{esc(r['name'])}</a></td><td>{esc(r['kind'])}</td>"
                       f"<td class=num>{r['bytes']:,}</td><td>{esc(r['modified'])}</td></tr>" for r in found)
        return "Audit reports", (
            f'<p class="lead">Reports in <code>{esc(console.reports_dir)}</code> (write them there with '
            "<code>faceledger audit ... --html-out</code>), newest first.</p><div class=table><table><thead><tr><th>Report</th>"
            f"<th>Kind</th><th>Bytes</th><th>Written</th></tr></thead><tbody>{rows or '<tr><td colspan=4 class=muted>No report yet.</td></tr>'}"
            "</tbody></table></div>")

    def audit_report(request: Request, s: Session):
        data, kind = console.audit_report(s.context(), request.path_params["name"])
        media = {"html": "text/html", "md": "text/plain", "json": "application/json"}[kind]
        # A report is shown in a sandbox: no script of it runs in the console's origin.
        return Response(data, media_type=media + "; charset=utf-8",
                        headers={**_HEADERS, "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"})

    def policy(request: Request, s: Session):
        p = console.policy(s.context())
        roles = "".join(f"<tr><td>{esc(r)}</td><td>{esc(', '.join(ops))}</td></tr>" for r, ops in p["roles"].items())
        facts = (f"<dl class=facts><dt>Name</dt><dd>{esc(p['name'])}</dd><dt>Digest</dt><dd><code>{esc(p['digest'])}</code></dd>"
                 f"<dt>From</dt><dd>{esc(p['origin'])}</dd><dt>Identification allowed for</dt><dd>{esc(', '.join(p['allowed_purposes']) or 'no purpose')}</dd>"
                 f"<dt>Denied for</dt><dd>{esc(', '.join(p['denied_purposes']) or 'none')}</dd>"
                 f"<dt>False positive identification rate bound</dt><dd>{p['max_fpir']:g}</dd>"
                 f"<dt>Separation of duties</dt><dd>{'yes: who searched may not review or export' if p['separate_duties'] else 'no'}</dd>"
                 f"<dt>Review before export</dt><dd>{'required' if p['review_required_before_export'] else 'not required'}</dd></dl>")
        text = f"<h2>The policy file</h2><pre>{esc(p['text'])}</pre>" if p["text"] else ""
        return "Policy in force", (f'<div class="card">{facts}</div><h2>Roles and their operations</h2><div class=table><table>'
                                   f"<thead><tr><th>Role</th><th>Operations</th></tr></thead><tbody>{roles}</tbody></table></div>{text}")

    router.add_api_route("/ledger", view("ledger", ledger), methods=["GET"])
    router.add_api_route("/ledger/verify", view("ledger", verify, post=True), methods=["POST"])
    router.add_api_route("/ledger/{seq}", view("ledger", ledger_entry), methods=["GET"])
    router.add_api_route("/audits", view("audits", audits), methods=["GET"])
    router.add_api_route("/audits/{name}", view("audits", audit_report), methods=["GET"])
    router.add_api_route("/policy", view("policy", policy), methods=["GET"])

    # --- operator ---------------------------------------------------------------------------------------

    def collections(request: Request, s: Session):
        found = console.collections(s.context())
        rows = "".join(f"<tr><td>{esc(c['name'])}</td><td>{esc(c['model'])}</td><td class=num>{c['faces'] or 0:,}</td>"
                       f"<td class=num>{c['users'] or 0:,}</td><td>{'yes' if c['store_images'] else 'no'}</td>"
                       f"<td class=hide-narrow>{esc(c['created'])}</td></tr>" for c in found)
        return "Collections", ("<div class=table><table><thead><tr><th>Collection</th><th>Model</th><th>Faces</th><th>Users</th>"
                               "<th>Stores images</th><th class=hide-narrow>Created</th></tr></thead><tbody>"
                               f"{rows or '<tr><td colspan=6 class=muted>No collection.</td></tr>'}</tbody></table></div>")

    def keys_page(request: Request, s: Session, created=None):
        found = console.list_keys(s.context())
        rows = "".join(
            f"<tr><td><code>{esc(k.access_key_id)}</code></td><td>{esc(k.principal)}</td><td>{esc(', '.join(k.roles))}</td>"
            f"<td class=hide-narrow>{esc(', '.join(k.purposes))}</td><td class=hide-narrow>{esc(k.description)}</td>"
            f"<td>{'<span class=bad>revoked</span>' if k.revoked else '<span class=ok>active</span>'}</td><td>"
            + ("" if k.revoked else
               f'<form method="post" action="/console/keys/{esc(k.access_key_id)}/revoke" data-confirm="Revoke {esc(k.access_key_id)}? '
               f'It stops signing at once.">{csrf_field(s)}<button class="reject" type="submit">Revoke</button></form>')
            + "</td></tr>" for k in found)
        shown = ""
        if created is not None:
            shown = (f'<div class="notice good">Key <code>{esc(created.access_key_id)}</code> made for {esc(created.principal)} '
                     f"({esc(', '.join(created.roles))}). Its secret, shown this once and never again:"
                     f'<div class="secret" id="new-secret">{esc(created.secret)}</div></div>')
        form = (f'<form method="post" action="/console/keys" class="card filters">{csrf_field(s)}'
                '<label>Principal <input name="principal" required></label>'
                '<label>Roles (comma-separated) <input name="roles" value="reviewer" required></label>'
                '<label>Purposes <input name="purposes"></label><label>Standing case <input name="case"></label>'
                '<label>Description <input name="description"></label><button type="submit">Create key</button></form>')
        table = ("<div class=table><table><thead><tr><th>Key</th><th>Principal</th><th>Roles</th><th class=hide-narrow>Purposes</th>"
                 f"<th class=hide-narrow>Description</th><th>State</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>")
        return "Access keys", shown + "<h2>New key</h2>" + form + "<h2>Keys of this account</h2>" + table

    def create_key(request: Request, s: Session):
        f = request.state.fields
        created = console.create_key(s.context(), description=f.get("description", ""), principal=f.get("principal", ""),
                                     roles=f.get("roles", "").split(","), purposes=f.get("purposes", "").split(","),
                                     case=f.get("case", ""))
        return keys_page(request, s, created)

    def revoke_key(request: Request, s: Session):
        console.revoke_key(s.context(), request.path_params["key_id"])
        return RedirectResponse("/console/keys", status_code=303, headers=_HEADERS)

    def health(request: Request, s: Session):
        h = console.health(s.context())
        facts = "".join(f"<dt>{esc(k.replace('_', ' '))}</dt><dd>{esc(v)}</dd>" for k, v in h.items())
        return "Server health", f'<div class="card"><dl class=facts>{facts}</dl></div>'

    router.add_api_route("/collections", view("collections", collections), methods=["GET"])
    router.add_api_route("/keys", view("keys", keys_page), methods=["GET"])
    router.add_api_route("/keys", view("keys", create_key, post=True), methods=["POST"])
    router.add_api_route("/keys/{key_id}/revoke", view("keys", revoke_key, post=True), methods=["POST"])
    router.add_api_route("/health", view("health", health), methods=["GET"])

    async def unrouted(request: Request) -> Response:
        """No console page answers this method and path (a guessed path, a HEAD, a DELETE): refused
        as a page with the console's headers, and recorded with whoever's session came with it."""
        session = None
        try:
            session = await run_in_threadpool(session_of, request)
        except FaceledgerError:
            pass  # anonymous: recorded as such
        exc = UnknownOperationError(f"no console page answers {request.method} {request.url.path[:200]}")
        await run_in_threadpool(gate.refused, session.context() if session else None, "Console", exc, interface="console")
        nav = console.sections(session.context()) if session else []
        body = f'<div class="notice error"><strong>{esc(exc.code)}</strong>: {esc(exc.message)}</div>'
        return page("Not found", body, session, status=404, nav=nav)

    # last: every method, so that a known path with another method lands here too (not Starlette's 405)
    router.add_api_route("/{rest:path}", unrouted, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    return router


def _review_body(item, s: Session, csrf: str) -> str:
    b = item.body
    ident = item.gallery
    q = b.get("result", {}).get("probe_quality") or {}
    facts = [("Searched by", b.get("principal")), ("Purpose", b.get("purpose")), ("Case", b.get("case_reference")),
             ("Collection", b.get("collection")), ("When (UTC)", str(b.get("time", ""))[:19].replace("T", " ")),
             ("Gallery size", f"{ident.get('gallery_size', 0):,}" if ident else None),
             ("Threshold", f"{ident['effective_threshold']:.1f}" if ident.get("effective_threshold") is not None else None),
             ("Expected false candidates at it", f"{ident['expected_false_candidates']:.3g}"
              if ident.get("expected_false_candidates") is not None else None)]
    if q:
        pose = q.get("pose") or {}
        facts += [("Probe sharpness", q.get("sharpness")), ("Probe highlight / contrast",
                   f"{q.get('highlight')} / {round(q.get('highlight', 0) - q.get('shadow', 0), 2)}"),
                  ("Probe face size (px)", q.get("face_size")), ("Probe pose (yaw, pitch)", f"{pose.get('yaw')}°, {pose.get('pitch')}°")]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts if v not in (None, ""))
    if item.probe:
        check = ('<span class="pill ok">SHA-256 matches the ledger</span>' if item.probe_matches_ledger
                 else '<span class="pill bad">does not match the ledger\'s digest</span>')
        probe_img = f'<img src="{item.probe}" alt="probe of entry {item.seq}">{check}'
    else:
        probe_img = f'<div class="noimage">Probe: {esc(item.probe_note)}</div>'
    cards = [f'<div class="face probe"><h2>Probe</h2>{probe_img}<dl class=facts>{dl}</dl></div>']
    for c in item.candidates:
        img = (f'<img src="{c.image}" alt="candidate {esc(c.id)}">' if c.image else
               f'<div class="noimage">No image: the collection keeps templates only.'
               f'{"<br>External image id: " + esc(c.external_image_id) if c.external_image_id else ""}</div>')
        decisions = "".join(
            f'<li><span class="pill {"ok" if d["verdict"] == "rejected" else "warn" if d["verdict"] == "confirmed" else "muted"}">'
            f'{esc(d["verdict"])}</span> by {esc(d["principal"])} (entry {d["ledger_entry"]}): {esc(d["reason"])}</li>'
            for d in c.decisions)
        if item.may_decide:
            action = (f'<form method="post" action="/console/review/{item.seq}" class="decide">{csrf}'
                      f'<input type="hidden" name="candidate" value="{esc(c.id)}">'
                      f'<label>Reason <textarea name="reason" rows="2" required placeholder="What you compared and saw"></textarea></label>'
                      '<div class="buttons"><button name="decision" value="confirmed" type="submit">Confirm</button>'
                      '<button class="reject" name="decision" value="rejected" type="submit">Reject</button>'
                      '<button class="plain" name="decision" value="inconclusive" type="submit">Inconclusive</button></div></form>')
        else:
            action = f'<div class="notice">{esc(item.refusal)}</div>'
        cards.append(
            f'<div class="face candidate" data-candidate="{esc(c.id)}"><h2>{esc(c.kind.capitalize())} candidate</h2>{img}'
            f"<dl class=facts><dt>{esc(c.kind.capitalize())} id</dt><dd><code>{esc(c.id)}</code></dd>"
            f"<dt>Similarity</dt><dd>{c.similarity:.1f}</dd><dt>False match rate</dt><dd>{esc(fmr(c.false_match_rate))}</dd>"
            f"<dt>Expected false candidates</dt><dd>{'' if c.expected_false_candidates is None else f'{c.expected_false_candidates:.3g}'}</dd>"
            f"</dl>{'<ul>' + decisions + '</ul>' if decisions else ''}{action}</div>")
    lead = (f'<p class="lead">Search entry {item.seq}: compare the probe with each candidate and decide each one with a reason. '
            "A candidate is someone who looks alike to the engine; the false match rate says how often strangers score this high, "
            "and the expected false candidates how many strangers a gallery this size puts above the threshold.</p>")
    return lead + f'<div class="faces">{"".join(cards)}</div>'


def _int(text: str | None, *, required: bool = False) -> int | None:
    if not text:
        if required:
            raise ResourceNotFoundError("no such entry")
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidParameterError("an entry number is a positive integer")
    return int(text)


def _pager(path: str, params: dict, before: int | None) -> str:
    if before is None:
        return ""
    query = urlencode({**{k: v for k, v in params.items() if v}, "before": before})
    return f'<p class="pager"><a href="{path}?{esc(query)}">Older</a></p>'
