"""The review console attacked over plain HTTP (issue 24's adversary pass; no browser): one live
server with two accounts, a gallery of real LFW faces and one real search, and keys of every role.

Each test is an attack. Those that broke the console before their fix (checked by planting the
old code back) come first; the rest pin the attacks that held, so that a change cannot quietly
reopen them."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from faceledger.governance.app import open_service
from faceledger.governance.keys import KeyStore
from faceledger.governance.ledger import Ledger
from faceledger.governance.sessions import SessionExpiredError, SessionStore
from faceledger.interfaces.http.app import create_app
from .live import LiveServer

OTHER = "111122223333"
GALLERY = "a-private-gallery"  # account A's collection: its name must never reach account B
XSS = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


@pytest.fixture(scope="module")
def site(tmp_path_factory, settings, engine, lfw):
    root = tmp_path_factory.mktemp("attack")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         auth="sigv4", policy="moratorium")
    keys = KeyStore(s.keys_file)
    made = {}
    for name, principal, roles, purposes, account in (
            ("ops", "ops", ("operator", "user"), (), None), ("ivan", "ivan", ("user", "investigator"), ("missing-person",), None),
            ("ivan2", "ivan", ("reviewer",), (), None), ("rita", "rita", ("reviewer",), (), None),
            ("ada", "ada", ("auditor",), (), None), ("uma", "uma", ("user",), (), None), ("root", "root", ("admin",), (), None),
            ("bob", "bob", ("reviewer", "auditor", "operator"), (), OTHER)):
        key, secret = keys.create(name, principal=principal, roles=roles, purposes=purposes,
                                  **({"account": account} if account else {}))
        made[name] = (key.access_key_id, secret)
    app = create_app(s, open_service(s, engine=engine))
    http_server = LiveServer(app)
    port = http_server.port
    url = f"http://127.0.0.1:{port}"

    def api(who: str, method: str, path: str, **kw) -> httpx.Response:
        key, secret = made[who]
        headers = {"Authorization": f"Bearer {key}:{secret}", **kw.pop("headers", {})}
        return httpx.request(method, url + path, headers=headers, timeout=60, **kw)

    def b64(person: str, n: int) -> str:
        return base64.b64encode(lfw.image(person, n).read_bytes()).decode()

    assert api("ops", "POST", "/v1/collections", json={"collection_id": GALLERY, "store_images": True}).status_code == 200
    for person, n in (("Colin_Powell", 1), ("Colin_Powell", 3), ("Tony_Blair", 1)):
        r = api("ops", "POST", f"/v1/collections/{GALLERY}/faces", json={"image": b64(person, n), "external_image_id": person})
        assert r.status_code == 200, r.text
    # the searcher's case reference is an HTML payload: every page that shows it must escape it
    r = api("ivan", "POST", f"/v1/collections/{GALLERY}/search", json={"image": b64("Colin_Powell", 2), "face_match_threshold": 40},
            headers={"X-Faceledger-Purpose": "missing-person", "X-Faceledger-Case": XSS})
    assert r.status_code == 200 and len(r.json()["FaceMatches"]) >= 2, r.text
    search = r.json()
    yield {"url": url, "keys": made, "settings": s, "api": api, "entry": search["LedgerEntry"],
           "candidates": [m["Face"]["FaceId"] for m in search["FaceMatches"]]}
    http_server.stop()


def _ledger(site) -> list[dict]:
    db = sqlite3.connect(site["settings"].ledger)
    try:
        return [dict(json.loads(b), seq=s) for s, b in db.execute("SELECT seq, body FROM entries ORDER BY seq")]
    finally:
        db.close()


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def _client(site, who: str | None = None, client: httpx.Client | None = None) -> httpx.Client:
    c = client or httpx.Client(base_url=site["url"], follow_redirects=False, timeout=60)
    if who:
        token = _csrf(c.get("/console/signin").text)
        key, secret = site["keys"][who]
        r = c.post("/console/signin", data={"key_id": key, "secret": secret, "csrf": token})
        assert r.status_code == 303, r.text
    return c


def _since(site, n: int) -> list[dict]:
    return [e for e in _ledger(site) if e["seq"] > n]


# --- attacks that broke the console before their fix ------------------------------------------------------


def test_signing_in_and_out_is_in_the_ledger(site):
    """Who opened a session, with which key, is an accountability fact: sign-in, sign-out and a
    sign-in refused for its missing form token were not recorded at all."""
    n = len(_ledger(site))
    c = _client(site, "rita")
    token = c.cookies.get("faceledger_console")
    assert c.post("/console/signout", data={"csrf": _csrf(c.get("/console/queue").text)}).status_code == 303
    stale = httpx.Client(base_url=site["url"], follow_redirects=False, cookies={"faceledger_console": token})
    assert stale.get("/console/queue").status_code == 303  # signed out on the server, not only in the browser
    key, secret = site["keys"]["rita"]
    forged = httpx.post(site["url"] + "/console/signin", data={"key_id": key, "secret": secret, "csrf": "forged"})
    assert forged.status_code == 403
    new = _since(site, n)
    signin = [e for e in new if e["operation"] == "ConsoleSignIn"]
    assert [(e["outcome"], e.get("principal"), e.get("access_key_id")) for e in signin] == [
        ("ok", "rita", key), ("AccessDeniedException", None, None)]
    out = [e for e in new if e["operation"] == "ConsoleSignOut"]
    assert [(e["outcome"], e["principal"], e["account"]) for e in out] == [("ok", "rita", "000000000000")]


def test_refusals_are_recorded_in_the_keys_own_account(site):
    """A refusal after sign-in (a forged CSRF token) was recorded with no account: shown to the
    default account's auditors (another tenant) and hidden from the key's own account's."""
    bob = _client(site, "bob")
    assert bob.post("/console/ledger/verify", data={"csrf": "forged"}).status_code == 403
    mine = bob.get("/console/ledger?principal=bob&outcome=AccessDeniedException").text
    assert "CSRF token" in mine
    theirs = _client(site, "ada").get("/console/ledger?principal=bob").text
    assert "bob" not in theirs.split("<tbody>", 1)[1]


