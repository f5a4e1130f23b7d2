"""livelike_cloud end to end: verify and Send an Event against the local LiveLike fake
on 127.0.0.1 (tests/fakes/livelike.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import connector
from connector.errors import (
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    RemoteRuntimeError,
)
from tests.fakes import LiveLikeFake
from tests.fakes._server import Reply

SEND = "livelike_cloud.send_event"
TOKEN = "ll_producer_token"


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
