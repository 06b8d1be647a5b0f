"""Property-based fuzzing of a real ``eqr serve`` with schemathesis, from its own OpenAPI document.

The server (``keyed_server`` of tests/conftest.py) requires an API key, so the fuzzer also checks
that no ``/v1`` operation ignores a missing key, and caps depth at 8, so no generated request runs
long. Every operation gets a bounded number of generated requests, valid and invalid; the checks
demand no 5xx, and responses whose status, headers, content type and body all conform to the
document.

Not checked: that schema-invalid input is always refused. The batch endpoint answers 200 with a
per-item error for a puzzle that is not even a string or a 9×9 grid, by design: one bad puzzle must
not fail the rest of the batch.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.live_server import API_KEY as KEY
from tests.live_server import LiveServer

MAX_EXAMPLES = 40  # per operation: ~10 s in all on a 2-core machine
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
pytestmark = pytest.mark.slow


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(keyed_server: LiveServer):
    return schemathesis.openapi.from_url(f"{keyed_server.url}/openapi.json")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_its_schema(case: schemathesis.Case, keyed_server: LiveServer) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS, timeout=30)


def test_keys_are_enforced_over_the_wire_and_never_logged(keyed_server: LiveServer) -> None:
    with httpx.Client(base_url=keyed_server.url, timeout=30) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert client.get("/readyz").status_code == 200 and client.get("/metrics").status_code == 200
    log = Path(keyed_server.log_path).read_text()
    assert "API keys required" in log and KEY not in log