def test_another_accounts_search_leaves_nothing_in_the_callers_ledger(site):
    """Account B's reviewer opens and decides account A's search (console and API): refused, but its
    own entries used to copy A's collection name and the entry's hash into B's ledger, which B's
    auditors read."""
    n, entry = len(_ledger(site)), site["entry"]
    bob = _client(site, "bob")
    assert bob.get(f"/console/review/{entry}").status_code in (400, 404)
    r = bob.post(f"/console/review/{entry}", data={"csrf": _csrf(bob.get("/console/queue").text),
                                                  "candidate": site["candidates"][0], "decision": "confirmed", "reason": "x"})
    assert r.status_code in (400, 404)
    assert site["api"]("bob", "POST", f"/v1/ledger/{entry}/review", json={"decision": "confirmed", "reason": "x"}).status_code == 400
    searched = next(e for e in _ledger(site) if e["seq"] == entry)
    ledger = Ledger(site["settings"].ledger)
    hash_ = ledger.get(entry).hash
    b_entries = [e for e in _since(site, n) if e.get("account") == OTHER]
    assert b_entries and searched["collection"] == GALLERY
    text = json.dumps(b_entries)
    assert GALLERY not in text and hash_ not in text
    page = bob.get("/console/ledger?principal=bob").text
    assert GALLERY not in page


def test_another_accounts_operator_cannot_count_our_searches(site):
    """The health page showed every account's operator the machine's count of kept probes: how many
    identifications with candidates the other tenants ran lately."""
    assert (site["settings"].console_state / "probes" / f"{site['entry']}.probe").exists()
    bob = _client(site, "bob").get("/console/health").text
    assert re.search(r"<dt>probes kept</dt><dd>0</dd>", bob), bob
    ops = _client(site, "ops").get("/console/health").text
    assert re.search(r"<dt>probes kept</dt><dd>1</dd>", ops), ops


