"""The review console (/console) on a live server: a real headless browser (Debian's chromium
through Playwright) reviews a queue made by real searches of LFW faces; the protections (roles,
separation of duties, CSRF, session expiry, revoked keys, probe retention) are each tested
against someone trying to get round them. Screenshots of every page at 1280x800 and 390x844 go
to docs/console/ (git-ignored: they show LFW faces), embedded by docs/console.md."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest

from faceledger.governance.app import open_gate, open_service
from faceledger.governance.keys import KeyStore
from faceledger.governance.policy import Context, Principal
from faceledger.governance.probes import ProbeStore
from faceledger.governance.sessions import SessionExpiredError, SessionStore
from faceledger.interfaces.http.app import create_app
from .live import LiveServer

SHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"
SIZES = {"wide": (1280, 800), "phone": (390, 844)}
GALLERY = ["Colin_Powell", "Tony_Blair", "George_W_Bush", "Gerhard_Schroeder", "Donald_Rumsfeld"]


@pytest.fixture(scope="module")
def site(tmp_path_factory, settings, engine, lfw):
    """A server with a gallery of 5 LFW people (images stored) and 3 searches by an investigator."""
    root = tmp_path_factory.mktemp("console")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         auth="sigv4", policy="moratorium")
    keys = KeyStore(s.keys_file)
    made = {}
    for name, roles, purposes in (("ops", ("operator", "user"), ()), ("ivan", ("user", "investigator"), ("missing-person",)),
                                  ("rita", ("reviewer",), ()), ("ada", ("auditor",), ()), ("uma", ("user",), ()),
                                  ("vic", ("reviewer", "investigator"), ("missing-person",))):
        key, secret = keys.create(name, principal=name, roles=roles, purposes=purposes)
        made[name] = (key.access_key_id, secret)
    app = create_app(s, open_service(s, engine=engine))
    http_server = LiveServer(app)
    port = http_server.port
    url = f"http://127.0.0.1:{port}"

    def api(who: str, method: str, path: str, **kw):
        key, secret = made[who]
        headers = {"Authorization": f"Bearer {key}:{secret}", **kw.pop("headers", {})}
        r = httpx.request(method, url + path, headers=headers, timeout=60, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    api("ops", "POST", "/v1/collections", json={"collection_id": "gallery", "store_images": True})
    for person, n in [(p, 1) for p in GALLERY] + [("Colin_Powell", 3)]:  # two photos of one person: two candidates
        api("ops", "POST", "/v1/collections/gallery/faces", json={"image": b64(lfw.image(person, n)), "external_image_id": person})
    searches = {}
    for who, person, case in (("ivan", "Colin_Powell", "MP-1"), ("ivan", "Tony_Blair", "MP-2"), ("vic", "George_W_Bush", "MP-3")):
        r = api(who, "POST", "/v1/collections/gallery/search", json={"image": b64(lfw.image(person, 2)), "face_match_threshold": 40},
                headers={"X-Faceledger-Purpose": "missing-person", "X-Faceledger-Case": case})
        assert r["FaceMatches"], f"{person}'s second photo found no candidate"
        searches[person] = r
    yield {"url": url, "keys": made, "settings": s, "root": root, "searches": searches, "lfw": lfw}
    http_server.stop()


def _ledger(site) -> list[dict]:
    db = sqlite3.connect(site["settings"].ledger)
    try:
        return [dict(json.loads(b), seq=s) for s, b in db.execute("SELECT seq, body FROM entries ORDER BY seq")]
    finally:
        db.close()


def _search_entries(site) -> dict[str, int]:
    """Case reference -> the search's outcome entry (what reviewers review)."""
    return {e["case_reference"]: e["seq"] for e in _ledger(site)
            if e.get("operation") == "SearchFacesByImage" and e.get("phase") == "outcome" and e.get("outcome") == "ok"}


def _client(site, who: str | None = None) -> httpx.Client:
    """An HTTP client signed in as ``who`` (through the sign-in form, as a browser does)."""
    c = httpx.Client(base_url=site["url"], follow_redirects=False, timeout=60)
    if who:
        form = c.get("/console/signin")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        key, secret = site["keys"][who]
        r = c.post("/console/signin", data={"key_id": key, "secret": secret, "csrf": token})
        assert r.status_code == 303, r.text
    return c


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


# --- the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright (the test extra) is not installed: pip install -e '.[test]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield b
        b.close()


