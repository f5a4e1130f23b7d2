"""clevertap end to end: Upload Events and Watch Events against the local CleverTap fake
on 127.0.0.1 (tests/fakes/clevertap.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import connector
from connector.errors import (
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    RemoteRuntimeError,
)
from tests.fakes import CleverTapFake
from tests.fakes._server import Reply

UPLOAD = "clevertap.upload_events"
WATCH = "clevertap.watch_events"
ACCOUNT, PASSCODE = "TEST-ACC-123", "CT-PASS-456"


@pytest.fixture
def fake() -> Iterator[CleverTapFake]:
    with CleverTapFake(ACCOUNT, PASSCODE) as running:
        yield running


@pytest.fixture
def conn(fake: CleverTapFake) -> dict[str, str]:
    return fake.connection()


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def test_upload_sends_one_event_record_with_both_secrets_as_headers(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    bundles = engine.run(
        UPLOAD,
        conn,
        {
            "identity": "ada@example.com",
            "evtName": "Product Viewed",
            "ts": "2026-11-25T09:41:15.500Z",
            "evtData": {"Product name": "Casio Chronograph Watch", "Price": 59.99},
        },
    )
    record = {
        "identity": "ada@example.com",
        "ts": 1795599675,
        "type": "event",
        "evtName": "Product Viewed",
        "evtData": {"Product name": "Casio Chronograph Watch", "Price": 59.99},
    }
    assert fake.uploaded == [record]
    (request,) = fake.requests
    assert (request.method, request.path) == ("POST", "/1/upload")
    assert request.headers["x-clevertap-account-id"] == ACCOUNT
    assert request.headers["x-clevertap-passcode"] == PASSCODE
    assert bundles == [{**record, "status": "success", "processed": 1}]


def test_an_unprocessed_record_in_a_200_answer_is_a_data_error(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    fake.faults.append(
        Reply(
            200,
            {
                "status": "success",
                "processed": 0,
                "unprocessed": [{"status": "fail", "code": 512, "error": "Event name is blocked"}],
            },
        )
    )
    with pytest.raises(DataError) as caught:
        engine.run(UPLOAD, conn, {"identity": "u-1", "evtName": "Blocked"})
    assert "Event name is blocked" in caught.value.message
    assert PASSCODE not in str(caught.value.to_dict())


def test_the_fakes_own_refusal_reaches_the_builder(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    """Not a made-up answer: the fake refuses a negative ts, and the run says why."""
    with pytest.raises(DataError) as caught:
        engine.run(UPLOAD, conn, {"identity": "u-1", "evtName": "E", "ts": -5})
    assert "ts must be epoch seconds" in caught.value.message
    assert fake.uploaded == []


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"evtName": "E"}, "identity"),
        ({"identity": "u-1"}, "evtName"),
        ({"identity": "u-1", "evtName": "E", "ts": "not a date"}, "ts"),
        ({"identity": "u-1", "evtName": "E", "evtData": "[1, 2]"}, "evtData"),
    ],
)
def test_bad_input_is_refused_before_sending(
    engine: connector.Engine,
    fake: CleverTapFake,
    conn: dict[str, str],
    parameters: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(DataError) as caught:
        engine.run(UPLOAD, conn, parameters)
    assert caught.value.field == field
    assert fake.requests == []


def test_wrong_passcode_is_refused_and_never_shown(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    with pytest.raises(InvalidAccessTokenError) as caught:
        engine.run(UPLOAD, {**conn, "passcode": "CT-WRONG-999"}, {"identity": "u", "evtName": "E"})
    assert "CT-WRONG-999" not in str(caught.value.to_dict())


@pytest.mark.parametrize("region", ["us1", "eu1", "in1", "sg1", "aps3", "mec1"])
def test_region_picks_the_base_url(engine: connector.Engine, region: str) -> None:
    request = engine.dry_run(
        UPLOAD,
        {"accountId": "acc-secret-1", "passcode": "pass-secret-2", "region": region},
        {"identity": "u", "evtName": "E"},
    )
    assert request["url"] == f"https://{region}.api.clevertap.com/1/upload"
    assert "acc-secret-1" not in str(request) and "pass-secret-2" not in str(request)


def test_watch_reads_every_cursor_page_and_hands_over_new_events_once(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    now = _now()
    for i in range(5):
        fake.add_event("Charged", f"u-{i}", now - timedelta(minutes=10 - i), {"Amount": i})
    fake.add_event("App Launched", "u-9", now - timedelta(minutes=5))
    params = {"eventName": "Charged", "batchSize": 2, "start": "all"}
    bundles, state = engine.poll(WATCH, conn, params)
    assert [b["identity"] for b in bundles] == [f"u-{i}" for i in range(5)]
    assert bundles[0] == {
        "eventName": "Charged",
        "identity": "u-0",
        "ts": (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "event_props": {"Amount": 0},
        "profile": {"identity": "u-0", "platform": "Web"},
    }
    # One POST for the cursor, then GETs until no next_cursor (5 records, 2 a page).
    asked = [(r.method, r.query.get("batch_size"), "cursor" in r.query) for r in fake.requests]
    assert asked == [("POST", "2", False)] + [("GET", None, True)] * 3
    first = fake.requests[0].json()
    assert first["event_name"] == "Charged" and first["to"] == int(now.strftime("%Y%m%d"))

    fake.requests.clear()
    nothing, same = engine.poll(WATCH, conn, params, state)
    assert nothing == [] and same == state
    # The next poll asks from the day of the last event handed over.
    assert fake.requests[0].json()["from"] == int((now - timedelta(minutes=6)).strftime("%Y%m%d"))

    fake.add_event("Charged", "u-new", now, {"Amount": 99})
    fresh, _ = engine.poll(WATCH, conn, params, state)
    assert [(b["identity"], b["event_props"]) for b in fresh] == [("u-new", {"Amount": 99})]


def test_watch_first_poll_from_now_sends_nothing(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    fake.add_event("Charged", "u-old", _now() - timedelta(minutes=1))
    bundles, state = engine.poll(WATCH, conn, {"eventName": "Charged"})
    assert bundles == [] and fake.requests == [] and state["since"]


def test_watch_fails_on_a_failed_status_and_keeps_no_state(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    fake.faults.append(Reply(200, {"status": "fail", "error": "Event name not found"}))
    with pytest.raises(RemoteRuntimeError) as caught:
        engine.poll(WATCH, conn, {"eventName": "Nope", "start": "all"})
    assert "Event name not found" in caught.value.message


def test_default_region_is_clevertaps_default_europe(engine: connector.Engine) -> None:
    request = engine.dry_run(
        UPLOAD, {"accountId": "a", "passcode": "p"}, {"identity": "u", "evtName": "E"}
    )
    assert request["url"] == "https://eu1.api.clevertap.com/1/upload"


def test_watch_asks_for_days_in_the_account_time_zone(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str]
) -> None:
    """A state at 2026-11-25T20:00Z is already the 26th in Kolkata (UTC+5:30): the query
    asks from the 26th there."""
    state = {"module": WATCH, "since": "2026-11-25T20:00:00Z", "ids": []}
    engine.poll(WATCH, {**conn, "timezone": "Asia/Kolkata"}, {"eventName": "Charged"}, state)
    assert fake.requests[0].json()["from"] == 20261126
    fake.requests.clear()
    engine.poll(WATCH, conn, {"eventName": "Charged"}, state)
    assert fake.requests[0].json()["from"] == 20261125


@pytest.mark.parametrize("zone", ["Europe", "x" * 300, "Mars/Olympus", "../etc/passwd"])
def test_a_bad_account_time_zone_is_a_configuration_error_naming_the_field(
    engine: connector.Engine, fake: CleverTapFake, conn: dict[str, str], zone: str
) -> None:
    bad = {**conn, "timezone": zone}
    with pytest.raises(InvalidConfigurationError) as caught:
        engine.dry_run(UPLOAD, bad, {"identity": "u", "evtName": "E"})
    assert caught.value.field == "timezone"
    assert "'timezone'" in caught.value.message and "IANA time zone" in caught.value.message
    with pytest.raises(InvalidConfigurationError) as polled:
        engine.poll(WATCH, bad, {"eventName": "Charged"}, None)
    assert polled.value.field == "timezone"
    assert fake.requests == []