def test_operator_cannot_revoke_an_admin_key(site):
    """Only an admin may make an admin key; an operator could still revoke every admin's key."""
    ops = _client(site, "ops")
    admin_key = site["keys"]["root"][0]
    r = ops.post(f"/console/keys/{admin_key}/revoke", data={"csrf": _csrf(ops.get("/console/keys").text)})
    assert r.status_code == 403 and "admin" in r.text
    assert KeyStore(site["settings"].keys_file).secret(admin_key) is not None
    denied = [e for e in _ledger(site) if e["operation"] == "RevokeKey" and e.get("access_key_id") == admin_key]
    assert denied and denied[-1]["outcome"] == "AccessDeniedException"


def test_a_role_with_every_operation_is_admin_whatever_its_name(tmp_path, settings, engine):
    """The operator's limit was the role named "admin": under a policy whose all-powerful role has
    another name, an operator minted one for itself."""
    from faceledger.governance.app import open_gate
    from faceledger.governance.console import Console
    from faceledger.governance.policy import Context, Principal
    from faceledger.errors import AccessDeniedError

    preset = (Path(__file__).resolve().parent.parent / "faceledger" / "data" / "policies" / "moratorium.toml").read_text()
    policy = tmp_path / "site.toml"
    policy.write_text(preset.replace("[roles.admin]", "[roles.root]\noperations = [\"*\"]\n\n[roles.admin]"))
    s = settings.replace(store=tmp_path / "store.sqlite", ledger=tmp_path / "ledger.sqlite", keys_file=tmp_path / "keys.json",
                         policy=str(policy))
    console = Console(open_gate(s, open_service(s, engine=engine)), KeyStore(s.keys_file), s)
    ops = Context(Principal("ops", ("operator",), ()), interface="console")
    with pytest.raises(AccessDeniedError, match="admin key"):
        console.create_key(ops, description="", principal="ops-too", roles=["root"], purposes=[])
    root, _ = console.keys.create("r", principal="root", roles=("root",))
    with pytest.raises(AccessDeniedError, match="admin key"):
        console.revoke_key(ops, root.access_key_id)
    boss = Context(Principal("boss", ("root",), ()), interface="console")
    assert console.create_key(boss, description="", principal="deputy", roles=["root"], purposes=[]).roles == ("root",)
    assert console.create_key(ops, description="", principal="rex", roles=["reviewer"], purposes=[]).roles == ("reviewer",)


def test_a_busy_session_still_ends_at_its_maximum_age(tmp_path):
    """Sessions ended only when idle: a script touching a stolen cookie every few minutes kept it
    alive for ever."""
    keys = KeyStore(tmp_path / "keys.json")
    key, secret = keys.create("k", principal="p", roles=("reviewer",))
    now = [0.0]
    store = SessionStore(tmp_path / "s.sqlite", keys, 1800, clock=lambda: now[0], max_seconds=43200)
    token, _ = store.sign_in(key.access_key_id, secret)
    while now[0] + 1700 < 43200:
        now[0] += 1700
        assert store.session(token)
    now[0] = 43200
    with pytest.raises(SessionExpiredError):
        store.session(token)


def test_signing_in_ends_the_session_the_browser_held(site):
    """A second sign-in in the same browser (a shared machine, or a cookie planted before sign-in)
    ends the session that cookie named; only the new token works."""
    c = _client(site, "rita")
    first = c.cookies.get("faceledger_console")
    _client(site, "ada", client=c)
    assert c.cookies.get("faceledger_console") != first
    stale = httpx.Client(base_url=site["url"], follow_redirects=False, cookies={"faceledger_console": first})
    assert stale.get("/console/queue").status_code == 303


