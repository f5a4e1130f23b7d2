"""The API fuzzed from its own OpenAPI document (schemathesis): for every operation,
generated requests (valid and invalid) must never get a 5xx, and every response must
match the document (status, content type, headers, body schema). About a minute.

The engine sends through an httpx MockTransport here: the fuzzer makes up connection
hosts, and nothing may leave the machine. Runs against the real sink are in
test_service.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

import connector
from connector.runs.incomplete import IncompleteStore
from connector.service import Limits, ServiceState, create_app
from connector.service.state import INCOMPLETE
from tests.test_service_support import TOKEN

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"success": True})


def _state(path: Path) -> ServiceState:
    registry = connector.load()
    engine = connector.Engine(
        registry,
        incomplete=IncompleteStore(path / INCOMPLETE),
        client=httpx.Client(transport=httpx.MockTransport(_answer)),
        async_client=httpx.AsyncClient(transport=httpx.MockTransport(_answer)),
    )
    return ServiceState.open(
        path,
        registry,
        engine=engine,
        limits=Limits(max_wait=0.2, request_timeout=20),
        environ={"CONNECTOR_API_TOKEN": TOKEN},
    )


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: object, value: object) -> bytes:
    """The batch body: generated text as it is (mostly lines that are not JSON objects,
    each of which must get its own error line, never a 5xx)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    import json

    return json.dumps(value).encode()


# Built at import: schemathesis makes one test per operation from the document. The
# data directory is removed when the module's tests are done.
_DATA = Path(tempfile.mkdtemp(prefix="connector-fuzz-"))
_STATE = _state(_DATA)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_STATE))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    _STATE.close()
    shutil.rmtree(_DATA, ignore_errors=True)


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@schema.parametrize()
@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_matches_its_document_and_never_fails_with_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)
