"""End to end: the modules added as manifests only, against a real HTTP server.

Group, Page, Screen, Alias and LiveLike's Track Event were added without an engine
change; these tests send each one through httpx to the loopback sink and check what
arrived (path, auth, body) and the bundle the builder gets back.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

import connector
from connector.testing.sink import Sink
from tests.conftest import WRITE_KEY

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LIBRARY = {"name": "connector", "version": connector.__version__}


def only_record(sink: Sink) -> dict[str, Any]:
    records = sink.received()
    assert len(records) == 1, records
    return records[0]


def check_common(body: dict[str, Any], bundles: list[dict[str, Any]]) -> None:
    """What every Segment message carries, and the bundle echoing it."""
    uuid.UUID(body["messageId"])
    assert ISO_MS.match(body["timestamp"])
    assert body["context"]["library"] == LIBRARY
    assert bundles == [{**body, "success": True}]


# (module, parameters, context, path, expected body without the common keys)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], str, dict[str, Any]]] = [
    (
        "segment.group",
        {
            "userId": "{{ user.id }}",
            "groupId": "{{ user.company.id }}",
            "traits": {
                "name": "Initech",
                "employees": "329",
                "industry": "Technology",
                "plan": "enterprise",
                "address": {"city": "Austin"},
                "createdAt": "2020-02-01",
            },
            "customTraits": [{"key": "tier", "value": "gold"}],
        },
        {"user": {"id": "person-1", "company": {"id": "org-42"}}},
        "/v1/group",
        {
            "type": "group",
            "userId": "person-1",
            "groupId": "org-42",
            "traits": {
                "address": {"city": "Austin"},
                "createdAt": "2020-02-01T00:00:00.000Z",
                "employees": 329,
                "industry": "Technology",
                "name": "Initech",
                "plan": "enterprise",
                "tier": "gold",
            },
        },
    ),
    (
        "segment.page",
        {
            "anonymousId": "anon-7",
            "name": "Pricing",
            "category": "Docs",
            "properties": {"path": "/pricing", "title": "Pricing", "keywords": ["plans"]},
            "customProperties": {"variant": "b"},
        },
        {},
        "/v1/page",
        {
            "type": "page",
            "anonymousId": "anon-7",
            "name": "Pricing",
            "category": "Docs",
            "properties": {
                "name": "Pricing",
                "path": "/pricing",
                "title": "Pricing",
                "keywords": ["plans"],
                "variant": "b",
            },
        },
    ),
    (
        "segment.screen",
        {"userId": "person-1", "name": "Home", "customProperties": {"variation": "blue"}},
        {},
        "/v1/screen",
        {
            "type": "screen",
            "userId": "person-1",
            "name": "Home",
            "properties": {"name": "Home", "variation": "blue"},
        },
    ),
    (
        "segment.alias",
        {"previousId": "{{ visit.anonymousId }}", "userId": "person-1"},
        {"visit": {"anonymousId": "anon-7"}},
        "/v1/alias",
        {"type": "alias", "previousId": "anon-7", "userId": "person-1"},
    ),
    (
        "livelike.track_event",
        {
            "event": "Quest Reward Awarded",
            "userId": "person-1",
            "livelike_profile_id": "{{ livelike.profile }}",
            "quest_id": "q-1",
            "quest_name": "Matchday",
            "reward_item_id": "ri-1",
            "reward_item_name": "Points",
            "reward_item_amount": "50",
            "reward_item_balance": "1250",
            "reward_item_transaction_id": "rt-9",
        },
        {"livelike": {"profile": "lp-5f1c"}},
        "/v1/track",
        {
            "type": "track",
            "event": "Quest Reward Awarded",
            "userId": "person-1",
            "properties": {
                "livelike_profile_id": "lp-5f1c",
                "quest_id": "q-1",
                "quest_name": "Matchday",
                "reward_item_id": "ri-1",
                "reward_item_name": "Points",
                "reward_item_amount": 50,
                "reward_item_balance": 1250,
                "reward_item_transaction_id": "rt-9",
            },
        },
    ),
]


@pytest.mark.parametrize(
    ("module", "parameters", "context", "path", "expected"),
    CASES,
    ids=[case[0] for case in CASES],
)
def test_module_end_to_end(
    engine: connector.Engine,
    sink: Sink,
    connection: dict[str, str],
    module: str,
    parameters: dict[str, Any],
    context: dict[str, Any],
    path: str,
    expected: dict[str, Any],
) -> None:
    bundles = engine.run(module, connection, parameters, context)
    record = only_record(sink)
    assert record["path"] == path
    assert record["method"] == "POST"
    assert record["auth"] == "basic"
    body = record["body"]
    common = {"messageId", "timestamp", "context"}
    assert {k: v for k, v in body.items() if k not in common} == expected
    check_common(body, bundles)
    assert WRITE_KEY not in str(bundles)


@pytest.mark.parametrize(
    ("event", "fields"),
    [
        (
            "Badge Rewarded",
            {
                "badge_id": "b-1",
                "badge_title": "Fan",
                "description": "d",
                "earned_badge_id": "eb-1",
                "image_url": "https://cdn.example/b.png",
                "reward_item_id": "ri-1",
                "reward_item_name": "Points",
                "reward_item_threshold": 500,
            },
        ),
        (
            "Quest Task Completed",
            {
                "quest_id": "q",
                "quest_name": "Q",
                "quest_task_id": "t",
                "quest_task_name": "T",
                "user_quest_id": "uq",
                "user_quest_task_id": "uqt",
            },
        ),
        (
            "Reward Item Rewarded",
            {
                "reward_item_name": "Coins",
                "reward_item_amount": 5,
                "reward_item_balance": 20.5,
                "reward_item_id": "ri-2",
                "reward_item_transaction_id": "rt-1",
            },
        ),
        (
            "User Quest Task Progressed",
            {
                "quest_id": "q",
                "quest_name": "Q",
                "quest_task_id": "t",
                "quest_task_name": "T",
                "quest_task_target_value": 10,
                "user_quest_id": "uq",
                "user_quest_task_id": "uqt",
                "user_quest_task_progress": 0,
            },
        ),
        ("User Quest Completed", {"quest_id": "q", "quest_name": "Q", "user_quest_id": "uq"}),
    ],
)
def test_livelike_events_send_exactly_their_properties(
    engine: connector.Engine,
    sink: Sink,
    connection: dict[str, str],
    event: str,
    fields: dict[str, Any],
) -> None:
    parameters = {"event": event, "anonymousId": "anon-1", "livelike_profile_id": "lp", **fields}
    engine.run("livelike.track_event", connection, parameters)
    body = only_record(sink)["body"]
    assert body["event"] == event
    assert body["properties"] == {"livelike_profile_id": "lp", **fields}


def test_livelike_fields_follow_the_chosen_event(registry: connector.Registry) -> None:
    """describe(): each event's fields are shown exactly when that event is chosen."""
    described = registry.describe("livelike.track_event")
    props = described["parameters"]["properties"]
    shown: dict[str, set[str]] = {}
    for name, prop in props.items():
        when = prop.get("x-shown-when", {}).get("event")
        for value in when if isinstance(when, list) else [when] if when else []:
            shown.setdefault(value, set()).add(name)
    assert shown == {
        "Badge Rewarded": {
            "badge_id",
            "badge_title",
            "description",
            "earned_badge_id",
            "image_url",
            "reward_item_id",
            "reward_item_name",
            "reward_item_threshold",
        },
        "Quest Task Completed": {
            "quest_id",
            "quest_name",
            "quest_task_id",
            "quest_task_name",
            "user_quest_id",
            "user_quest_task_id",
        },
        "Quest Reward Awarded": {
            "quest_id",
            "quest_name",
            "reward_item_name",
            "reward_item_amount",
            "reward_item_balance",
            "reward_item_id",
            "reward_item_transaction_id",
        },
        "Reward Item Rewarded": {
            "reward_item_name",
            "reward_item_amount",
            "reward_item_balance",
            "reward_item_id",
            "reward_item_transaction_id",
        },
        "User Quest Task Progressed": {
            "quest_id",
            "quest_name",
            "quest_task_id",
            "quest_task_name",
            "quest_task_target_value",
            "user_quest_id",
            "user_quest_task_id",
            "user_quest_task_progress",
        },
        "User Quest Completed": {"quest_id", "quest_name", "user_quest_id"},
    }
    numbers = {n for n, p in props.items() if p.get("x-type") == "number"}
    assert numbers == {
        "reward_item_threshold",
        "reward_item_amount",
        "reward_item_balance",
        "quest_task_target_value",
        "user_quest_task_progress",
    }
    assert props["livelike_profile_id"]["x-type"] == "text"
    assert "x-shown-when" not in props["livelike_profile_id"]
    assert described["parameters"]["required"] == ["event", "livelike_profile_id"]


