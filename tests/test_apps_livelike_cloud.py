"""livelike_cloud end to end: verify and Send an Event against the local LiveLike fake
on 127.0.0.1 (tests/fakes/livelike.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connector
from connector.errors import (
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    RemoteRuntimeError,
    RunError,
)
from tests.conftest import write_app
from tests.fakes import LiveLikeFake
from tests.fakes._server import Reply

SEND = "livelike_cloud.send_event"
TOKEN = "ll_producer_token"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake() -> Iterator[LiveLikeFake]:
    with LiveLikeFake(token=TOKEN) as running:
        yield running


@pytest.fixture
def conn(fake: LiveLikeFake) -> dict[str, str]:
    return {"clientId": fake.client_id, "producerToken": TOKEN, "host": fake.url + "/api/v1"}


def test_send_event_posts_one_event_with_bearer_token(
    engine: connector.Engine, fake: LiveLikeFake, conn: dict[str, str]
) -> None:
    bundles = engine.run(
        SEND,
        conn,
        {
            "action_key": "Order Completed",
            "action_name": "Order completed",
            "user_id": "u-1",
            "timestamp": 1795599675,  # epoch seconds: sent as ISO 8601
            "properties": [{"key": "revenue", "value": 19.99}],
        },
    )
    event = {
        "action_key": "Order Completed",
        "action_name": "Order completed",
        "user_id": "u-1",
        "timestamp": "2026-11-25T09:41:15.000Z",
        "properties": {"revenue": 19.99},
    }
    assert fake.events == [event]
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.path == f"/api/v1/applications/{fake.client_id}/segment-events/"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.json() == {"events": [event]}
    assert bundles == [{**event, "status": 202}]


def test_livelike_profile_id_alone_is_enough(
    engine: connector.Engine, fake: LiveLikeFake, conn: dict[str, str]
) -> None:
    engine.run(
        SEND,
        conn,
        {
            "action_key": "poll_voted",
            "livelike_profile_id": "p-9",
            "timestamp": "2026-11-25T09:41:15Z",
        },
    )
    assert fake.events == [
        {
            "action_key": "poll_voted",
            "livelike_profile_id": "p-9",
            "timestamp": "2026-11-25T09:41:15.000Z",
        }
    ]


@pytest.mark.parametrize(
    ("parameters", "field", "words"),
    [
        ({"user_id": "u", "timestamp": "2026-11-25T09:41:15Z"}, "action_key", "required"),
        ({"action_key": "k", "timestamp": "2026-11-25T09:41:15Z"}, None, "user ID or the LiveLike"),
        ({"action_key": "k", "user_id": "u"}, "timestamp", "required"),
        ({"action_key": "k", "user_id": "u", "timestamp": "yesterday"}, "timestamp", ""),
        (
            {"action_key": "k", "user_id": "u", "timestamp": "2026-11-25", "properties": "[1]"},
            "properties",
            "",
        ),
    ],
)
def test_bad_input_is_refused_before_sending(
    engine: connector.Engine,
    fake: LiveLikeFake,
    conn: dict[str, str],
    parameters: dict[str, Any],
    field: str | None,
    words: str,
) -> None:
    with pytest.raises(DataError) as caught:
        engine.run(SEND, conn, parameters)
    if field is not None:
        assert caught.value.field == field
    assert words in caught.value.message
    assert fake.requests == []


def test_verify_checks_client_id_and_token(
    engine: connector.Engine, fake: LiveLikeFake, conn: dict[str, str]
) -> None:
    assert engine.verify("livelike_cloud", conn)["ok"] is True
    assert fake.requests[-1].path == f"/api/v1/applications/{fake.client_id}/validate-app/"
    with pytest.raises(InvalidAccessTokenError) as bad_token:
        engine.verify("livelike_cloud", {**conn, "producerToken": "ll_wrong_token_123"})
    assert "ll_wrong_token_123" not in str(bad_token.value.to_dict())
    with pytest.raises(InvalidConfigurationError):
        engine.verify("livelike_cloud", {**conn, "clientId": "no-such-app"})


def test_a_busy_livelike_is_retried_and_the_event_arrives_once(
    engine: connector.Engine, fake: LiveLikeFake, conn: dict[str, str]
) -> None:
    fake.faults.append(Reply(503, {"detail": "Service unavailable"}))
    params = {"action_key": "k", "user_id": "u", "timestamp": "2026-11-25T09:41:15Z"}
    engine.run(SEND, conn, params)
    assert len(fake.requests) == 2
    assert fake.requests[0].body == fake.requests[1].body  # the same request again
    assert [e["action_key"] for e in fake.events] == ["k"]


def test_an_event_livelike_refuses_is_an_error_with_its_reason(
    engine: connector.Engine, fake: LiveLikeFake, conn: dict[str, str]
) -> None:
    fake.faults.append(Reply(400, {"events": {"0": ["action_key: unknown action"]}}))
    with pytest.raises(DataError) as caught:
        engine.run(SEND, conn, {"action_key": "k", "user_id": "u", "timestamp": "2026-11-25"})
    assert "unknown action" in caught.value.message
    assert len(fake.requests) == 1  # a 400 is not retried
    with pytest.raises(RemoteRuntimeError):
        fake.faults.extend([Reply(500, {"detail": "boom"})] * 4)
        engine.run(SEND, conn, {"action_key": "k", "user_id": "u", "timestamp": "2026-11-25"})
    assert fake.events == []


def test_default_base_url(engine: connector.Engine) -> None:
    request = engine.dry_run(
        SEND,
        {"clientId": "abc", "producerToken": "secret-token-1"},
        {"action_key": "k", "user_id": "u", "timestamp": "2026-11-25T09:41:15Z"},
    )
    assert request["url"] == (
        "https://cf-blast.livelikecdn.com/api/v1/applications/abc/segment-events/"
    )
    assert "secret-token-1" not in str(request)


def test_batch_mode_sends_many_events_a_request(
    engine: connector.Engine, fake: LiveLikeFake, conn: dict[str, str]
) -> None:
    inputs: list[dict[str, Any]] = [
        {"action_key": f"k{i}", "user_id": f"u{i}", "timestamp": 1795599675 + i} for i in range(6)
    ]
    inputs[2] = {"action_key": "k2", "timestamp": 1795599677}  # no user: refused alone
    results = list(engine.run_batch(SEND, conn, inputs))
    (request,) = fake.requests  # one request for the five good events
    assert request.path == f"/api/v1/applications/{fake.client_id}/segment-events/"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    sent = request.json()
    assert list(sent) == ["events"]
    assert [e["action_key"] for e in sent["events"]] == ["k0", "k1", "k3", "k4", "k5"]
    assert sent["events"][0] == {
        "action_key": "k0",
        "user_id": "u0",
        "timestamp": "2026-11-25T09:41:15.000Z",
    }
    assert fake.events == sent["events"]
    assert isinstance(results[2], DataError)
    good = [r for i, r in enumerate(results) if i != 2]
    assert [r[0]["action_key"] for r in good if isinstance(r, list)] == [
        "k0",
        "k1",
        "k3",
        "k4",
        "k5",
    ]
    assert {r[0]["status"] for r in good if isinstance(r, list)} == {202}


def test_batch_mode_matches_single_runs(
    engine: connector.Engine, fake: LiveLikeFake, conn: dict[str, str]
) -> None:
    """The events a batch sends are exactly those single runs send, one by one."""
    inputs = [
        {"action_key": "a", "livelike_profile_id": "p-1", "timestamp": "2026-11-25T09:41:15Z"},
        {
            "action_key": "b",
            "user_id": "u-2",
            "timestamp": "2026-11-25",
            "action_name": "B",
            "properties": {"n": 1, "tags": ["x"]},
        },
    ]
    batched = list(engine.run_batch(SEND, conn, inputs))
    in_batch = list(fake.events)
    fake.events.clear()
    single = [engine.run(SEND, conn, p) for p in inputs]
    assert fake.events == in_batch
    assert batched == single


def _acme(tmp_path: Path, body: dict[str, Any], **batch: Any) -> connector.Registry:
    """An unwrap app of one batchable module whose request body is ``body``."""
    module = {
        "id": "acme.send",
        "label": "Send",
        "description": "d",
        "parameters": [{"name": "x", "type": "text"}],
        "request": {"url": "/events", "body": body},
        "batchable": True,
    }
    batch = {"url": "/events", "itemsKey": "events", "unwrap": True, **batch}
    folder = write_app(tmp_path, "acme", {"send.json": module}, batch=batch)
    return connector.load(str(folder), packaged=False)


def test_batch_unwrap_refuses_a_body_without_its_list(tmp_path: Path) -> None:
    """An unwrap app whose module body has no list under itemsKey: that item's DataError."""
    with connector.Engine(_acme(tmp_path, {"event": "{{ parameters.x }}"})) as engine:
        (result,) = list(engine.run_batch("acme.send", {}, [{"x": "1"}]))
    assert isinstance(result, DataError) and "'events': [...]" in result.message