def _signin(browser, site, who: str, size: str = "wide"):
    w, h = SIZES[size]
    context = browser.new_context(viewport={"width": w, "height": h})
    page = context.new_page()
    page.goto(site["url"] + "/console")
    assert page.url.endswith("/console/signin")
    if who == "rita":
        _shoot(page, "signin")
    key, secret = site["keys"][who]
    page.fill("input[name=key_id]", key)
    page.fill("input[name=secret]", secret)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return context, page


def _shoot(page, name: str) -> None:
    """A screenshot of the page at each size (docs/console.md embeds them; never committed)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, (w, h) in SIZES.items():
        page.set_viewport_size({"width": w, "height": h})
        page.screenshot(path=str(SHOTS / f"{name}-{size}.png"))
    page.set_viewport_size({"width": 1280, "height": 800})


def test_reviewer_reviews_real_searches_in_a_browser(browser, site):
    """Sign in, see the queue of real searches, compare probe and candidates, confirm one and reject
    another with reasons: the decisions are ledger entries and the ledger still verifies."""
    entries = _search_entries(site)
    context, page = _signin(browser, site, "rita")
    assert page.url.endswith("/console/queue")
    _shoot(page, "signed-in-queue")
    rows = page.locator("tbody tr")
    assert rows.count() == 3 and "MP-3" in rows.nth(0).inner_text()  # newest first
    page.goto(site["url"] + "/console/queue?case=MP-1")
    assert page.locator("tbody tr").count() == 1

    page.goto(site["url"] + f"/console/review/{entries['MP-1']}")
    probe = page.locator(".face.probe img")
    assert probe.count() == 1 and "matches the ledger" in page.locator(".face.probe").inner_text()
    assert probe.evaluate("img => img.naturalWidth") == 250  # a real LFW image, decoded by the browser
    cards = page.locator(".face.candidate")
    first = cards.nth(0)
    assert "False match rate" in first.inner_text() and "Expected false candidates" in first.inner_text()
    assert first.locator("img").count() == 1  # the collection stores images: the candidate's face is shown
    colin = [c for c in site["searches"]["Colin_Powell"]["FaceMatches"] if c["Face"]["ExternalImageId"] == "Colin_Powell"]
    assert colin and first.get_attribute("data-candidate") == colin[0]["Face"]["FaceId"]  # the best match first
    _shoot(page, "review")

    n = cards.count()
    assert n == 2  # Colin Powell's two indexed photos
    kept = site["settings"].console_state / "probes" / f"{entries['MP-1']}.probe"
    for i, (verdict, reason) in enumerate((("confirmed", "same scar above the left eyebrow"), ("rejected", "a different jaw line"))):
        card = page.locator(".face.candidate").nth(i)
        card.locator("textarea[name=reason]").fill(reason)
        card.locator(f"button[value={verdict}]").click()
        page.wait_for_load_state()
        assert page.locator(".face.candidate").nth(i).locator(".pill").inner_text() == verdict
        assert kept.exists() == (i == 0)  # kept while a candidate awaits a decision
    reviews = [e for e in _ledger(site) if e.get("operation") == "Review" and e.get("phase") == "outcome"]
    assert [(e["principal"], e["verdict"], e["reviews"], e["outcome"]) for e in reviews] == [
        ("rita", "confirmed", entries["MP-1"], "ok"), ("rita", "rejected", entries["MP-1"], "ok")]
    # every candidate decided: the probe is deleted, and the search leaves the queue
    assert "no longer kept" in page.locator(".face.probe").inner_text()
    page.goto(site["url"] + "/console/queue")
    assert page.locator("tbody tr").count() == 2
    context.close()

    # an auditor sees the decisions appear in the ledger and re-checks it from the console
    context, page = _signin(browser, site, "ada")
    assert page.url.endswith("/console/ledger")
    page.goto(site["url"] + "/console/ledger?operation=Review&principal=rita")
    assert page.locator("tbody tr").count() == 2 * n  # each decision's intent and outcome entries
    page.goto(site["url"] + "/console/ledger")
    page.click("text=Verify the ledger now")
    page.wait_for_load_state()
    assert "intact" in page.locator(".card").first.inner_text()
    _shoot(page, "ledger")
    page.goto(site["url"] + "/console/policy")
    assert "moratorium" in page.inner_text("main")
    _shoot(page, "policy")
    page.goto(site["url"] + "/console/audits")
    _shoot(page, "audits")
    context.close()


def test_who_searched_cannot_confirm(browser, site):
    """Separation of duties: vic ran MP-3's search; the page shows no buttons and a forged POST
    with a valid session and CSRF token is refused by the gate (and recorded)."""
    entries = _search_entries(site)
    context, page = _signin(browser, site, "vic")
    page.goto(site["url"] + f"/console/review/{entries['MP-3']}")
    text = page.inner_text("main")
    assert "separation of duties" in text and page.locator("button[value=confirmed]").count() == 0
    _shoot(page, "review-refused")
    context.close()

    c = _client(site, "vic")
    csrf = _csrf(c.get(f"/console/review/{entries['MP-3']}").text)
    candidate = site["searches"]["George_W_Bush"]["FaceMatches"][0]["Face"]["FaceId"]
    r = c.post(f"/console/review/{entries['MP-3']}", data={"csrf": csrf, "candidate": candidate, "decision": "confirmed",
                                                            "reason": "I know him"})
    assert r.status_code == 403 and "separation of duties" in r.text
    refused = [e for e in _ledger(site) if e.get("operation") == "Review" and e.get("principal") == "vic"
               and e.get("phase") != "intent"]
    assert refused and all(e["outcome"] == "AccessDeniedException" for e in refused)
    # vic may review ivan's search (MP-2): the rule is about one's own searches
    assert "button" in c.get(f"/console/review/{entries['MP-2']}").text


def test_user_key_cannot_open_reviewer_pages(browser, site):
    entries = _search_entries(site)
    context, page = _signin(browser, site, "uma")
    response = page.goto(site["url"] + f"/console/review/{entries['MP-2']}")
    assert response.status == 403 and page.locator(".face").count() == 0
    assert page.goto(site["url"] + "/console/queue").status == 403
    assert page.goto(site["url"] + "/console/ledger").status == 403
    _shoot(page, "refused")
    context.close()
    denied = [e for e in _ledger(site) if e.get("principal") == "uma" and e.get("outcome") == "AccessDeniedException"]
    assert {e["operation"] for e in denied} >= {"ReviewCandidates", "ReviewQueue", "ReadLedger"}


def test_operator_pages(browser, site):
    context, page = _signin(browser, site, "ops")
    assert page.url.endswith("/console/collections")
    assert "gallery" in page.inner_text("main")
    _shoot(page, "collections")
    page.goto(site["url"] + "/console/health")
    assert "ledger entries" in page.inner_text("main")
    _shoot(page, "health")
    page.goto(site["url"] + "/console/keys")
    page.fill("input[name=principal]", "rex")
    page.fill("input[name=roles]", "reviewer")
    page.click("text=Create key")
    page.wait_for_load_state()
    secret = page.inner_text("#new-secret").strip()
    assert len(secret) == 40
    _shoot(page, "keys")
    page.goto(site["url"] + "/console/keys")  # shown once: never again
    assert secret not in page.content()
    assert secret not in site["settings"].ledger.read_bytes().decode("latin-1")
    created = [e for e in _ledger(site) if e.get("operation") == "CreateKey" and e.get("phase") == "outcome"][-1]
    key_id = created["result"]["access_key_id"]
    page.once("dialog", lambda d: d.accept())
    page.locator(f"form[action='/console/keys/{key_id}/revoke'] button").click()
    page.wait_for_load_state()
    assert KeyStore(site["settings"].keys_file).get(key_id).revoked
    # an operator may not mint an admin key
    page.fill("input[name=principal]", "mallory")
    page.fill("input[name=roles]", "admin")
    page.click("text=Create key")
    page.wait_for_load_state()
    assert "may not make an admin key" in page.inner_text("main")
    context.close()


# --- the protections, over plain HTTP -------------------------------------------------------------------


def test_csrf_token_required_on_every_post(site):
    entries = _search_entries(site)
    c = _client(site, "rita")
    candidate = site["searches"]["Tony_Blair"]["FaceMatches"][0]["Face"]["FaceId"]
    before = len(_ledger(site))
    for token in (None, "forged", _csrf(_client(site, "ada").get("/console/ledger").text)):  # another session's token too
        data = {"candidate": candidate, "decision": "rejected", "reason": "x"}
        if token:
            data["csrf"] = token
        r = c.post(f"/console/review/{entries['MP-2']}", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    after = _ledger(site)[before:]
    assert not [e for e in after if e.get("operation") == "Review"]
    # sign-in itself is CSRF-protected (double-submit): a cross-site form post has no cookie
    key, secret = site["keys"]["rita"]
    r = httpx.post(site["url"] + "/console/signin", data={"key_id": key, "secret": secret, "csrf": "x"})
    assert r.status_code == 403 and "faceledger_console=" not in r.headers.get("set-cookie", "")


def test_session_cookie_flags_and_expiry(site):
    c = httpx.Client(base_url=site["url"], follow_redirects=False)
    form = c.get("/console/signin")
    key, secret = site["keys"]["rita"]
    r = c.post("/console/signin", data={"key_id": key, "secret": secret, "csrf": _csrf(form.text)})
    cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("faceledger_console=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP on localhost; over TLS it is Secure (below)
    assert c.get("/console/queue").status_code == 200
    # idle past console_session_seconds: the session has ended
    db = sqlite3.connect(site["settings"].console_state / "sessions.sqlite")
    db.execute("UPDATE sessions SET seen = seen - ?", (site["settings"].console_session_seconds + 1,))
    db.commit()
    db.close()
    r = c.get("/console/queue")
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    assert c.post("/console/signout", data={"csrf": "x"}).status_code == 303
    # the sessions file holds digests, not the cookies
    token = cookie.split(";")[0].split("=", 1)[1]
    assert token.encode() not in (site["settings"].console_state / "sessions.sqlite").read_bytes()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_secure_cookie_over_tls(site, engine):
    s = site["settings"]
    app = create_app(s, open_service(s, engine=engine))
    key, secret = site["keys"]["rita"]
    from starlette.testclient import TestClient

    with TestClient(app, base_url="https://console.test", follow_redirects=False) as c:
        form = c.get("/console/signin")
        r = c.post("/console/signin", data={"key_id": key, "secret": secret, "csrf": _csrf(form.text)})
        assert r.status_code == 303
        cookie = [v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("faceledger_console=")][0]
        assert "Secure" in cookie


def test_revoked_key_ends_its_session(site):
    keys = KeyStore(site["settings"].keys_file)
    key, secret = keys.create("temp", principal="tess", roles=("reviewer",))
    site["keys"]["tess"] = (key.access_key_id, secret)
    c = _client(site, "tess")
    assert c.get("/console/queue").status_code == 200
    keys.revoke(key.access_key_id)
    assert c.get("/console/queue").status_code == 303


def test_console_sees_a_rewritten_ledger(site):
    """An adversary who edits an entry in the ledger's database: the console's re-check says where."""
    c = _client(site, "ada")
    csrf = _csrf(c.get("/console/ledger").text)
    assert c.post("/console/ledger/verify", data={"csrf": csrf}).status_code == 303
    assert "intact" in c.get("/console/ledger").text
    db = sqlite3.connect(site["settings"].ledger)
    seq, body = db.execute("SELECT seq, body FROM entries WHERE operation = 'Review' ORDER BY seq LIMIT 1").fetchone()
    db.execute("UPDATE entries SET body = ? WHERE seq = ?", (body.replace('"confirmed"', '"rejected"'), seq))
    db.commit()
    try:
        assert c.post("/console/ledger/verify", data={"csrf": csrf}).status_code == 303
        page = c.get("/console/ledger").text
        assert f"broken at entry {seq}" in page
    finally:
        db.execute("UPDATE entries SET body = ? WHERE seq = ?", (body, seq))
        db.commit()
        db.close()


# --- probe retention -------------------------------------------------------------------------------------


def test_probe_expires_after_retention(tmp_path):
    now = [1000.0]
    store = ProbeStore(tmp_path / "probes", 60, clock=lambda: now[0])
    assert store.keep(7, b"probe-bytes")
    assert oct((tmp_path / "probes" / "7.probe").stat().st_mode & 0o777) == "0o600"
    now[0] += 59
    assert store.get(7) == b"probe-bytes"
    now[0] += 1
    assert store.get(7) is None and not (tmp_path / "probes" / "7.probe").exists()
    store.keep(8, b"x")
    now[0] += 61
    assert store.purge() == 1 and store.count() == 0
    assert not ProbeStore(tmp_path / "none", 0).keep(9, b"x")  # retention 0: nothing kept


def test_probe_deleted_after_review_through_any_interface(tmp_path, settings, engine, lfw):
    """The CLI's and API's review (the gate's) deletes the probe once every candidate has a
    decision; a partial review keeps it."""
    s = settings.replace(store=tmp_path / "store.sqlite", ledger=tmp_path / "ledger.sqlite", policy="moratorium")
    gate = open_gate(s, open_service(s, engine=engine))
    admin = Context(Principal("ops", ("admin",), ("*",)), "missing-person", "C-9", "python")
    gate.call(admin, "CreateCollection", lambda **_: gate.service.create_collection("g"))
    for person, n in (("Colin_Powell", 1), ("Colin_Powell", 3), ("Tony_Blair", 1)):
        gate.call(admin, "IndexFaces", lambda **_: gate.service.index_faces("g", lfw.image(person, n).read_bytes()))
    probe = lfw.image("Colin_Powell", 2).read_bytes()
    r = gate.call(admin, "SearchFacesByImage", lambda **x: gate.service.search_faces_by_image(
        "g", probe, face_match_threshold=40, **x), images=[probe])
    ids = [m.face.face_id for m in r.face_matches]
    assert len(ids) == 2 and r.probe_quality["face_size"] > 0
    kept = s.console_state / "probes" / f"{r.ledger_entry}.probe"
    assert kept.read_bytes() == probe
    assert gate.ledger.get(r.ledger_entry).body["result"]["probe_quality"]["sharpness"] > 0  # the ledger keeps its quality
    reviewer = Context(Principal("rita", ("reviewer",), ()), None, None, "cli")
    gate.review(reviewer, r.ledger_entry, "confirmed", "same person", ids[:1])
    assert kept.exists()
    gate.review(reviewer, r.ledger_entry, "rejected", "not him", ids[1:])
    assert not kept.exists()


def test_session_store_expiry_and_wrong_secret(tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    key, secret = keys.create("k", principal="p", roles=("reviewer",))
    now = [0.0]
    store = SessionStore(tmp_path / "s.sqlite", keys, 100, clock=lambda: now[0])
    with pytest.raises(Exception, match="does not match"):
        store.sign_in(key.access_key_id, secret[:-1] + ("a" if secret[-1] != "a" else "b"))
    token, session = store.sign_in(key.access_key_id, secret)
    now[0] = 99
    assert store.session(token).key.principal == "p"  # a request resets the idle time
    now[0] = 198
    assert store.session(token)
    now[0] = 298
    with pytest.raises(SessionExpiredError):
        store.session(token)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledgers(request, tmp_path):
    """Two empty ledgers of one kind: the embedded one, or PostgreSQL (several replicas' ledger)."""
    from faceledger.governance.ledger import Ledger
    from faceledger.governance.ledger_pg import PostgresLedger

    if request.param == "sqlite":
        return Ledger(tmp_path / "one.sqlite"), Ledger(tmp_path / "two.sqlite")
    import uuid

    import psycopg

    url = request.getfixturevalue("fresh_db")
    other = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {other}")
    return PostgresLedger(url), PostgresLedger(url.rsplit("/", 1)[0] + f"/{other}")


def test_ledger_index_follows_the_ledger_and_rebuilds_for_another(tmp_path, ledgers):
    """The index is a cache of the ledger: a search enters the queue, a review of all its
    candidates closes it, and an index pointed at a different ledger starts over."""
    from faceledger.governance.ledger_index import LedgerIndex

    def search(ledger, case):
        return ledger.append({"operation": "SearchFacesByImage", "phase": "outcome", "outcome": "ok", "principal": "ivan",
                              "account": "000000000000", "purpose": "missing-person", "case_reference": case,
                              "result": {"candidates": [{"id": "a"}, {"id": "b"}]}}).seq

    one, two = ledgers
    s1, s2 = search(one, "C-1"), search(one, "C-2")
    index = LedgerIndex(tmp_path / "index.sqlite", one)
    assert index.catch_up() == 2 and index.queue("000000000000").seqs == [s2, s1]
    assert index.queue("000000000000", case_ref="C-1").seqs == [s1]
    assert index.queue("111111111111").seqs == []  # another account's queue is its own
    one.append({"operation": "Review", "phase": "outcome", "outcome": "ok", "reviews": s1, "face_ids": ["a"]})
    index.catch_up()
    assert index.is_open(s1)
    one.append({"operation": "Review", "phase": "outcome", "outcome": "ok", "reviews": s1, "face_ids": []})  # all
    index.catch_up()
    assert index.queue("000000000000").seqs == [s2]
    assert index.search("000000000000", principal="ivan", limit=1).next_before == s2
    two.append({"operation": "PolicyChange"})
    two.append({"operation": "PolicyChange"})
    two.append({"operation": "PolicyChange"})
    two.append({"operation": "PolicyChange"})
    index.ledger = two  # the same file, another ledger: the last hash it indexed is not there
    index.catch_up()
    assert index.queue("000000000000").seqs == [] and len(index.search("000000000000", limit=10).seqs) == 4


def test_console_verification_checks_signed_heads(tmp_path, settings, engine):
    """With the signer's public key set, the console's re-check holds the chain to the signed heads:
    an adversary who edits an entry and recomputes every later hash (a chain that verifies on its
    own) is caught."""
    from faceledger.governance.console import Console
    from faceledger.governance.ledger import HeadLog, HeadSigner, Signer, canonical, chain_hash

    signer = Signer.generate(tmp_path / "signer" / "key.pem")
    s = settings.replace(store=tmp_path / "store.sqlite", ledger=tmp_path / "ledger.sqlite", keys_file=tmp_path / "keys.json",
                         ledger_public_key=signer.public_hex, reports_dir=tmp_path / "reports")
    gate = open_gate(s, open_service(s, engine=engine))
    console = Console(gate, KeyStore(s.keys_file), s)
    ada = Context(Principal("ada", ("auditor",), ()), interface="console")
    console.policy(ada)
    HeadSigner(gate.ledger, HeadLog(s.heads_dir), signer).round(force=True)
    report = console.verify(ada)
    assert report["intact"] and report["heads_checked"] and report["heads"] == 1
    db = sqlite3.connect(s.ledger)
    rows = db.execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
    prev = "0" * 64
    for seq, body in rows:  # the first entry rewritten, every hash after it recomputed
        if seq == 1:
            body = canonical({**json.loads(body), "policy": {"name": "open", "digest": "0" * 64}})
        prev = chain_hash(prev, seq, body)
        db.execute("UPDATE entries SET body = ?, hash = ? WHERE seq = ?", (body, prev, seq))
    db.commit()
    db.close()
    assert gate.ledger.verify()[1] == []  # the chain alone cannot see it
    report = console.verify(ada)
    assert not report["intact"] and {p["kind"] for p in report["problems"]} & {"rewritten"}


def test_audit_reports_listed_and_served_sandboxed(site):
    reports = site["settings"].console_state / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "lfw-audit.html").write_text("<h1>LFW audit</h1><script>alert(1)</script>")
    (reports / "notes.txt").write_text("not a report")
    c = _client(site, "ada")
    listing = c.get("/console/audits").text
    assert "lfw-audit.html" in listing and "notes.txt" not in listing
    r = c.get("/console/audits/lfw-audit.html")
    assert r.status_code == 200 and "sandbox" in r.headers["content-security-policy"]  # its script cannot run here
    assert c.get("/console/audits/..%2Fkeys.json").status_code in (400, 404)
    assert _client(site, "rita").get("/console/audits").status_code == 403


def test_oversized_or_stuffed_forms_are_refused_unread(site):
    """Forms are read before sign-in is checked: a huge or field-stuffed body is bounded and refused."""
    c = _client(site)
    assert c.post("/console/signin", content=b"a=" + b"x" * 2_000_000,
                  headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 403
    assert c.post("/console/signin", content="&".join(f"f{i}=1" for i in range(500)).encode(),
                  headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 403


def test_cli_review_queue_is_the_consoles(site, monkeypatch):
    """`faceledger review queue` lists what the console's queue lists (one Console behind both)."""
    from typer.testing import CliRunner

    from faceledger.interfaces.cli.main import app

    s = site["settings"]
    for name in ("store", "keys_file", "ledger"):
        monkeypatch.setenv(f"FACELEDGER_{name.upper()}", str(getattr(s, name)))
    r = CliRunner().invoke(app, ["review", "queue", "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.stdout)
    c = _client(site, "rita")
    page = c.get("/console/queue").text
    assert listed["open"] >= 1 and all(f'/console/review/{i["seq"]}"' in page for i in listed["items"])