@pytest.mark.parametrize(
    ("module", "parameters", "field"),
    [
        ("segment.group", {"userId": "u"}, "groupId"),
        ("segment.group", {"groupId": "g"}, "userId"),
        (
            "segment.group",
            {"userId": "u", "groupId": "g", "customTraits": {"plan": 1}},
            "customTraits",
        ),
        ("segment.page", {"userId": "u", "customProperties": {"URL": "x"}}, "customProperties"),
        ("segment.screen", {"name": "Home"}, "userId"),
        ("segment.alias", {"userId": "u"}, "previousId"),
        ("segment.alias", {"previousId": "p"}, "userId"),
        ("livelike.track_event", {"userId": "u", "livelike_profile_id": "lp"}, "event"),
        (
            "livelike.track_event",
            {"userId": "u", "event": "Badge Rewarded", "livelike_profile_id": "lp", "x": 1},
            "x",
        ),
    ],
)
def test_bad_input_is_refused_before_sending(
    engine: connector.Engine,
    sink: Sink,
    connection: dict[str, str],
    module: str,
    parameters: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(connector.DataError) as info:
        engine.run(module, connection, parameters)
    assert info.value.field == field
    assert sink.requests_count == 0


def test_new_message_modules_travel_in_segment_batches(
    engine: connector.Engine, sink: Sink, connection: dict[str, str]
) -> None:
    """They are batchable like identify/track: one /v1/batch request for many runs."""
    inputs = [{"userId": f"u{i}", "groupId": "org-1"} for i in range(3)]
    results = list(engine.run_batch("segment.group", connection, inputs))
    assert all(isinstance(r, list) for r in results)
    [record] = sink.received()
    assert record["path"] == "/v1/batch"
    assert [m["userId"] for m in sink.messages()] == ["u0", "u1", "u2"]
    assert {m["type"] for m in sink.messages()} == {"group"}
