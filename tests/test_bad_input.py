"""Nothing malformed gets a 500: a generated corpus (tests/malformed.py) of at least 500 requests,
each answered with a typed 4xx, in-process and (a sample) against a live server."""

from __future__ import annotations

import collections

import pytest
from starlette.testclient import TestClient

from faceledger.governance.app import open_service
from faceledger.interfaces.http.app import create_app

from .malformed import corpus


@pytest.fixture(scope="module")
def app_and_corpus(tmp_path_factory, settings, engine, lfw):
    root = tmp_path_factory.mktemp("bad-input")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", ledger=root / "ledger.sqlite",
                         s3_root=root / "s3", auth="none", policy="open")
    service = open_service(s, engine=engine)
    service.create_collection("fuzz")
    app = create_app(s, service)
    return app, corpus(lfw.image("Colin_Powell", 1).read_bytes(), root / "s3", max_request_bytes=s.max_request_bytes)


def test_every_malformed_request_gets_a_typed_4xx(app_and_corpus):
    app, cases = app_and_corpus
    assert len(cases) >= 500
    failures, codes = [], collections.Counter()
    with TestClient(app, raise_server_exceptions=False) as client:
        for case in cases:
            r = client.request(case.method, case.path, headers=case.headers, content=case.body)
            typed = r.headers.get("content-type", "").startswith(("application/json", "application/x-amz-json"))
            kind = r.json().get("__type") if typed and r.content[:1] == b"{" else None
            codes[(r.status_code, kind)] += 1
            if not (400 <= r.status_code < 500 and kind) and not (r.status_code == 200 and case.may_succeed):
                failures.append((case.name, r.status_code, r.text[:160]))
    assert not failures, f"{len(failures)} of {len(cases)} not a typed 4xx: {failures[:40]}"