# --- attacks that held ----------------------------------------------------------------------------------------


def test_unrouted_methods_and_paths_are_recorded(site):
    """A HEAD or DELETE on a page, or a guessed path, was Starlette's bare 404/405: no ledger entry, no
    console headers. Now a refused page, recorded with the session that came with it."""
    n = len(_ledger(site))
    rita = _client(site, "rita")
    tries = [("HEAD", "/console/queue"), ("DELETE", f"/console/review/{site['entry']}"), ("PUT", "/console/keys"),
             ("GET", "/console/admin"), ("GET", "/console/probes/1.probe"), ("GET", "/console/keys/AKIAX/revoke")]
    for method, path in tries:
        r = rita.request(method, path)
        assert r.status_code == 404 and r.headers["cache-control"] == "no-store", (method, path)
    assert httpx.request("DELETE", site["url"] + "/console/queue").status_code == 404
    refused = [e for e in _since(site, n) if e["operation"] == "Console"]
    assert [(e["principal"], e["outcome"]) for e in refused] == [("rita", "UnknownOperationException")] * len(tries) + [
        (None, "UnknownOperationException")]
    assert all(e["account"] == "000000000000" for e in refused[:-1])


def test_nothing_without_a_session_or_the_role(site):
    """No session, a planted unknown cookie, a user key, a HEAD: no page, no face; each GET refused
    is a ledger entry."""
    entry = site["entry"]
    pages = [f"/console/review/{entry}", "/console/queue", "/console/ledger", f"/console/ledger/{entry}", "/console/keys",
             "/console/audits", "/console/audits/x.html", "/console/policy", "/console/collections", "/console/health"]
    n = len(_ledger(site))
    for cookies in ({}, {"faceledger_console": "guessed"}):
        anon = httpx.Client(base_url=site["url"], follow_redirects=False, cookies=cookies)
        for p in pages:
            r = anon.get(p)
            assert r.status_code == 303 and r.headers["location"] == "/console/signin" and "data:image" not in r.text
            assert anon.head(p).status_code == 404
        assert anon.post("/console/keys", data={"principal": "x", "roles": "admin"}).status_code == 401
    assert len([e for e in _since(site, n) if e["operation"] == "ConsoleSession"]) == 2 * len(pages) + 2
    assert len([e for e in _since(site, n) if e["operation"] == "Console"]) == 2 * len(pages)  # the HEADs
    uma = _client(site, "uma")
    for p in pages:
        if p == "/console/collections":  # a user may list collections (ListCollections), as through the API
            continue
        r = uma.get(p)
        assert r.status_code == 403 and "data:image" not in r.text, p
    # guessed ids and paths: not entries, not reports
    ada = _client(site, "ada")
    for p in ("/console/ledger/-1", "/console/ledger/99999999", "/console/ledger/1e3", "/console/audits/..%2F..%2Fkeys.json",
              "/console/audits/.keys.json", "/console/review/%2E%2E"):
        assert ada.get(p).status_code in (400, 403, 404), p


def test_method_override_and_token_elsewhere_change_nothing(site):
    entry, cand = site["entry"], site["candidates"][0]
    rita = _client(site, "rita")
    token = _csrf(rita.get("/console/queue").text)
    n = len(_ledger(site))
    rita.get(f"/console/review/{entry}", headers={"X-HTTP-Method-Override": "POST", "X-Method-Override": "POST"},
             params={"_method": "POST", "csrf": token, "candidate": cand, "decision": "confirmed", "reason": "x"})
    assert rita.post(f"/console/review/{entry}?csrf={token}", data={"candidate": cand, "decision": "confirmed",
                                                                    "reason": "x"}).status_code == 403
    assert rita.post(f"/console/review/{entry}", json={"csrf": token, "candidate": cand, "decision": "confirmed",
                                                       "reason": "x"}).status_code == 403
    # a cross-site form: the SameSite=Strict cookie is not sent, so no session at all
    assert httpx.post(site["url"] + f"/console/review/{entry}", data={"csrf": token, "candidate": cand,
                                                                     "decision": "confirmed", "reason": "x"}).status_code == 401
    assert not [e for e in _since(site, n) if e["operation"] == "Review" and e.get("outcome") == "ok"]


