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


def test_decoding_runs_under_a_memory_budget(settings):
    """Six concurrent 40 M pixel 16-bit PNGs (77 KB each) decode no more than the budget allows
    at once, and an image whose decode alone is over the budget is refused before decoding.
    bench/bench_decode_memory.py measures the server's RSS under the same load."""
    import threading

    from faceledger import FaceEngine
    from faceledger.errors import TooManyPixelsError
    from faceledger.vision import imaging

    from .malformed import png16_bomb

    bomb = png16_bomb()
    cost = imaging.decode_cost(bomb)
    assert 300 * 2**20 < cost < 400 * 2**20  # 39.7 M pixels x 9 bytes: the grey frame, its copies, RGB
    engine = FaceEngine(settings.replace(decode_budget_bytes=int(cost * 1.5)))  # room for one at a time
    peak, errors = [0], []
    real_hold = engine._budget.hold

    def watched(nbytes, **kw):
        ctx = real_hold(nbytes, **kw)

        class Hold:
            def __enter__(self):
                ctx.__enter__()
                peak[0] = max(peak[0], engine._budget.in_use)

            def __exit__(self, *exc):
                return ctx.__exit__(*exc)

        return Hold()

    engine._budget.hold = watched
    threads = [threading.Thread(target=lambda: errors.append(engine.detect(bomb).faces)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [[]] * 6 and peak[0] == cost  # each decoded, never two at once
    small = FaceEngine(settings.replace(decode_budget_bytes=cost - 1))
    with pytest.raises(TooManyPixelsError, match="decode budget"):
        small.detect(bomb)