def _two_item_app(tmp_path: Path, max_items: int) -> connector.Registry:
    """An unwrap app whose module body brings two items a run."""
    body = {"events": [{"a": "{{ parameters.x }}"}, {"b": "{{ parameters.x }}"}]}
    return _acme(tmp_path, body, maxItems=max_items)


@pytest.mark.parametrize(("max_items", "per_request"), [(3, [2, 2, 2]), (4, [4, 2]), (6, [6])])
def test_batch_unwrap_counts_items_not_inputs(
    tmp_path: Path, max_items: int, per_request: list[int]
) -> None:
    """maxItems is the API's limit on items a request: inputs that bring two items each
    are packed so that no request holds more, and the write-ahead row counts them."""
    sent: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(len(json.loads(request.content)["events"]))
        return httpx.Response(200, json={})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with connector.Engine(_two_item_app(tmp_path, max_items), client=client) as engine:
        results = list(engine.run_batch("acme.send", {}, [{"x": str(i)} for i in range(3)]))
    assert all(isinstance(result, list) for result in results), results
    assert sent == per_request


def test_batch_unwrap_rows_count_the_messages_they_hold(tmp_path: Path) -> None:
    """A write-ahead row of an unwrap batch counts the items its body holds (what
    ``incomplete list`` shows and ``retry`` recovers), not the inputs."""
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    store = connector.IncompleteStore(tmp_path / "store.sqlite")
    registry = _two_item_app(tmp_path, 4)
    once = connector.RetrySpec(attempts=1)
    with connector.Engine(registry, client=client, incomplete=store, retry=once) as engine:
        results = list(engine.run_batch("acme.send", {}, [{"x": str(i)} for i in range(3)]))
    assert all(isinstance(result, RunError) and result.incomplete_id for result in results)
    rows = sorted(store.executions(), key=lambda row: row.items)
    assert [(row.items, len(row.messages())) for row in rows] == [(2, 2), (4, 4)]
    store.close()