def test_the_searcher_cannot_confirm_by_any_door(site):
    """Separation of duties through the console, the native API and a second key of the same principal."""
    entry, cand = site["entry"], site["candidates"][0]
    n = len(_ledger(site))
    for who in ("ivan", "ivan2"):
        c = _client(site, who)
        page = c.get(f"/console/review/{entry}")
        assert page.status_code == 200 and 'value="confirmed"' not in page.text and "separation of duties" in page.text
        r = c.post(f"/console/review/{entry}", data={"csrf": _csrf(page.text), "candidate": cand, "decision": "confirmed",
                                                    "reason": "it is him"})
        assert r.status_code == 403
        r = site["api"](who, "POST", f"/v1/ledger/{entry}/review", json={"decision": "confirmed", "reason": "it is him"})
        assert r.status_code == 403 and "separation of duties" in r.text
    refused = [e for e in _since(site, n) if e["operation"] == "Review" and e.get("phase") != "intent"]
    assert len(refused) == 4 and all(e["outcome"] == "AccessDeniedException" for e in refused)


def test_stored_html_is_shown_as_text(site):
    """Payloads set by low-privilege keys (a case reference, a refused purpose, a reason, a key's
    principal and description) are escaped on every page that shows them."""
    entry = site["entry"]
    site["api"]("uma", "POST", f"/v1/collections/{GALLERY}/search", json={"image": "AAAA"},
                headers={"X-Faceledger-Purpose": XSS, "X-Faceledger-Case": XSS})
    r = site["api"]("rita", "POST", f"/v1/ledger/{entry}/review",
                    json={"decision": "inconclusive", "reason": XSS, "face_ids": site["candidates"][:1]})
    assert r.status_code == 200, r.text
    ops = _client(site, "ops")
    made = ops.post("/console/keys", data={"csrf": _csrf(ops.get("/console/keys").text), "principal": XSS, "roles": "user",
                                          "description": XSS, "case": XSS})
    assert made.status_code == 200
    views = [("rita", "/console/queue"), ("rita", f"/console/review/{entry}"), ("ada", "/console/ledger"),
             ("ada", f"/console/ledger?case_ref={XSS}"), ("ada", f"/console/ledger/{entry}"), ("ops", "/console/keys")]
    for who, path in views:
        text = _client(site, who).get(path).text
        assert "&lt;script&gt;alert(1)" in text, path  # shown
        assert "<script>alert" not in text and "<img src=x" not in text, path  # never markup


def test_pages_with_faces_are_not_cached_or_framed(site):
    r = _client(site, "rita").get(f"/console/review/{site['entry']}")
    assert "data:image" in r.text
    for response in (r, httpx.get(site["url"] + "/console/signin")):
        h = response.headers
        assert h["cache-control"] == "no-store" and h["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in h["content-security-policy"] and "script-src 'self'" in h["content-security-policy"]


def test_revoked_key_ends_its_session_and_the_ledger_still_verifies(site):
    keys = KeyStore(site["settings"].keys_file)
    key, secret = keys.create("temp", principal="tess", roles=("auditor",))
    site["keys"]["tess"] = (key.access_key_id, secret)
    c = _client(site, "tess")
    assert c.get("/console/ledger").status_code == 200
    keys.revoke(key.access_key_id)
    assert c.get("/console/ledger").status_code == 303
    token = _csrf(c.get("/console/signin").text)
    assert c.post("/console/signin", data={"key_id": key.access_key_id, "secret": secret, "csrf": token}).status_code == 403
    count, problems = Ledger(site["settings"].ledger).verify()
    assert count == len(_ledger(site)) and problems == []
