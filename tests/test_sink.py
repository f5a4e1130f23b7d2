"""Tests for the local Segment-compatible sink, over real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.testing.sink import Fault, Sink, show_cli

WRITE_KEY = "wk_TEST_s3cr3t_0123456789"
TOKEN = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
BASIC = {"Authorization": f"Basic {TOKEN}"}
KEY_HASH = hashlib.sha256(WRITE_KEY.encode()).hexdigest()[:8]
JSON_HEADERS = {"Content-Type": "application/json"}
SINGLE = ["identify", "track", "page", "screen", "group", "alias"]
ROOT = Path(__file__).resolve().parent.parent


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def padded(build: Callable[[str], Any], size: int) -> bytes:
    """Encode build(pad) compactly with an ASCII pad chosen so the result is exactly size bytes."""
    pad = "x" * (size - len(compact(build(""))))
    data = compact(build(pad))
    assert len(data) == size
    return data


def assert_no_secret(text: str) -> None:
    assert WRITE_KEY not in text
    assert TOKEN not in text
    assert "authorization" not in text.lower()


@pytest.fixture(scope="module")
def shared() -> Iterator[Sink]:
    with Sink() as sink:
        yield sink


@pytest.fixture
def sink(shared: Sink) -> Sink:
    shared.clear()
    return shared


@pytest.fixture
def client(sink: Sink) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sink.url, timeout=5) as client:
        yield client


def post(client: httpx.Client, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {**JSON_HEADERS, **BASIC, **kwargs.pop("headers", {})}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers=headers, **kwargs)


@pytest.mark.parametrize("kind", SINGLE)
def test_single_endpoint_stores_and_fills_type(sink: Sink, client: httpx.Client, kind: str) -> None:
    response = post(client, f"/v1/{kind}", {"userId": "u1", "event": "Clicked"})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert response.headers["content-type"] == "application/json"
    assert sink.messages() == [{"userId": "u1", "event": "Clicked", "type": kind}]
    [record] = sink.received()
    assert record["path"] == f"/v1/{kind}" and record["method"] == "POST"
    assert record["body"] == {"userId": "u1", "event": "Clicked"}
    assert record["writeKeyHash"] == KEY_HASH and record["auth"] == "basic"
    assert "writeKey" not in record
    assert record["headers"]["content-type"] == "application/json"
    assert "authorization" not in record["headers"]
    assert record["receivedAt"].endswith("Z")
    datetime.fromisoformat(record["receivedAt"])
    assert sink.requests_count == 1


def test_explicit_type_is_kept(sink: Sink, client: httpx.Client) -> None:
    post(client, "/v1/track", {"type": "custom", "event": "E"})
    assert sink.messages()[0]["type"] == "custom"


@pytest.mark.parametrize("endpoint", ["/v1/batch", "/v1/import"])
def test_batch_and_import_are_flattened(sink: Sink, client: httpx.Client, endpoint: str) -> None:
    batch = [{"type": t, "userId": f"u{i}"} for i, t in enumerate(["identify", "track", "page"])]
    assert post(client, endpoint, {"batch": batch, "context": {"x": 1}}).status_code == 200
    assert sink.messages() == batch
    [record] = sink.received()
    assert record["path"] == endpoint and record["body"]["context"] == {"x": 1}


def test_body_write_key_is_accepted_and_redacted(sink: Sink, client: httpx.Client) -> None:
    body = {"writeKey": WRITE_KEY, "batch": [{"type": "track", "event": "E"}]}
    response = client.post("/v1/batch", json=body)
    assert response.status_code == 200
    [record] = sink.received()
    assert record["auth"] == "body" and record["writeKeyHash"] == KEY_HASH
    assert "writeKey" not in record["body"]
    assert sink.messages() == [{"type": "track", "event": "E"}]
    assert_no_secret(json.dumps([sink.received(), sink.messages()]))


def test_basic_auth_accepts_any_password(sink: Sink, client: httpx.Client) -> None:
    response = client.post("/v1/track", json={"event": "E"}, auth=(WRITE_KEY, "whatever"))
    assert response.status_code == 200
    assert sink.received()[0]["writeKeyHash"] == KEY_HASH


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, {"event": "E"}),
        ({}, {"event": "E", "writeKey": ""}),
        ({}, {"event": "E", "writeKey": 42}),
        ({"Authorization": "Basic !!!not-base64"}, {"event": "E"}),
        ({"Authorization": f"Basic {b64('no-colon')}"}, {"event": "E"}),
        ({"Authorization": f"Basic {b64(':password')}"}, {"event": "E"}),
        ({"Authorization": "Basic"}, {"event": "E"}),
        ({"Authorization": f"Bearer {WRITE_KEY}"}, {"event": "E"}),
        # A malformed header is not rescued by a body key.
        ({"Authorization": "Basic ???"}, {"event": "E", "writeKey": WRITE_KEY}),
    ],
    ids=[
        "none",
        "empty-body-key",
        "non-string-body-key",
        "bad-base64",
        "no-colon",
        "empty-user",
        "empty-token",
        "bearer",
        "malformed-header-beats-body-key",
    ],
)
def test_bad_auth_is_401_and_not_stored(
    sink: Sink, client: httpx.Client, headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = client.post("/v1/track", json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["success"] is False and response.json()["error"]
    assert sink.received() == [] and sink.messages() == []
    assert sink.requests_count == 1


@pytest.mark.parametrize(("size", "status"), [(32 * 1024, 200), (32 * 1024 + 1, 400)])
def test_single_message_32kb_limit(
    sink: Sink, client: httpx.Client, size: int, status: int
) -> None:
    data = padded(lambda pad: {"event": "E", "properties": {"pad": pad}}, size)
    response = post(client, "/v1/track", data)
    assert response.status_code == status
    assert len(sink.received()) == (status == 200)
    if status == 400:
        assert "32 KB" in response.json()["error"]


@pytest.mark.parametrize(("size", "status"), [(32 * 1024, 200), (32 * 1024 + 1, 400)])
def test_batch_element_32kb_limit(sink: Sink, client: httpx.Client, size: int, status: int) -> None:
    element = json.loads(padded(lambda pad: {"type": "track", "properties": {"p": pad}}, size))
    response = post(client, "/v1/batch", {"batch": [{"type": "page"}, element]})
    assert response.status_code == status
    assert len(sink.messages()) == (2 if status == 200 else 0)
    if status == 400:
        assert "batch[1]" in response.json()["error"] and "32 KB" in response.json()["error"]


@pytest.mark.parametrize(("count", "status"), [(2500, 200), (2501, 400)])
def test_batch_message_count_limit(
    sink: Sink, client: httpx.Client, count: int, status: int
) -> None:
    batch = [{"type": "track", "event": "E", "userId": str(i)} for i in range(count)]
    response = post(client, "/v1/batch", {"batch": batch})
    assert response.status_code == status
    assert len(sink.messages()) == (count if status == 200 else 0)
    if status == 400:
        assert "2500" in response.json()["error"]


@pytest.mark.parametrize(("size", "status"), [(500 * 1024, 200), (500 * 1024 + 1, 400)])
def test_batch_request_500kb_limit(
    sink: Sink, client: httpx.Client, size: int, status: int
) -> None:
    filler = [{"type": "track", "properties": {"p": "y" * 30_000}} for _ in range(16)]
    data = padded(lambda pad: {"batch": [*filler, {"type": "track", "event": pad}]}, size)
    response = post(client, "/v1/batch", data)
    assert response.status_code == status
    assert len(sink.received()) == (status == 200)
    if status == 400:
        assert "500 KB" in response.json()["error"]


def test_content_length_over_read_cap_is_413_without_reading(sink: Sink) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=5)
    connection.putrequest("POST", "/v1/batch")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))
    connection.endheaders()  # Send no body at all: the sink must answer from the header alone.
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["success"] is False
    connection.close()
    assert sink.received() == []


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/v1/track", b"[]"),
        ("/v1/track", b'"text"'),
        ("/v1/track", b"42"),
        ("/v1/track", b"null"),
        ("/v1/track", b"{not json"),
        ("/v1/track", b'{"event": NaN}'),
        ("/v1/track", b""),
        ("/v1/batch", b'{"messages": []}'),
        ("/v1/batch", b'{"batch": {"type": "track"}}'),
        ("/v1/batch", b'{"batch": [{"type": "track"}, "nope"]}'),
        ("/v1/batch", b'{"batch": [{"event": "no type"}]}'),
        ("/v1/import", b'{"batch": [{"type": "batch"}]}'),
    ],
)
def test_invalid_bodies_are_400_and_not_stored(
    sink: Sink, client: httpx.Client, path: str, content: bytes
) -> None:
    response = post(client, path, content)
    assert response.status_code == 400
    assert response.json()["success"] is False
    assert sink.received() == [] and sink.messages() == []


@pytest.mark.parametrize("path", ["/v1/unknown", "/track", "/v2/track", "/v1/track/", "/"])
def test_unknown_path_is_404(sink: Sink, client: httpx.Client, path: str) -> None:
    response = post(client, path, {"event": "E"})
    assert response.status_code == 404
    assert response.json()["success"] is False and path in response.json()["error"]
    assert sink.received() == []


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/track"), ("PUT", "/v1/batch")])
def test_non_post_is_405(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path, headers=BASIC)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["success"] is False


def test_query_string_is_ignored_for_routing(sink: Sink, client: httpx.Client) -> None:
    assert post(client, "/v1/track?debug=1", {"event": "E"}).status_code == 200
    assert sink.received()[0]["path"] == "/v1/track"


def test_gzip_bodies(sink: Sink, client: httpx.Client) -> None:
    headers = {"Content-Encoding": "gzip"}
    body = {"batch": [{"type": "track", "event": "Zipped"}]}
    response = post(client, "/v1/batch", gzip.compress(json.dumps(body).encode()), headers=headers)
    assert response.status_code == 200
    assert sink.messages() == body["batch"]
    # Not gzip at all, a truncated stream, and a bomb over the batch limit.
    bomb = gzip.compress(compact({"batch": [{"type": "track", "p": " " * 600_000}]}))
    assert len(bomb) < 10_000
    for content in (b"plain", gzip.compress(b'{"event": "E"}')[:-6], bomb):
        assert post(client, "/v1/batch", content, headers=headers).status_code == 400
    brotli = post(client, "/v1/track", b"{}", headers={"Content-Encoding": "br"})
    assert brotli.status_code == 415
    assert len(sink.received()) == 1


def test_http_hooks(sink: Sink, client: httpx.Client) -> None:
    post(client, "/v1/track", {"event": "A"})
    post(client, "/v1/batch", {"batch": [{"type": "page"}, {"type": "screen"}]})
    assert client.get("/_sink/health").json() == {"ok": True}
    assert [m["type"] for m in client.get("/_sink/messages").json()] == ["track", "page", "screen"]
    received = client.get("/_sink/received").json()
    assert received == sink.received() and len(received) == 2
    stats = client.get("/_sink/stats").json()
    assert stats == {"requests": 2, "received": 2, "messages": 3, "pendingFaults": 0}
    assert sink.requests_count == 2  # Hooks are not counted.
    assert client.post("/_sink/health").status_code == 405
    assert client.get("/_sink/nope").status_code == 404
    assert client.delete("/_sink/received").json() == {"success": True}
    assert client.get("/_sink/received").json() == []
    assert sink.messages() == [] and sink.requests_count == 0


def test_results_are_copies(sink: Sink, client: httpx.Client) -> None:
    post(client, "/v1/track", {"event": "E"})
    sink.received()[0]["body"]["event"] = "changed"
    sink.messages()[0]["event"] = "changed"
    assert sink.received()[0]["body"]["event"] == "E" and sink.messages()[0]["event"] == "E"


def test_jsonl_store_roundtrip_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "nested" / "sink.jsonl"
    with Sink(store=store) as sink, httpx.Client(base_url=sink.url) as client:
        assert store.exists() and Sink.load(store) == []
        post(client, "/v1/identify", {"userId": "u1", "traits": {"name": "Ada Lovelace ✓"}})
        client.post("/v1/batch", json={"writeKey": WRITE_KEY, "batch": [{"type": "track"}]})
        post(client, "/v1/track", b"[]")  # Rejected: not stored.
        text = store.read_text(encoding="utf-8")
        assert len(text.splitlines()) == 2 and text.endswith("\n")
        assert Sink.load(store) == sink.received()
    assert_no_secret(text)
    assert [r["auth"] for r in Sink.load(store)] == ["basic", "body"]
    show_cli(str(store))
    assert json.loads(capsys.readouterr().out) == Sink.load(store)
    # A reader racing a writer may see a half-written last line; it is skipped.
    with store.open("a", encoding="utf-8") as handle:
        handle.write('{"path": "/v1/tr')
    assert len(Sink.load(store)) == 2


def test_concurrent_requests_are_all_stored(tmp_path: Path) -> None:
    store = tmp_path / "sink.jsonl"
    with Sink(store=store) as sink, httpx.Client(base_url=sink.url) as client:

        def send(i: int) -> None:
            post(client, "/v1/track", {"event": "E", "properties": {"i": i}})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sink.requests_count == 20
    numbers = sorted(r["body"]["properties"]["i"] for r in Sink.load(store))
    assert numbers == list(range(20))


def test_fault_status_sequence_with_retry_after(sink: Sink, client: httpx.Client) -> None:
    sink.inject(Fault(503, retry_after="7"), Fault(429, retry_after="1"), Fault(500))
    answers = [post(client, "/v1/track", {"event": "E"}) for _ in range(4)]
    assert [r.status_code for r in answers] == [503, 429, 500, 200]
    assert [r.headers.get("retry-after") for r in answers] == ["7", "1", None, None]
    assert answers[0].json()["success"] is False
    assert len(sink.received()) == 1 and sink.requests_count == 4


def test_fault_custom_body_and_constructor_faults() -> None:
    with Sink(faults=[Fault(502, body="upstream gone")]) as sink, httpx.Client() as client:
        response = post(client, f"{sink.url}/v1/track", {"event": "E"})
        assert (response.status_code, response.text) == (502, "upstream gone")


def test_fault_delay_then_normal_answer(sink: Sink, client: httpx.Client) -> None:
    sink.inject(Fault(status=None, delay=0.3))
    started = time.monotonic()
    response = post(client, "/v1/track", {"event": "E"})
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200 and len(sink.received()) == 1


def test_fault_delay_past_client_timeout(sink: Sink, client: httpx.Client) -> None:
    sink.inject(Fault(503, delay=0.5))
    with pytest.raises(httpx.ReadTimeout):
        post(client, "/v1/track", {"event": "E"}, timeout=0.1)
    assert post(client, "/v1/track", {"event": "E"}).status_code == 200


def test_fault_drop_closes_without_answer(sink: Sink, client: httpx.Client) -> None:
    sink.inject(Fault(drop=True))
    with pytest.raises(httpx.TransportError):
        post(client, "/v1/track", {"event": "E"})
    assert sink.received() == [] and sink.requests_count == 1
    assert post(client, "/v1/track", {"event": "E"}).status_code == 200


def test_faults_hook_for_other_processes(sink: Sink, client: httpx.Client) -> None:
    faults = [{"status": 429, "retry_after": 2}, {"status": None, "delay": 0.01}]
    assert client.post("/_sink/faults", json=faults).json() == {"success": True, "queued": 2}
    first, second = (post(client, "/v1/track", {"event": "E"}) for _ in range(2))
    assert (first.status_code, first.headers["retry-after"]) == (429, "2")
    assert second.status_code == 200
    for bad in ({"status": 500}, [{"code": 500}], [{"status": "500"}], [{"status": 99}]):
        assert client.post("/_sink/faults", json=bad).status_code == 400
    assert client.get("/_sink/stats").json()["pendingFaults"] == 0


def test_faults_do_not_apply_to_hooks_or_unknown_paths(sink: Sink, client: httpx.Client) -> None:
    sink.inject(Fault(500))
    assert client.get("/_sink/health").status_code == 200
    assert post(client, "/v1/nope", {}).status_code == 404
    assert post(client, "/v1/track", {"event": "E"}).status_code == 500


def test_lifecycle_and_url() -> None:
    sink = Sink()
    with pytest.raises(RuntimeError):
        _ = sink.url
    with sink:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sink.url)
        assert sink.url.endswith(f":{sink.port}")
        assert httpx.get(f"{sink.url}/_sink/health").json() == {"ok": True}
        url = sink.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_sink/health")


def test_serve_forever_cli_prints_url_and_stops_on_sigterm(tmp_path: Path) -> None:
    store = tmp_path / "cli.jsonl"
    code = (
        "from connector.testing.sink import serve_forever_cli as s; "
        f"s('127.0.0.1', 0, {str(store)!r})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"connector sink listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        with httpx.Client(base_url=match.group(1)) as client:
            assert post(client, "/v1/track", {"event": "E"}).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
    assert len(Sink.load(store)) == 1


def test_the_sink_measures_a_message_as_the_engine_does(sink: Sink) -> None:
    """Issue 10: orjson writes 1e-7 where the standard library writes 1e-07. A message the
    engine accepted at exactly the 32,768-byte limit must not be refused by the sink."""
    import connector
    from connector.testing.sink import message_size

    registry = connector.load()
    conn = {"writeKey": WRITE_KEY, "host": sink.url}
    tiny = {f"p{i}": 1e-7 for i in range(2000)}
    params: dict[str, Any] = {"event": "E", "userId": "u", "customProperties": {**tiny, "pad": ""}}
    with connector.Engine(registry) as engine:
        size = len(engine.prepare("segment.track", conn, params).request.content or b"")
        params["customProperties"]["pad"] = "x" * (32_768 - size)
        content = engine.prepare("segment.track", conn, params).request.content or b""
        assert len(content) == 32_768
        message = json.loads(content)
        stdlib = len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())
        assert stdlib > 32_768  # the measure the sink used to take would refuse it
        assert message_size(message) == 32_768
        [result] = engine.run_batch("segment.track", conn, [params])
        assert isinstance(result, list), result
    [stored] = sink.messages()
    assert stored["properties"]["p0"] == 1e-7