def test_batch_unwrap_refuses_an_input_over_the_item_limit(tmp_path: Path) -> None:
    """An input whose body alone holds more items than a request may: that input's
    DataError, nothing sent for it."""
    sent: list[bytes] = []
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: sent.append(r.content) or httpx.Response(200))
    )
    with connector.Engine(_two_item_app(tmp_path, 1), client=client) as engine:
        (result,) = list(engine.run_batch("acme.send", {}, [{"x": "1"}]))
    assert isinstance(result, DataError)
    assert "holds 2 items under 'events', over the batch limit of 1" in result.message
    assert sent == []


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_VALUE = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _TEXT
_EVENT = st.fixed_dictionaries(
    {"action_key": _TEXT, "timestamp": st.integers(0, 4_000_000_000)},
    optional={
        "user_id": _TEXT,
        "livelike_profile_id": _TEXT,
        "action_name": _TEXT,
        "properties": st.dictionaries(
            st.text("abcdefgh_", min_size=1, max_size=6), _VALUE | st.just(TOKEN), max_size=4
        ),
    },
)


def test_batch_unwrap_is_single_runs_property(tmp_path: Path) -> None:
    """Differential: for any events, a batch run (three events a request, to cross
    batches) sends the same events, in order, and gives the same bundles or errors as one
    single run each (a mock LiveLike answering 202)."""
    app = tmp_path / "livelike_cloud"
    shutil.copytree(ROOT / "manifests" / "livelike_cloud", app)
    manifest = json.loads((app / "app.json").read_text())
    manifest["batch"]["maxItems"] = 3
    (app / "app.json").write_text(json.dumps(manifest))
    registry = connector.load(str(app), packaged=False)
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(202, json={"received": len(sent[-1]["events"])})

    conn = {"clientId": "c-1", "producerToken": TOKEN, "host": "http://127.0.0.1:9/api/v1"}

    @given(st.lists(_EVENT, min_size=1, max_size=10))
    @settings(max_examples=60, deadline=None)
    def check(inputs: list[dict[str, Any]]) -> None:
        client = httpx.Client(transport=httpx.MockTransport(answer))
        with connector.Engine(registry, client=client) as engine:
            sent.clear()
            batched = list(engine.run_batch(SEND, conn, inputs))
            in_batches = [e for body in sent for e in body["events"]]
            assert all(len(body["events"]) <= 3 for body in sent)
            sent.clear()
            singles: list[Any] = []
            for item in inputs:
                try:
                    singles.append(engine.run(SEND, conn, item))
                except RunError as exc:
                    singles.append(exc)
            one_by_one = [e for body in sent for e in body["events"]]
        assert in_batches == one_by_one
        assert len(batched) == len(singles)
        for got, want in zip(batched, singles, strict=True):
            if isinstance(want, RunError):
                assert isinstance(got, RunError)
                assert (got.type, got.field, got.message) == (want.type, want.field, want.message)
            else:
                assert got == want
                assert TOKEN not in json.dumps(got)

    check()
