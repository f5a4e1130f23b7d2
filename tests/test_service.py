"""``connector serve`` end to end: a real uvicorn server on 127.0.0.1, the local sink as
Segment, and an HTTP client as a host would be."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.service import Limits
from connector.service.secretbox import KEY_FILE, SecretBox, SecretBoxError
from connector.service.state import DATABASE
from connector.service.token import TOKEN_FILE, ApiToken
from connector.testing.sink import Fault, Sink
from tests.test_service_support import (
    SHARED_SECRET,
    TOKEN,
    WRITE_KEY,
    Served,
    served,
    signed,
)

TRACK = {"event": "Signed Up", "userId": "u-1"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Served]:
    with served(tmp_path / "data") as running:
        yield running


def _secret_forms(*secrets: str) -> list[bytes]:
    forms = []
    for secret in secrets:
        forms.append(secret.encode())
        forms.append(base64.b64encode(f"{secret}:".encode()))
    return forms


# -- the token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1"), ("GET", "/v1/modules"), ("POST", "/v1/connections"), ("GET", "/v1/hooks")],
)
def test_every_api_route_needs_the_token(
    service: Served, headers: dict[str, str], method: str, path: str
) -> None:
    answer = httpx.request(method, service.url + path, headers=headers, json={})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    error = answer.json()["error"]
    assert (error["type"], error["origin"], error["field"]) == (
        "InvalidAccessTokenError",
        "service",
        "Authorization",
    )


def test_health_and_openapi_are_open(service: Served) -> None:
    assert httpx.get(service.url + "/health").json() == {"ok": True}
    document = httpx.get(service.url + "/openapi.json").json()
    assert "/v1/modules/{module_id}/run" in document["paths"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_a_token_is_made_on_first_start_and_only_its_hash_kept(tmp_path: Path) -> None:
    made = ApiToken.load(tmp_path, environ={})
    assert made.created is not None and made.check(made.created)
    stored = (tmp_path / TOKEN_FILE).read_text()
    assert made.created not in stored
    assert (tmp_path / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    again = ApiToken.load(tmp_path, environ={})
    assert again.created is None  # printed once, never again
    assert again.check(made.created) and not again.check(made.created + "x")


def test_the_environment_token_wins_and_must_be_long(tmp_path: Path) -> None:
    token = ApiToken.load(tmp_path, environ={"CONNECTOR_API_TOKEN": TOKEN})
    assert token.check(TOKEN) and token.source == "environment"
    assert not (tmp_path / TOKEN_FILE).exists()
    with pytest.raises(ValueError, match="at least 16"):
        ApiToken.load(tmp_path, environ={"CONNECTOR_API_TOKEN": "short"})


# -- modules, runs ----------------------------------------------------------------------


def test_list_and_describe_modules(service: Served) -> None:
    modules = service.client.get("/v1/modules").json()["modules"]
    assert "segment.track" in [m["id"] for m in modules]
    described = service.client.get("/v1/modules/segment.track").json()
    assert described["id"] == "segment.track" and "event" in json.dumps(described["parameters"])
    missing = service.client.get("/v1/modules/segment.nope")
    assert missing.status_code == 404
    assert "segment.track" in missing.json()["error"]["message"]


def test_run_with_a_stored_connection_reaches_the_sink(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    answer = service.client.post(
        "/v1/modules/segment.track/run",
        json={
            "connection": connection,
            "parameters": {"event": "Signed Up", "userId": "{{ webhook.id }}"},
            "context": {"webhook": {"id": "u-7"}},
        },
    )
    assert answer.status_code == 200, answer.text
    (bundle,) = answer.json()["bundles"]
    assert bundle["userId"] == "u-7" and bundle["event"] == "Signed Up"
    (message,) = sink.messages()
    assert message["userId"] == "u-7" and message["messageId"] == bundle["messageId"]
    assert WRITE_KEY not in answer.text


def test_run_with_an_inline_connection(service: Served, sink: Sink) -> None:
    answer = service.client.post(
        "/v1/modules/segment.track/run",
        json={"connection": {"writeKey": WRITE_KEY, "host": sink.url}, "parameters": TRACK},
    )
    assert answer.status_code == 200, answer.text
    assert len(sink.messages()) == 1


def test_dry_run_sends_nothing_and_hides_the_key(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    answer = service.client.post(
        "/v1/modules/segment.track/dry-run",
        json={"connection": connection, "parameters": TRACK},
    )
    assert answer.status_code == 200
    request = answer.json()["request"]
    assert request["url"] == sink.url + "/v1/track"
    assert request["headers"]["Authorization"] == "[REDACTED]"
    assert sink.requests_count == 0
    for form in _secret_forms(WRITE_KEY):
        assert form not in answer.content


# -- errors: Make's types, and who failed -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "kind", "field"),
    [
        ({"connection": "CONN", "parameters": {"event": "E"}}, 422, "DataError", "userId"),
        (
            {"connection": "CONN", "parameters": {**TRACK, "revenue": "x"}},
            422,
            "DataError",
            "revenue",
        ),
        ({"connection": "conn_missing", "parameters": TRACK}, 404, "DataError", "connection"),
        (
            {"connection": {"host": "http://127.0.0.1:9"}, "parameters": TRACK},
            422,
            "InvalidConfigurationError",
            "writeKey",
        ),
        ({"parameters": TRACK}, 422, "DataError", "connection"),
        ({"connection": "CONN", "parameters": TRACK, "extra": 1}, 422, "DataError", "extra"),
    ],
)
def test_bad_run_input_is_refused_naming_the_field_and_nothing_is_sent(
    service: Served, sink: Sink, body: dict[str, Any], status: int, kind: str, field: str
) -> None:
    connection = service.connection(sink.url)
    if body.get("connection") == "CONN":
        body = {**body, "connection": connection}
    answer = service.client.post("/v1/modules/segment.track/run", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["origin"]) == (kind, "service")
    assert field in (error["field"] or error["message"])
    assert sink.requests_count == 0


def test_a_connection_of_another_app_is_refused(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    service.state.connections._values.clear()
    service.state.connections._stored.clear()
    with service.state.db.transaction() as db:
        db.execute("UPDATE connections SET app = 'other' WHERE id = ?", (connection,))
    answer = service.client.post(
        "/v1/modules/segment.track/run", json={"connection": connection, "parameters": TRACK}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "connection"


def test_an_upstream_401_is_a_502_not_the_services_own_401(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    sink.inject(Fault(status=401, body='{"error": "bad key"}'))
    answer = service.client.post(
        "/v1/modules/segment.track/run", json={"connection": connection, "parameters": TRACK}
    )
    assert answer.status_code == 502
    assert "www-authenticate" not in answer.headers
    error = answer.json()["error"]
    assert (error["type"], error["origin"], error["status"]) == (
        "InvalidAccessTokenError",
        "upstream",
        401,
    )
    assert WRITE_KEY not in answer.text


def test_a_run_that_fails_after_retries_is_kept_and_can_be_retried(
    service: Served, sink: Sink
) -> None:
    connection = service.connection(sink.url)
    sink.inject(Fault(status=503), Fault(status=503))
    answer = service.client.post(
        "/v1/modules/segment.track/run", json={"connection": connection, "parameters": TRACK}
    )
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert (error["type"], error["origin"], error["retryable"]) == (
        "RuntimeError",
        "upstream",
        True,
    )
    execution_id = error["incompleteId"]
    listed = service.client.get("/v1/incomplete").json()["executions"]
    assert [e["id"] for e in listed] == [execution_id]
    shown = service.client.get(f"/v1/incomplete/{execution_id}")
    assert shown.json()["module"] == "segment.track"
    for form in _secret_forms(WRITE_KEY):
        assert form not in shown.content
    retried = service.client.post(
        f"/v1/incomplete/{execution_id}/retry", json={"connection": connection}
    )
    assert retried.status_code == 200, retried.text
    assert [m["userId"] for m in sink.messages()] == ["u-1"]
    assert service.client.get("/v1/incomplete").json()["executions"] == []
    gone = service.client.post(
        f"/v1/incomplete/{execution_id}/retry", json={"connection": connection}
    )
    assert gone.status_code == 404


def test_retry_all_and_discard(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    sink.inject(*[Fault(status=500)] * 4)
    for user in ("a", "b"):
        service.client.post(
            "/v1/modules/segment.track/run",
            json={"connection": connection, "parameters": {"event": "E", "userId": user}},
        )
    first, second = service.client.get("/v1/incomplete").json()["executions"]
    assert service.client.delete(f"/v1/incomplete/{first['id']}").status_code == 200
    outcomes = service.client.post(
        "/v1/incomplete/retry-all", json={"connection": connection}
    ).json()["outcomes"]
    [outcome] = outcomes  # the shape of `connector incomplete retry --all`
    assert outcome["id"] == second["id"] and outcome["delivered"] is True
    assert [m["userId"] for m in sink.messages()] == ["b"]


# -- connections: secrets sealed at rest ------------------------------------------------


def test_connections_never_return_or_store_secrets_in_clear(
    service: Served, sink: Sink, tmp_path: Path
) -> None:
    created = service.client.post(
        "/v1/connections",
        json={
            "app": "segment",
            "label": "prod",
            "values": {"writeKey": WRITE_KEY, "host": sink.url, "sharedSecret": SHARED_SECRET},
        },
    )
    assert created.status_code == 201
    body = created.json()
    assert body["fields"] == {"host": sink.url}
    assert body["secrets"] == ["sharedSecret", "writeKey"]
    listed = service.client.get("/v1/connections")
    shown = service.client.get(f"/v1/connections/{body['id']}")
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob(f"{DATABASE}*"))
    for text in (created.content, listed.content, shown.content, stored):
        for form in _secret_forms(WRITE_KEY, SHARED_SECRET):
            assert form not in text
    # The sealed values open with the data directory's key, and only with it.
    (sealed,) = service.state.db.read("SELECT sealed FROM connections")
    key = (tmp_path / "data" / KEY_FILE).read_bytes()
    assert SecretBox(key).open(sealed[0])["writeKey"] == WRITE_KEY
    other = SecretBox.load(tmp_path / "elsewhere")
    with pytest.raises(SecretBoxError, match="does not open"):
        other.open(sealed[0])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"app": "nope", "values": {}}, "app"),
        ({"app": "segment", "values": {}}, "writeKey"),
        ({"app": "segment", "values": {"writeKey": WRITE_KEY, "region": "mars"}}, "region"),
        ({"app": "segment", "values": {"writeKey": WRITE_KEY, "host": "ftp://x"}}, "host"),
        ({"app": "segment"}, "values"),
    ],
)
def test_bad_connections_are_refused_naming_the_field(
    service: Served, body: dict[str, Any], field: str
) -> None:
    answer = service.client.post("/v1/connections", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert field in (error["field"] or "") + error["message"]
    assert WRITE_KEY not in answer.text
    assert service.client.get("/v1/connections").json()["connections"] == []


def test_a_bad_connection_lists_every_faulty_field(service: Served) -> None:
    values = {"region": "mars", "host": "ftp://x"}
    answer = service.client.post("/v1/connections", json={"app": "segment", "values": values})
    assert answer.status_code == 422, answer.text
    faults = answer.json()["error"]["faults"]
    assert [(f["field"], f["rule"]) for f in faults] == [
        ("writeKey", "required"),
        ("region", "enum"),
        ("host", "format"),
    ]


def test_a_connection_used_by_a_hook_cannot_be_deleted(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    hook = service.client.post(
        "/v1/hooks", json={"module": "segment.watch_events", "connection": connection}
    ).json()
    refused = service.client.delete(f"/v1/connections/{connection}")
    assert refused.status_code == 409 and hook["id"] in refused.json()["error"]["message"]
    assert service.client.delete(f"/v1/hooks/{hook['id']}").status_code == 200
    assert service.client.delete(f"/v1/connections/{connection}").status_code == 200
    assert service.client.get(f"/v1/connections/{connection}").status_code == 404


# -- the streamed batch -----------------------------------------------------------------


def test_batch_is_one_line_out_per_line_in_in_order(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    lines = [
        json.dumps({"event": "A", "userId": "u-1"}),
        "not json",
        "[1, 2]",
        json.dumps({"event": "B"}),
        "",
        json.dumps({"event": "C", "userId": "u-3"}),
    ]
    answer = service.client.post(
        "/v1/modules/segment.track/batch",
        params={"connection": connection},
        content="\n".join(lines).encode(),
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-ndjson"
    out = [json.loads(line) for line in answer.text.splitlines()]
    assert len(out) == 5  # the blank line is skipped, as `connector run --batch` does
    assert out[0]["bundles"][0]["userId"] == "u-1"
    assert out[1]["error"]["message"].startswith("line 2: invalid JSON")
    assert out[2]["error"]["message"] == "line 3 must be a JSON object"
    assert out[3]["error"]["field"] == "userId"
    assert out[4]["bundles"][0]["userId"] == "u-3"
    assert [m["userId"] for m in sink.messages()] == ["u-1", "u-3"]
    assert sink.requests_count == 1  # one /v1/batch request


def test_batch_streams_many_lines_with_an_inline_connection(service: Served, sink: Sink) -> None:
    count = 6000  # over Segment's 2,500 a batch: three requests
    lines = (json.dumps({"event": "E", "userId": f"u-{i}"}) + "\n" for i in range(count))
    with service.client.stream(
        "POST",
        "/v1/modules/segment.track/batch",
        headers={"Connector-Connection": json.dumps({"writeKey": WRITE_KEY, "host": sink.url})},
        content=(line.encode() for line in lines),
    ) as answer:
        assert answer.status_code == 200
        users = [json.loads(line)["bundles"][0]["userId"] for line in answer.iter_lines()]
    assert users == [f"u-{i}" for i in range(count)]
    assert len(sink.messages()) == count and sink.requests_count == 3


@pytest.mark.parametrize(
    ("params", "headers", "status", "field"),
    [
        ({}, {}, 422, "connection"),
        ({"connection": "conn_missing"}, {}, 404, "connection"),
        ({}, {"Connector-Connection": "{"}, 422, "Connector-Connection"),
        ({}, {"Connector-Connection": '{"host": "http://127.0.0.1:9"}'}, 422, "writeKey"),
    ],
)
def test_a_batch_with_a_bad_connection_is_refused_before_streaming(
    service: Served, params: dict[str, str], headers: dict[str, str], status: int, field: str
) -> None:
    answer = service.client.post(
        "/v1/modules/segment.track/batch", params=params, headers=headers, content=b"{}\n"
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field


def test_a_module_that_cannot_batch_is_refused(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    answer = service.client.post(
        "/v1/modules/segment.watch_events/batch", params={"connection": connection}, content=b""
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["type"] == "InvalidConfigurationError"


# -- limits -----------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(tmp_path: Path, sink: Sink) -> None:
    with served(tmp_path, limits=Limits(max_body=2000)) as service:
        connection = service.connection(sink.url)
        big = {"connection": connection, "parameters": {**TRACK, "pad": "x" * 5000}}
        answer = service.client.post("/v1/modules/segment.track/run", json=big)
        assert answer.status_code == 413
        assert answer.json()["error"] == {
            "type": "DataError",
            "message": "the request body is over the limit of 2,000 bytes",
            "field": "body",
            "origin": "service",
        }
        # Without a Content-Length (chunked), cut off while it is read.
        chunked = service.client.post(
            "/v1/modules/segment.track/run",
            content=(json.dumps(big)[i : i + 500].encode() for i in range(0, 6000, 500)),
            headers={"Content-Type": "application/json"},
        )
        assert chunked.status_code == 413
    assert sink.requests_count == 0


def test_runs_over_the_concurrency_limit_are_refused_with_429(tmp_path: Path, sink: Sink) -> None:
    with served(tmp_path, limits=Limits(max_runs=1, max_queued=0)) as service:
        connection = service.connection(sink.url)
        sink.inject(Fault(status=None, delay=1.5))
        first: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: first.append(
                service.client.post(
                    "/v1/modules/segment.track/run",
                    json={"connection": connection, "parameters": TRACK},
                )
            )
        )
        slow.start()
        while sink.requests_count == 0:
            time.sleep(0.01)
        refused = service.client.post(
            "/v1/modules/segment.track/run", json={"connection": connection, "parameters": TRACK}
        )
        slow.join()
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "RateLimitError"
        assert refused.json()["error"]["origin"] == "service"
        assert first[0].status_code == 200


def test_a_request_over_the_time_limit_is_504_and_its_run_kept(tmp_path: Path, sink: Sink) -> None:
    with served(tmp_path, limits=Limits(request_timeout=0.5, max_wait=0.2)) as service:
        connection = service.connection(sink.url)
        sink.inject(Fault(status=None, delay=3))
        answer = service.client.post(
            "/v1/modules/segment.track/run", json={"connection": connection, "parameters": TRACK}
        )
        assert answer.status_code == 504
        assert answer.json()["error"]["type"] == "ConnectionError"
        (kept,) = service.client.get("/v1/incomplete").json()["executions"]
        assert kept["state"] == "pending" and kept["module"] == "segment.track"


# -- hooks ------------------------------------------------------------------------------


def _hook(service: Served, connection: str, **parameters: Any) -> dict[str, Any]:
    answer = service.client.post(
        "/v1/hooks",
        json={"module": "segment.watch_events", "connection": connection, "parameters": parameters},
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


DELIVERY = {
    "batch": [
        {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": "m-1"},
        {"type": "identify", "userId": "u-2", "messageId": "m-2"},
    ]
}


def test_a_signed_delivery_becomes_bundles_read_by_long_poll_and_acked(
    service: Served, sink: Sink
) -> None:
    connection = service.connection(sink.url)
    hook = _hook(service, connection, types=["track"])
    assert hook["url"] == f"{service.url}/hooks/{hook['id']}"
    body = json.dumps(DELIVERY).encode()
    delivered = httpx.post(hook["url"], content=body, headers=signed(body))
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["bundles"] == 1  # the identify was filtered out
    read = service.client.get(f"/v1/hooks/{hook['id']}/bundles").json()["bundles"]
    assert [b["bundle"]["messageId"] for b in read] == ["m-1"]
    assert read[0]["deliveryId"] == delivered.json()["deliveryId"]
    # At-least-once: returned again until acknowledged.
    again = service.client.get(f"/v1/hooks/{hook['id']}/bundles").json()["bundles"]
    assert again == read
    acked = service.client.post(
        f"/v1/hooks/{hook['id']}/ack", json={"ids": [read[0]["id"], 999999]}
    )
    assert acked.json() == {"acked": 1}
    assert service.client.get(f"/v1/hooks/{hook['id']}/bundles").json()["bundles"] == []


def test_a_long_poll_wakes_when_a_delivery_arrives(service: Served, sink: Sink) -> None:
    connection = service.connection(sink.url)
    hook = _hook(service, connection)
    got: list[Any] = []
    started = time.monotonic()
    reader = threading.Thread(
        target=lambda: got.append(
            service.client.get(f"/v1/hooks/{hook['id']}/bundles", params={"wait": 20}).json()
        )
    )
    reader.start()
    time.sleep(0.3)
    body = json.dumps(DELIVERY["batch"][0]).encode()
    assert httpx.post(hook["url"], content=body, headers=signed(body)).status_code == 200
    reader.join()
    assert [b["bundle"]["messageId"] for b in got[0]["bundles"]] == ["m-1"]
    assert time.monotonic() - started < 15  # woken by the delivery, not by the wait running out


def _bad_deliveries() -> list[tuple[str, bytes, dict[str, str], int, str]]:
    good = json.dumps(DELIVERY).encode()
    return [
        ("unsigned", good, {}, 401, "InvalidAccessTokenError"),
        ("wrong secret", good, signed(good, "another-secret-123"), 401, "InvalidAccessTokenError"),
        ("altered", good + b" ", signed(good), 401, "InvalidAccessTokenError"),
        ("not json", b"{nope", signed(b"{nope"), 400, "DataError"),
        ("no type", b'{"userId": "u"}', signed(b'{"userId": "u"}'), 400, "DataError"),
        ("a number", b"42", signed(b"42"), 400, "DataError"),
    ]


@pytest.mark.parametrize(
    ("case", "body", "headers", "status", "kind"),
    _bad_deliveries(),
    ids=[c[0] for c in _bad_deliveries()],
)
def test_a_bad_delivery_gets_a_clear_4xx_and_nothing_is_stored(
    service: Served,
    sink: Sink,
    case: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    kind: str,
) -> None:
    connection = service.connection(sink.url)
    hook = _hook(service, connection)
    answer = httpx.post(hook["url"], content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["type"] == kind
    assert SHARED_SECRET not in answer.text
    assert service.client.get(f"/v1/hooks/{hook['id']}/bundles").json()["bundles"] == []
    assert service.state.db.read("SELECT COUNT(*) FROM bundles") == [(0,)]


def test_a_delivery_over_the_limit_is_413_and_nothing_is_stored(tmp_path: Path, sink: Sink) -> None:
    with served(tmp_path, limits=Limits(max_delivery=1000)) as service:
        hook = _hook(service, service.connection(sink.url))
        body = json.dumps({"type": "track", "pad": "x" * 2000}).encode()
        answer = httpx.post(hook["url"], content=body, headers=signed(body))
        assert answer.status_code == 413
        assert answer.json()["error"]["type"] == "DataError"
        assert service.state.db.read("SELECT COUNT(*) FROM bundles") == [(0,)]


def test_unknown_and_deleted_hooks_answer_404(service: Served, sink: Sink) -> None:
    hook = _hook(service, service.connection(sink.url))
    body = json.dumps(DELIVERY).encode()
    assert httpx.post(service.url + "/hooks/hook_nope", content=body).status_code == 404
    assert service.client.delete(f"/v1/hooks/{hook['id']}").status_code == 200
    assert httpx.post(hook["url"], content=body, headers=signed(body)).status_code == 404
    assert service.client.get(f"/v1/hooks/{hook['id']}/bundles").status_code == 404


@pytest.mark.parametrize(
    ("module", "parameters", "values", "field"),
    [
        ("segment.track", {}, None, "module"),
        ("segment.watch_events", {"types": ["nope"]}, None, "types"),
        ("segment.watch_events", {}, {"writeKey": WRITE_KEY}, "sharedSecret"),
    ],
)
def test_bad_hooks_are_refused(
    service: Served,
    sink: Sink,
    module: str,
    parameters: dict[str, Any],
    values: dict[str, Any] | None,
    field: str,
) -> None:
    if values is None:
        connection = service.connection(sink.url)
    else:
        connection = service.client.post(
            "/v1/connections", json={"app": "segment", "values": values}
        ).json()["id"]
    answer = service.client.post(
        "/v1/hooks", json={"module": module, "connection": connection, "parameters": parameters}
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert field in (error["field"] or "") + error["message"]
    assert service.client.get("/v1/hooks").json()["hooks"] == []


def test_hooks_connections_and_bundles_survive_a_restart(tmp_path: Path, sink: Sink) -> None:
    data = tmp_path / "data"
    with served(data) as service:
        connection = service.connection(sink.url)
        hook = _hook(service, connection)
        body = json.dumps(DELIVERY).encode()
        assert httpx.post(hook["url"], content=body, headers=signed(body)).status_code == 200
    with served(data) as service:
        read = service.client.get(f"/v1/hooks/{hook['id']}/bundles").json()["bundles"]
        assert [b["bundle"]["messageId"] for b in read] == ["m-1", "m-2"]
        run = service.client.post(
            "/v1/modules/segment.track/run", json={"connection": connection, "parameters": TRACK}
        )
        assert run.status_code == 200  # the sealed write key opened after the restart
        assert sink.messages()[-1]["userId"] == "u-1"


def test_the_service_info_lists_capabilities(service: Served) -> None:
    info = service.client.get("/v1").json()
    assert set(info["capabilities"]) <= {"poll", "options", "verify"}
    assert info["limits"]["maxBody"] == Limits().max_body
