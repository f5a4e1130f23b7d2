"""The two flows of issue 13, end to end over loopback HTTP.

Segment → LiveLike: Segment's Webhooks destination posts a signed delivery to a host's
URL; the host hands it to ``segment.watch_events`` and maps each bundle into
``livelike_cloud.send_event``; the event arrives at the LiveLike fake.

CleverTap → Segment: ``clevertap.watch_events`` polls the CleverTap fake; each bundle
is mapped onto ``segment.track``, and the messages arrive at the local Segment sink.

The mappings are what a builder writes in the scenario editor: templates over the
earlier module's bundle, rendered by the engine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import connector
from connector.errors import DataError, InvalidAccessTokenError, RunError
from connector.testing.sink import Sink
from tests.conftest import WRITE_KEY
from tests.fakes import CleverTapFake, LiveLikeFake
from tests.fakes._server import FakeAPI, Reply, Request

SHARED_SECRET = "whsec_flow_4f3e2d1c"
LIVELIKE_TOKEN = "ll_flow_producer_token"

#: Segment event -> LiveLike event, as LiveLike Cloud Mode's default mapping does it:
#: the action key and name from the properties, else the event's name.
TO_LIVELIKE = {
    "action_key": "{{ (webhook.properties | default({})).action_key | default(webhook.event) }}",
    "action_name": "{{ (webhook.properties | default({})).action_name | default(webhook.event) }}",
    "user_id": "{{ webhook.userId | default(none) }}",
    "livelike_profile_id": (
        "{{ (webhook.properties | default({})).livelike_profile_id | default(none) }}"
    ),
    "timestamp": "{{ webhook.timestamp }}",
    "properties": "{{ webhook.properties | default({}) }}",
}

#: CleverTap record -> Segment track, the mapping `make demo` uses too: Charged's Amount
#: and Currency are Segment's revenue and currency, the other properties stay custom;
#: the message ID is derived from the record, so a record polled twice is one message.
TO_SEGMENT: dict[str, str] = json.loads(
    (Path(__file__).resolve().parent.parent / "examples" / "clevertap_to_segment.json").read_text()
)


class _Host(FakeAPI):
    """The host side of a scenario: an HTTP endpoint for Segment's deliveries that runs
    the trigger and then the LiveLike module for each bundle."""

    def __init__(self, engine: connector.Engine, segment: dict[str, str], livelike: dict[str, str]):
        super().__init__()
        self.engine, self.segment, self.livelike = engine, segment, livelike
        self.route("POST", "/hooks/segment", self._deliver)

    @property
    def url(self) -> str:
        return super().url + "/hooks/segment"

    def _deliver(self, request: Request, args: dict[str, str]) -> Reply:
        try:
            bundles = self.engine.handle_webhook(
                "segment.watch_events",
                self.segment,
                {"types": ["track"]},
                request.headers,
                request.body,
            )
        except InvalidAccessTokenError as exc:
            return Reply(401, exc.to_dict())
        except DataError as exc:
            return Reply(400, exc.to_dict())
        results: list[Any] = []
        for bundle in bundles:
            try:
                results.append(
                    self.engine.run(
                        "livelike_cloud.send_event", self.livelike, TO_LIVELIKE, {"webhook": bundle}
                    )
                )
            except RunError as exc:  # one event's failure is reported, the rest still go
                results.append({"error": exc.to_dict()})
        return Reply(200, {"results": results})


def _signed(body: bytes, secret: str = SHARED_SECRET) -> dict[str, str]:
    """As Segment's Webhooks destination signs: HMAC-SHA1 of the raw body, hex."""
    digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return {"Content-Type": "application/json", "X-Signature": digest}


@pytest.fixture
def livelike() -> Iterator[LiveLikeFake]:
    with LiveLikeFake(token=LIVELIKE_TOKEN) as running:
        yield running


@pytest.fixture
def host(engine: connector.Engine, livelike: LiveLikeFake) -> Iterator[_Host]:
    segment = {"writeKey": WRITE_KEY, "sharedSecret": SHARED_SECRET}
    target = {
        "clientId": livelike.client_id,
        "producerToken": LIVELIKE_TOKEN,
        "host": livelike.url + "/api/v1",
    }
    with _Host(engine, segment, target) as running:
        yield running


