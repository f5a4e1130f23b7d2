"""Make an API Call to a message endpoint gets the message checks (issue 10, section 5).

Segment answers 200 to messages it then drops, so the app's own modules check them
(userId or anonymousId, a track's event, 32 KB). A universal module used to skip all of
that. The app declares its message endpoints in its manifest (``messages``) and the
engine, which knows no app, applies them to a universal module's request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import connector
from connector.errors import ManifestError
from connector.testing.sink import Sink
from tests.conftest import WRITE_KEY, write_app

OK_TRACK = {"type": "track", "event": "E", "userId": "u"}


@pytest.mark.parametrize(
    ("url", "body", "fault"),
    [
        pytest.param("/v1/track", {"userId": "u"}, "body.event is required in track", id="event"),
        pytest.param(
            "/v1/track", {"event": "E"}, "body.userId or body.anonymousId is required",
            id="no-user",
        ),
        pytest.param(
            "/v1/track", {"event": "E", "userId": "  "}, "body.userId or body.anonymousId",
            id="blank-user",
        ),
        pytest.param("/v1/Track/", {"event": "E"}, "body.userId or", id="case-and-slash"),
        pytest.param("/v1/%74rack", {"event": "E"}, "body.userId or", id="encoded-path"),
        pytest.param("/v1/track?x=1", {"event": "E"}, "body.userId or", id="with-query"),
        pytest.param(
            "/v1/track", '{"event": "E"}', "body.userId or", id="json-text-body",
        ),
        pytest.param(
            "/v1/identify", {"userId": "u", "traits": {"b": "x" * 33_000}},
            "over the limit of 32,768 bytes for identify messages", id="size",
        ),
        pytest.param("/v1/group", {"userId": "u"}, "body.groupId is required", id="group"),
        pytest.param("/v1/alias", {"userId": "u"}, "body.previousId is required", id="alias"),
        pytest.param("/v1/page", [1], "body must be a JSON object", id="not-an-object"),
        pytest.param(
            "/v1/batch", {"batch": [OK_TRACK, {"type": "track", "userId": "u"}]},
            "body.batch[1].event is required", id="batch-item",
        ),
        pytest.param(
            "/v1/batch", {"batch": [{"type": "nope", "userId": "u"}]},
            "body.batch[0].type is 'nope': unknown message type, expected one of: alias, group",
            id="batch-unknown-type",
        ),
        pytest.param(
            "/v1/batch", {"batch": [{"event": "E", "userId": "u"}]},
            "body.batch[0].type is None: unknown message type", id="batch-no-type",
        ),
        pytest.param(
            "/v1/import", {"batch": [{"type": "identify"}]},
            "body.batch[0].userId or body.batch[0].anonymousId", id="batch-alias-path",
        ),
        pytest.param(
            "/v1/batch", {"batch": [{**OK_TRACK, "p": "x" * 33_000}]},
            "body.batch[0] is 33,", id="batch-item-size",
        ),
        pytest.param("/v1/batch", {"items": []}, "with a list 'batch'", id="batch-shape"),
    ],
)  # fmt: skip
def test_an_api_call_to_a_message_endpoint_is_checked_and_nothing_is_sent(
    engine: connector.Engine, sink: Sink, url: str, body: Any, fault: str
) -> None:
    with pytest.raises(connector.DataError) as info:
        engine.run(
            "segment.api_call",
            {"writeKey": WRITE_KEY, "host": sink.url},
            {"url": url, "method": "POST", "body": body},
        )
    assert info.value.field == "body"
    assert fault in info.value.message
    assert sink.received() == []


def test_every_fault_of_a_batch_is_named_in_one_error(engine: connector.Engine) -> None:
    body = {"batch": [{"type": "track", "userId": "u"}, {"type": "alias", "userId": "u"}]}
    with pytest.raises(connector.DataError) as info:
        engine.dry_run("segment.api_call", {"writeKey": WRITE_KEY}, {"url": "/v1/batch",
                       "method": "POST", "body": body})  # fmt: skip
    assert "body.batch[0].event is required" in info.value.message
    assert "body.batch[1].previousId is required" in info.value.message


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/track", OK_TRACK),
        ("/v1/identify", {"anonymousId": "a-1", "traits": {"plan": "pro"}}),
        ("/v1/batch", {"batch": [OK_TRACK, {"type": "page", "userId": "u", "name": "Home"}]}),
    ],
)
def test_a_valid_message_through_an_api_call_is_delivered(
    engine: connector.Engine, sink: Sink, url: str, body: Any
) -> None:
    (bundle,) = engine.run(
        "segment.api_call",
        {"writeKey": WRITE_KEY, "host": sink.url},
        {"url": url, "method": "POST", "body": body},
    )
    assert bundle["statusCode"] == 200
    assert len(sink.received()) == 1


def _app(root: Path, messages: dict[str, Any]) -> Path:
    """An app of no known vendor: its own endpoints, type key and limit."""
    module = {
        "id": "acme.call",
        "label": "Call",
        "description": "Any request.",
        "kind": "universal",
        "parameters": [{"name": "url", "type": "text"}, {"name": "body", "type": "any"}],
        "request": {
            "method": "POST",
            "url": "{{ parameters.url }}",
            "body": "{{ parameters.body }}",
        },
    }
    return write_app(
        root,
        "acme",
        {"call.json": module},
        baseUrl="https://api.acme.example",
        connection={"fields": [], "auth": {"type": "none"}},
        messages=messages,
    )


def test_the_checks_come_from_the_manifest_of_any_app(tmp_path: Path) -> None:
    folder = _app(
        tmp_path,
        {"maxBytes": 64, "types": {"order": {"path": "/orders", "required": ["sku"]}}},
    )
    with connector.Engine(connector.load(folder, packaged=False)) as engine:
        with pytest.raises(connector.DataError) as info:
            engine.dry_run("acme.call", {}, {"url": "/orders", "body": {"qty": 1}})
        assert "body.sku is required in order messages" in info.value.message
        with pytest.raises(connector.DataError, match="over the limit of 64 bytes"):
            engine.dry_run("acme.call", {}, {"url": "/orders", "body": {"sku": "x" * 80}})
        assert engine.dry_run("acme.call", {}, {"url": "/orders", "body": {"sku": "A"}})
        assert engine.dry_run("acme.call", {}, {"url": "/other", "body": {}})


@pytest.mark.parametrize(
    ("messages", "where"),
    [
        ({"types": {"t": {"path": "no-slash"}}}, "path"),
        ({"types": {"t": {"path": "/x", "requird": ["a"]}}}, "requird"),
        ({"types": {}, "maxBytes": 0}, "maxBytes"),
        ({"maxBytes": 10}, "types"),
        ({"types": {}, "batchPaths": ["/import"]}, "declare 'batch' too"),
    ],
)
def test_a_broken_messages_spec_is_a_manifest_error(
    tmp_path: Path, messages: dict[str, Any], where: str
) -> None:
    with pytest.raises(ManifestError) as info:
        connector.load(_app(tmp_path, messages), packaged=False)
    assert where in str(info.value)
