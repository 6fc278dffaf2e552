"""The native API, fuzzed from its own OpenAPI document: no input yields a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings as hyp_settings

from faceledger.governance.app import open_service
from faceledger.interfaces.http.app import create_app


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, settings, engine):
    root = tmp_path_factory.mktemp("fuzz")
    s = settings.replace(store=root / "store.sqlite", keys_file=root / "keys.json", auth="none")
    service = open_service(s, engine=engine)
    service.create_collection("fuzz")
    app = create_app(s, service)
    return schemathesis.openapi.from_asgi("/v1/openapi.json", app)


def test_no_input_yields_a_server_error(api_schema):
    """25 generated requests per operation (schemathesis' pytest plugin is not used: it predates
    the pinned pytest), each answered below 500."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @hyp_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            response = case.call()
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

        run()