def test_segment_to_livelike(host: _Host, livelike: LiveLikeFake) -> None:
    delivery = {
        "batch": [
            {
                "type": "track",
                "event": "Order Completed",
                "userId": "u-1",
                "properties": {"revenue": 19.99, "action_key": "order_completed"},
                "messageId": "m-1",
                "timestamp": "2026-11-25T09:41:15.123Z",
            },
            {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}},
            {
                "type": "track",
                "event": "Badge Rewarded",
                "properties": {"livelike_profile_id": "p-9", "badge_id": "b-1"},
                "messageId": "m-2",
                "timestamp": "2026-11-25T09:42:00Z",
            },
        ]
    }
    body = json.dumps(delivery).encode()
    answer = httpx.post(host.url, content=body, headers=_signed(body))
    assert answer.status_code == 200, answer.text
    assert livelike.events == [
        {
            "action_key": "order_completed",
            "action_name": "Order Completed",
            "user_id": "u-1",
            "timestamp": "2026-11-25T09:41:15.123Z",
            "properties": {"revenue": 19.99, "action_key": "order_completed"},
        },
        {
            "action_key": "Badge Rewarded",
            "action_name": "Badge Rewarded",
            "livelike_profile_id": "p-9",
            "timestamp": "2026-11-25T09:42:00.000Z",
            "properties": {"livelike_profile_id": "p-9", "badge_id": "b-1"},
        },
    ]
    (sent,) = {r.headers["authorization"] for r in livelike.requests}
    assert sent == f"Bearer {LIVELIKE_TOKEN}"


def test_segment_to_livelike_refuses_a_forged_delivery(host: _Host, livelike: LiveLikeFake) -> None:
    body = json.dumps({"type": "track", "event": "E", "userId": "u", "timestamp": "2026-11-25"})
    forged = httpx.post(host.url, content=body, headers=_signed(body.encode(), "not-the-secret"))
    assert forged.status_code == 401
    assert SHARED_SECRET not in forged.text
    assert livelike.requests == []


def test_segment_to_livelike_reports_an_event_it_cannot_send(
    host: _Host, livelike: LiveLikeFake
) -> None:
    """A track with no user ID and no LiveLike profile ID cannot go to LiveLike: that event
    fails its checks (nothing sent for it), the others still arrive."""
    delivery = [
        {"type": "track", "event": "E1", "anonymousId": "a-1", "timestamp": "2026-11-25"},
        {"type": "track", "event": "E2", "userId": "u-2", "timestamp": "2026-11-25"},
    ]
    body = json.dumps(delivery).encode()
    answer = httpx.post(host.url, content=body, headers=_signed(body)).json()
    first, second = answer["results"]
    assert first["error"]["type"] == "DataError"
    assert "user ID or the LiveLike profile ID" in first["error"]["message"]
    assert second[0]["user_id"] == "u-2"
    assert [e["action_key"] for e in livelike.events] == ["E2"]


def test_clevertap_to_segment(engine: connector.Engine, sink: Sink) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with CleverTapFake() as clevertap:
        clevertap.add_event(
            "Charged",
            "ada@example.com",
            now - timedelta(minutes=3),
            {"Amount": 300, "Currency": "USD", "Payment mode": "Credit Card"},
        )
        clevertap.add_event("Charged", "bob@example.com", now - timedelta(minutes=1), {"Amount": 5})
        ct_conn = clevertap.connection()
        segment = {"writeKey": WRITE_KEY, "host": sink.url}
        params = {"eventName": "Charged", "start": "all"}

        def poll_and_forward(state: dict[str, Any] | None) -> dict[str, Any]:
            bundles, new_state = engine.poll("clevertap.watch_events", ct_conn, params, state)
            for bundle in bundles:
                engine.run("segment.track", segment, TO_SEGMENT, {"ct": bundle})
            return new_state

        state = poll_and_forward(None)
        messages = sink.messages()
        assert [(m["type"], m["event"], m["userId"]) for m in messages] == [
            ("track", "Charged", "ada@example.com"),
            ("track", "Charged", "bob@example.com"),
        ]
        assert messages[0]["properties"] == {
            "revenue": 300,
            "currency": "USD",
            "Payment mode": "Credit Card",
        }
        assert messages[0]["timestamp"] == (now - timedelta(minutes=3)).strftime(
            "%Y-%m-%dT%H:%M:%S.000Z"
        )
        assert messages[1]["properties"] == {"revenue": 5}
        assert len({m["messageId"] for m in messages}) == 2

        # The next poll forwards only what is new.
        clevertap.add_event("Charged", "cy@example.com", now, {"Amount": 7, "Currency": "EUR"})
        poll_and_forward(state)
        assert [m["userId"] for m in sink.messages()] == [
            "ada@example.com",
            "bob@example.com",
            "cy@example.com",
        ]
