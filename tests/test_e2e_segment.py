"""End to end: every Segment module against a real HTTP server on 127.0.0.1.

No mocks: the engine sends through httpx to the sink (connector.testing.sink), and the tests
check what arrived: exact path, Authorization header, body.
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from typing import Any

import pytest

import connector
from connector.testing.sink import Sink
from tests.conftest import FAST_RETRY, WRITE_KEY

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EXPECTED_AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()


def only_record(sink: Sink) -> dict[str, Any]:
    records = sink.received()
    assert len(records) == 1, records
    return records[0]


def test_identify_end_to_end(engine: connector.Engine, sink: Sink, connection: dict) -> None:
    context = {"webhook": {"id": "person-1", "email": "ada@example.com"}}
    parameters = {
        "userId": "{{ webhook.id }}",
        "timestamp": "2026-01-02T03:04:05+02:00",
        "traits": {
            "email": "{{ webhook.email }}",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "age": "36",
            "address": {"city": "London"},
            "company": {"name": "AE", "employee_count": "12"},
        },
        "customTraits": [{"key": "plan", "value": "pro"}],
    }
    bundles = engine.run("segment.identify", connection, parameters, context)

    record = only_record(sink)
    assert record["path"] == "/v1/identify"
    assert record["method"] == "POST"
    assert record["auth"] == "basic"
    body = record["body"]
    assert body["type"] == "identify"
    assert body["userId"] == "person-1"
    assert body["timestamp"] == "2026-01-02T01:04:05.000Z"
    assert body["traits"] == {
        "email": "ada@example.com",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "name": "Ada Lovelace",
        "age": 36,
        "address": {"city": "London"},
        "company": {"name": "AE", "employee_count": 12},
        "plan": "pro",
    }
    assert body["context"]["library"] == {"name": "connector", "version": connector.__version__}
    assert "anonymousId" not in body
    uuid.UUID(body["messageId"])

    assert bundles == [{**body, "success": True}]


def test_track_end_to_end(engine: connector.Engine, sink: Sink, connection: dict) -> None:
    bundles = engine.run(
        "segment.track",
        connection,
        {
            "event": "Order Completed",
            "anonymousId": "anon-7",
            "revenue": "19.99",
            "currency": "eur",
            "value": 3,
            "customProperties": {"orderId": "A-1", "items": 2},
            "integrations": {"All": False, "Mixpanel": True},
            "context": {"ip": "203.0.113.9"},
        },
    )
    record = only_record(sink)
    assert record["path"] == "/v1/track"
    body = record["body"]
    assert body["event"] == "Order Completed"
    assert body["anonymousId"] == "anon-7"
    assert body["properties"] == {
        "revenue": 19.99,
        "currency": "EUR",
        "value": 3,
        "orderId": "A-1",
        "items": 2,
    }
    assert body["integrations"] == {"All": False, "Mixpanel": True}
    assert body["context"]["ip"] == "203.0.113.9"
    assert body["context"]["library"]["name"] == "connector"
    assert ISO_MS.match(body["timestamp"])
    assert bundles[0]["messageId"] == body["messageId"]
    assert bundles[0]["success"] is True


def test_authorization_header_reaches_server(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    """The sink drops the header from its records, so check it on the wire with a probe."""
    import http.server
    import threading

    seen: dict[str, str] = {}

    class Probe(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen["auth"] = self.headers.get("Authorization", "")
            seen["path"] = self.path
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"success": true}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        engine.run(
            "segment.track", {"writeKey": WRITE_KEY, "host": host}, {"event": "E", "userId": "u"}
        )
    finally:
        server.shutdown()
        server.server_close()
    assert seen == {"auth": EXPECTED_AUTH, "path": "/v1/track"}


def test_api_call_end_to_end(engine: connector.Engine, sink: Sink, connection: dict) -> None:
    bundles = engine.run(
        "segment.api_call",
        connection,
        {
            "url": "/v1/group",
            "method": "POST",
            "headers": [{"key": "X-Trace", "value": "t-1"}],
            "qs": [{"key": "debug", "value": "1"}],
            "body": {"userId": "u-1", "groupId": "g-1", "traits": {"name": "AE"}},
        },
    )
    record = only_record(sink)
    assert record["path"] == "/v1/group?debug=1" or record["path"] == "/v1/group"
    assert record["headers"]["x-trace"] == "t-1"
    assert record["body"] == {"userId": "u-1", "groupId": "g-1", "traits": {"name": "AE"}}
    assert record["auth"] == "basic"
    [bundle] = bundles
    assert bundle["statusCode"] == 200
    assert bundle["body"] == {"success": True}
    assert bundle["headers"]["content-type"].startswith("application/json")


def test_api_call_text_body_and_get(engine: connector.Engine, sink: Sink, connection: dict) -> None:
    bundles = engine.run(
        "segment.api_call",
        connection,
        {"url": "/v1/alias", "method": "POST", "body": '{"userId": "u", "previousId": "p"}'},
    )
    assert only_record(sink)["body"] == {"userId": "u", "previousId": "p"}
    assert bundles[0]["statusCode"] == 200
    with pytest.raises(connector.InvalidConfigurationError) as info:
        engine.run("segment.api_call", connection, {"url": "/v1/nothing-here", "method": "GET"})
    assert info.value.status in (404, 405)


def test_arun_matches_run(engine: connector.Engine, sink: Sink, connection: dict) -> None:
    async def go() -> list[dict[str, Any]]:
        try:
            return await engine.arun(
                "segment.track", connection, {"event": "Async", "userId": "u-async"}
            )
        finally:
            await engine.aclose()

    bundles = asyncio.run(go())
    record = only_record(sink)
    assert record["path"] == "/v1/track"
    assert record["body"]["event"] == "Async"
    assert bundles[0]["messageId"] == record["body"]["messageId"]


def test_one_engine_serves_successive_and_concurrent_event_loops(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    """A host may call ``asyncio.run`` again, or run a loop per thread, with one engine:
    each loop gets its own pooled client, never connections of a closed loop."""
    import threading

    async def one(event: str) -> str:
        [bundle] = await engine.arun("segment.track", connection, {"event": event, "userId": "u"})
        results = [
            r
            async for r in engine.arun_batch(
                "segment.track", connection, [{"event": event, "userId": "v"}]
            )
        ]
        assert isinstance(results[0], list)
        return str(bundle["event"])

    assert asyncio.run(one("first")) == "first"
    assert asyncio.run(one("second")) == "second"  # the first loop is closed by now
    outcomes: list[str] = []
    threads = [
        threading.Thread(target=lambda i=i: outcomes.append(asyncio.run(one(f"t{i}"))))
        for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["t0", "t1", "t2"]
    assert len(sink.messages()) == 10


def test_clients_of_ended_loops_do_not_pile_up_and_aclose_closes_what_it_made(
    registry: connector.Registry, sink: Sink, connection: dict
) -> None:
    engine = connector.Engine(registry)

    async def run(event: str) -> None:
        await engine.arun("segment.track", connection, {"event": event, "userId": "u"})

    for i in range(5):  # a host calling asyncio.run per job, never closing the engine
        asyncio.run(run(f"job{i}"))
    assert len(engine._async_clients) == 1  # only the last loop's: the others dropped
    outside = engine.async_client  # taken outside any running loop

    async def use_then_close() -> None:
        await run("last")
        await engine.aclose()

    asyncio.run(use_then_close())
    assert engine._async_clients == {}
    assert outside.is_closed
    assert len(sink.messages()) == 6


def test_arun_many_is_concurrent_and_ordered(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    runs = [{"event": f"E{i}", "userId": f"u{i}"} for i in range(20)]
    runs.insert(5, {"event": "no user"})  # a DataError for that run alone

    async def go() -> list[Any]:
        try:
            return await engine.arun_many("segment.track", connection, runs, concurrency=4)
        finally:
            await engine.aclose()

    results = asyncio.run(go())
    assert isinstance(results[5], connector.DataError)
    events = [r[0]["event"] for i, r in enumerate(results) if i != 5]
    assert events == [f"E{i}" for i in range(20)]
    assert len(sink.messages()) == 20


@pytest.mark.parametrize(
    ("module", "parameters", "field"),
    [
        ("segment.identify", {"traits": {"email": "a@b.co"}}, "userId"),
        ("segment.identify", {"userId": "u", "traits": {"email": "not-an-email"}}, "traits.email"),
        ("segment.identify", {"userId": "u", "customTraits": {"Email": "x"}}, "customTraits"),
        ("segment.identify", {"userId": "u", "traits": {"age": "old"}}, "traits.age"),
        ("segment.track", {"userId": "u"}, "event"),
        ("segment.track", {"event": "E"}, "userId"),
        ("segment.track", {"event": "E", "userId": "u", "revenue": "abc"}, "revenue"),
        ("segment.track", {"event": "E", "userId": "u", "currency": "dollars"}, "currency"),
        ("segment.track", {"event": "E", "userId": "u", "timestamp": "yesterday"}, "timestamp"),
        ("segment.track", {"event": "E", "userId": "u", "messageId": "x" * 101}, "messageId"),
        (
            "segment.track",
            {"event": "E", "userId": "u", "customProperties": [{"key": "Revenue", "value": 1}]},
            "customProperties",
        ),
        (
            "segment.track",
            {"event": "E", "userId": "u", "customProperties": {"blob": "x" * 40_000}},
            "customProperties",
        ),
        ("segment.api_call", {"url": "https://evil.example/v1/track"}, "url"),
        ("segment.api_call", {"url": "//evil.example/v1/track"}, "url"),
        ("segment.api_call", {"url": "/v1/track", "method": "TRACE"}, "method"),
        (
            "segment.api_call",
            {"url": "/v1/track", "headers": [{"key": "Authorization", "value": "Basic x"}]},
            "headers",
        ),
        (
            "segment.api_call",
            {"url": "/v1/track", "headers": {"X-A": "1\r\nX-Injected: 1"}},
            "headers",
        ),
        ("segment.track", {"event": "E", "userId": "u", "unknownField": 1}, "unknownField"),
    ],
)
def test_invalid_input_is_refused_and_nothing_is_sent(
    engine: connector.Engine,
    sink: Sink,
    connection: dict,
    module: str,
    parameters: dict,
    field: str,
) -> None:
    with pytest.raises(connector.DataError) as info:
        engine.run(module, connection, parameters)
    assert info.value.field == field
    assert field.split(".")[-1] in info.value.message or info.value.field == field
    assert sink.requests_count == 0


def test_wrong_write_key_maps_to_invalid_access_token(engine: connector.Engine, sink: Sink) -> None:
    """The sink refuses requests without credentials; an empty key is caught earlier."""
    with pytest.raises(connector.InvalidConfigurationError) as info:
        engine.run(
            "segment.track", {"writeKey": "", "host": sink.url}, {"event": "E", "userId": "u"}
        )
    assert info.value.field == "writeKey"
    assert sink.requests_count == 0


def test_remote_status_maps_to_make_error_types(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    from connector.testing.sink import Fault

    sink.inject(Fault(status=401))
    with pytest.raises(connector.InvalidAccessTokenError) as info:
        engine.run("segment.track", connection, {"event": "E", "userId": "u"})
    assert info.value.status == 401
    assert info.value.attempts == 1  # 401 is never retried

    sink.inject(Fault(status=400))
    with pytest.raises(connector.DataError):
        engine.run("segment.track", connection, {"event": "E", "userId": "u"})


def test_retries_resend_the_same_message_id(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    from connector.testing.sink import Fault

    sink.inject(Fault(status=503), Fault(status=429, retry_after="0"))
    bundles = engine.run("segment.track", connection, {"event": "Retry", "userId": "u"})
    assert sink.requests_count == 3
    [record] = sink.received()
    assert record["body"]["messageId"] == bundles[0]["messageId"]


def test_retries_run_out_and_the_error_is_raised(
    registry: connector.Registry, sink: Sink, connection: dict
) -> None:
    from connector.testing.sink import Fault

    sink.inject(*[Fault(status=500)] * 10)
    with (
        connector.Engine(registry, retry=FAST_RETRY) as engine,
        pytest.raises(connector.RemoteRuntimeError) as info,
    ):
        engine.run("segment.track", connection, {"event": "E", "userId": "u"})
    attempts = FAST_RETRY.attempts
    assert info.value.attempts == attempts
    assert sink.requests_count == attempts
    assert sink.received() == []


def test_unreachable_host_is_a_connection_error(engine: connector.Engine) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = {"writeKey": WRITE_KEY, "host": f"http://127.0.0.1:{port}"}
    with pytest.raises(connector.RemoteConnectionError) as info:
        engine.run("segment.track", conn, {"event": "E", "userId": "u"})
    assert info.value.type == "ConnectionError"
    assert WRITE_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us", "https://api.segment.io/v1/track"),
        ("eu", "https://events.eu1.segmentapis.com/v1/track"),
        (None, "https://api.segment.io/v1/track"),
    ],
)
def test_region_base_urls(engine: connector.Engine, region: str | None, expected: str) -> None:
    conn: dict[str, Any] = {"writeKey": WRITE_KEY}
    if region:
        conn["region"] = region
    request = engine.dry_run("segment.track", conn, {"event": "E", "userId": "u"})
    assert request["url"] == expected
    assert request["headers"]["Authorization"] == "[REDACTED]"


def test_unknown_region_is_a_configuration_error(engine: connector.Engine) -> None:
    with pytest.raises(connector.InvalidConfigurationError) as info:
        engine.dry_run(
            "segment.track",
            {"writeKey": WRITE_KEY, "region": "mars"},
            {"event": "E", "userId": "u"},
        )
    assert info.value.field == "region"


def test_slow_reply_times_out_per_host_and_is_retried(
    registry: connector.Registry, sink: Sink, connection: dict
) -> None:
    from connector.testing.sink import Fault

    sink.inject(Fault(status=None, delay=1.0))  # the first answer comes too late
    with connector.Engine(registry, retry=FAST_RETRY, timeouts={"127.0.0.1": 0.2}) as engine:
        bundles = engine.run("segment.track", connection, {"event": "Slow", "userId": "u"})
    assert bundles[0]["success"] is True
    assert sink.requests_count == 2  # the timed-out attempt, then the retry


def test_slow_replies_exhaust_retries_as_a_connection_error(
    registry: connector.Registry, sink: Sink, connection: dict
) -> None:
    from connector.testing.sink import Fault

    sink.inject(*[Fault(status=None, delay=0.5)] * FAST_RETRY.attempts)
    with (
        connector.Engine(registry, retry=FAST_RETRY, timeouts={"127.0.0.1": 0.1}) as engine,
        pytest.raises(connector.RemoteConnectionError) as info,
    ):
        engine.run("segment.track", connection, {"event": "Slow", "userId": "u"})
    assert "timed out" in info.value.message
    assert info.value.attempts == FAST_RETRY.attempts


def test_api_call_bundle_always_has_the_three_keys(registry: connector.Registry) -> None:
    """An empty answer (204) still gives {statusCode, headers, body: null}."""
    import httpx

    client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204)))
    with connector.Engine(registry, client=client) as engine:
        [bundle] = engine.run(
            "segment.api_call", {"writeKey": WRITE_KEY}, {"url": "/v1/x", "method": "DELETE"}
        )
    assert bundle["statusCode"] == 204
    assert bundle["body"] is None
    assert set(bundle) == {"statusCode", "headers", "body"}


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "Upgrade",
        "TE",
        "Proxy-Authorization",
        "Expect",
    ],
)
def test_routing_and_framing_headers_are_refused(
    engine: connector.Engine, sink: Sink, connection: dict, header: str
) -> None:
    with pytest.raises(connector.DataError) as info:
        engine.run(
            "segment.api_call",
            connection,
            {"url": "/v1/track", "method": "POST", "headers": {header: "x"}, "body": {"a": 1}},
        )
    assert info.value.field == "headers"
    assert sink.requests_count == 0


@pytest.mark.parametrize("url", ["/v1%3F/../../admin", "/v1%23/../../admin", "/v1/%2e%2e/x"])
def test_encoded_separators_cannot_hide_dot_segments(
    engine: connector.Engine, sink: Sink, connection: dict, url: str
) -> None:
    with pytest.raises(connector.DataError) as info:
        engine.run("segment.api_call", connection, {"url": url, "method": "GET"})
    assert info.value.field == "url"
    assert sink.requests_count == 0


def test_one_engine_serves_many_threads(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    """Hosts share one engine across worker threads: every run is delivered, once."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> str:
        conn = {**connection, "region": "us"} if i % 2 else connection  # two cache keys
        [bundle] = engine.run("segment.track", conn, {"event": f"T{i}", "userId": f"u{i}"})
        return str(bundle["messageId"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(one, range(200)))
    assert len(set(ids)) == 200
    assert sorted(m["messageId"] for m in sink.messages()) == sorted(ids)
