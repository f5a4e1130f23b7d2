"""segment_profiles end to end: the Profile API's traits, events and new events, against
the local fake on 127.0.0.1 (tests/fakes/profiles.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

import connector
from connector.errors import DataError, InvalidAccessTokenError
from tests.fakes import ProfilesFake

SEARCH_TRAITS = "segment_profiles.get_traits"
LIST_EVENTS = "segment_profiles.list_events"
WATCH = "segment_profiles.watch_events"
USER = "user_id:u-1"
PROFILE_PATH = "/v1/spaces/spa_test/collections/users/profiles/user_id:u-1"


def _at(minutes: int) -> str:
    return f"2026-11-25T{minutes // 60:02d}:{minutes % 60:02d}:00.000Z"


def _event(i: int, minute: int | None = None) -> dict[str, Any]:
    return {
        "message_id": f"m-{i:03d}",
        "timestamp": _at(i if minute is None else minute),
        "type": "track",
        "event": "Order Completed" if i % 2 else "Product Viewed",
        "properties": {"i": i},
    }


@pytest.fixture
def fake() -> Iterator[ProfilesFake]:
    with ProfilesFake() as running:
        yield running


@pytest.fixture
def conn(fake: ProfilesFake) -> dict[str, str]:
    return {"accessToken": fake.token, "spaceId": fake.space, "host": fake.url}


def test_get_traits_follows_every_page_and_merges_them(
    engine: connector.Engine, fake: ProfilesFake, conn: dict[str, str]
) -> None:
    traits = {f"trait_{i:02d}": i for i in range(25)} | {"email": "ada@example.com"}
    fake.add_profile(USER, traits)
    bundles = engine.run(SEARCH_TRAITS, conn, {"externalId": USER, "pageSize": 10})
    assert bundles == [traits]
    pages = [r for r in fake.requests if r.path == PROFILE_PATH + "/traits"]
    assert [r.query.get("next") for r in pages] == [None, "10", "20"]
    assert all(r.query["limit"] == "10" for r in pages)
    # The token is the Basic user name with an empty password.
    expected = "Basic " + base64.b64encode(f"{fake.token}:".encode()).decode()
    assert {r.headers["authorization"] for r in pages} == {expected}


def test_get_traits_include_and_accounts_collection(
    engine: connector.Engine, fake: ProfilesFake, conn: dict[str, str]
) -> None:
    fake.add_profile(
        "group_id:acme", {"plan": "pro", "seats": 12, "mrr": 900}, collection="accounts"
    )
    bundles = engine.run(
        SEARCH_TRAITS,
        conn,
        {"externalId": "group_id:acme", "collection": "accounts", "include": ["plan", "seats"]},
    )
    assert bundles == [{"plan": "pro", "seats": 12}]
    assert fake.requests[-1].query["include"] == "plan,seats"
    assert "/collections/accounts/" in fake.requests[-1].path


def test_list_events_newest_first_at_most_limit_across_pages(
    engine: connector.Engine, fake: ProfilesFake, conn: dict[str, str]
) -> None:
    fake.add_profile(USER, {}, [_event(i) for i in range(150)])
    bundles = engine.run(LIST_EVENTS, conn, {"externalId": USER, "limit": 120})
    assert [b["message_id"] for b in bundles] == [f"m-{i:03d}" for i in range(149, 29, -1)]
    assert set(bundles[0]) == {"message_id", "timestamp", "type", "event", "properties"}
    pages = [r for r in fake.requests if r.path.endswith("/events")]
    assert [(r.query["limit"], r.query.get("next")) for r in pages] == [
        ("100", None),
        ("100", "100"),
    ]


def test_unknown_profile_is_a_data_error_naming_external_id(
    engine: connector.Engine, fake: ProfilesFake, conn: dict[str, str]
) -> None:
    for module in (SEARCH_TRAITS, LIST_EVENTS):
        with pytest.raises(DataError) as caught:
            engine.run(module, conn, {"externalId": "user_id:nobody"})
        assert caught.value.field == "externalId"
        assert caught.value.status == 404
        assert "no such profile" in caught.value.message
        # The message quotes the request as sent: the id is percent-encoded in its path.
        assert "/profiles/user_id%3Anobody/" in caught.value.message


def test_bad_token_is_refused_and_never_shown(
    engine: connector.Engine, fake: ProfilesFake, conn: dict[str, str]
) -> None:
    fake.add_profile(USER, {"a": 1})
    with pytest.raises(InvalidAccessTokenError) as caught:
        engine.run(SEARCH_TRAITS, {**conn, "accessToken": "pat_wrong_secret"}, {"externalId": USER})
    assert "pat_wrong_secret" not in str(caught.value.to_dict())


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({}, "externalId"),
        ({"externalId": "u-1"}, "externalId"),  # no type: prefix
        ({"externalId": USER, "collection": "groups"}, "collection"),
        ({"externalId": USER, "pageSize": 500}, "pageSize"),
    ],
)
def test_bad_input_is_refused_before_sending(
    engine: connector.Engine,
    fake: ProfilesFake,
    conn: dict[str, str],
    parameters: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(DataError) as caught:
        engine.run(SEARCH_TRAITS, conn, parameters)
    assert caught.value.field == field
    assert fake.requests == []


def test_region_picks_the_base_url(engine: connector.Engine) -> None:
    conn = {"accessToken": "t", "spaceId": "spa_1"}
    us = engine.dry_run(SEARCH_TRAITS, conn, {"externalId": USER})
    eu = engine.dry_run(SEARCH_TRAITS, {**conn, "region": "eu"}, {"externalId": USER})
    assert us["url"].startswith("https://profiles.segment.com/v1/spaces/spa_1/")
    assert eu["url"].startswith("https://profiles.euw1.segment.com/v1/spaces/spa_1/")


def test_watch_events_hands_over_only_new_events_oldest_first(
    engine: connector.Engine, fake: ProfilesFake, conn: dict[str, str]
) -> None:
    fake.add_profile(USER, {}, [_event(i) for i in range(5)])
    params = {"externalId": USER, "start": "all"}
    first, state = engine.poll(WATCH, conn, params)
    assert [b["message_id"] for b in first] == [f"m-{i:03d}" for i in range(5)]
    again, same = engine.poll(WATCH, conn, params, state)
    assert again == [] and same == state
    fake.add_event(USER, _event(7))
    fake.add_event(USER, _event(6))
    fresh, later = engine.poll(WATCH, conn, params, state)
    assert [b["message_id"] for b in fresh] == ["m-006", "m-007"]
    assert later["ids"] == ["m-007"]


def test_watch_events_stops_paging_once_past_the_last_poll(
    engine: connector.Engine, fake: ProfilesFake, conn: dict[str, str]
) -> None:
    """Events come newest first: once a page reaches back before the state's date, older
    pages hold nothing new, so they are not read."""
    fake.add_profile(USER, {}, [_event(i) for i in range(250)])
    _, state = engine.poll(WATCH, conn, {"externalId": USER, "start": "all", "limit": 1000})
    fake.requests.clear()
    fake.add_event(USER, {**_event(999, minute=300), "message_id": "m-new"})
    fresh, _ = engine.poll(WATCH, conn, {"externalId": USER}, state)
    assert [b["message_id"] for b in fresh] == ["m-new"]
    # 251 events: three pages, but the first already reaches back past the state.
    assert state["since"] == "2026-11-25T04:09:00Z"
    assert len(fake.requests) == 1
