"""Polling triggers: state, where to start, oldest first, at most ``limit``, the rest in
the next poll, nothing skipped or twice; against the fixture app's CleverTap-like
events API (a POST opens a cursor, GETs read the pages) on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connector
from connector.errors import RunError
from tests.conftest import run_cli
from tests.fakeapi import APP_DIR, FakeAPI, FakeState, route

MODULE = "fakeapi.watch_records"


def record(n: int, ts: int, event: str = "Charged") -> dict[str, Any]:
    return {"id": f"r{n}", "event": event, "ts": ts, "profile": {"identity": f"u{n}"}}


@pytest.fixture(scope="module")
def registry() -> connector.Registry:
    return connector.load(APP_DIR, packaged=False)


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    with FakeAPI() as running:
        yield running


def polls(
    api: FakeAPI,
    registry: connector.Registry,
    parameters: dict[str, Any],
    steps: list[tuple[list[dict[str, Any]], list[str]]],
) -> None:
    """Each step: records added before the poll, and the ids the poll must give."""
    state: dict[str, Any] | None = None
    with connector.Engine(registry) as engine:
        for added, expected in steps:
            api.state.records.extend(added)
            bundles, state = engine.poll(MODULE, api.connection(), parameters, state)
            assert [b["id"] for b in bundles] == expected, (added, state)


D1, D2, D3 = 20260301090000, 20260301100000, 20260302080000

POLL_CASES = [
    (  # all, at most 2 a poll: oldest first, the rest next time, then nothing
        {"start": "all", "limit": 2},
        [
            ([record(3, D3), record(1, D1), record(2, D2), record(4, D3 + 1)], ["r1", "r2"]),
            ([], ["r3", "r4"]),
            ([], []),
        ],
    ),
    (  # items sharing a date, one a poll: told apart by id, none twice, none skipped
        {"start": "all", "limit": 1},
        [
            ([record(1, D1), record(2, D1), record(3, D1)], ["r1"]),
            ([], ["r2"]),
            ([record(4, D1)], ["r3"]),  # arrives at the same date: still not skipped
            ([], ["r4"]),
            ([], []),
        ],
    ),
    (  # since a date: only items after it
        {"start": "since", "since": "2026-03-01T09:30:00Z"},
        [([record(1, D1), record(2, D2), record(3, D3)], ["r2", "r3"]), ([], [])],
    ),
    (  # now: the first poll sends nothing and gives nothing; later items come
        {"start": "now"},
        [([record(1, D1)], []), ([record(2, 20990101000000)], ["r2"]), ([], [])],
    ),
    (  # new items between polls join the remainder, in date order
        {"start": "all", "limit": 2},
        [
            ([record(1, D1), record(2, D2), record(3, D3)], ["r1", "r2"]),
            ([record(4, D3 + 5), record(5, D2 + 5)], ["r5", "r3"]),
            ([], ["r4"]),
        ],
    ),
    (  # other events are not this trigger's
        {"start": "all", "eventName": "Refunded"},
        [([record(1, D1), record(2, D2, "Refunded")], ["r2"])],
    ),
]


@pytest.mark.parametrize(("parameters", "steps"), POLL_CASES)
def test_poll_sequences(
    api: FakeAPI,
    registry: connector.Registry,
    parameters: dict[str, Any],
    steps: list[tuple[list[dict[str, Any]], list[str]]],
) -> None:
    polls(api, registry, {"eventName": "Charged", **parameters}, steps)


def test_poll_requests_and_state(api: FakeAPI, registry: connector.Registry) -> None:
    api.state.records = [record(n, D1 + n) for n in range(1, 6)]
    with connector.Engine(registry) as engine:
        first = engine.poll(MODULE, api.connection(), {"eventName": "Charged", "start": "all"})
        assert [b["id"] for b in first.bundles] == ["r1", "r2", "r3", "r4", "r5"]
        assert first.bundles[0] == {"id": "r1", "identity": "u1", "at": "2026-03-01T09:00:01.000Z"}
        assert first.state == {"module": MODULE, "since": "2026-03-01T09:00:05Z", "ids": ["r5"]}
        # The POST opened a cursor; GETs read 3 pages of 2 (mergeWithParent false).
        methods = [(r.method, r.query.get("cursor")) for r in api.sent("/events.json")]
        assert methods == [("POST", None), ("GET", "c-0"), ("GET", "c-1"), ("GET", "c-2")]
        assert api.sent("/events.json")[0].body == {"event_name": "Charged", "from": 20000101}
        api.state.received.clear()
        again = engine.poll(MODULE, api.connection(), {"eventName": "Charged"}, first.state)
        assert again.bundles == [] and again.state == first.state
        # The next poll asks the API from the state's day (state.since in the template).
        assert api.sent("/events.json")[0].body["from"] == 20260301


@pytest.mark.parametrize(
    ("parameters", "state", "error", "field"),
    [
        ({"eventName": "E", "start": "later"}, None, "DataError", "start"),
        ({"eventName": "E", "start": "since"}, None, "DataError", "since"),
        ({"eventName": "E", "limit": 0}, None, "DataError", "limit"),
        ({}, None, "DataError", "eventName"),
        (
            {"eventName": "E"},
            {"module": "fakeapi.other", "since": None},
            "InvalidConfigurationError",
            "state",
        ),
        ({"eventName": "E"}, {"since": "yesterday"}, "InvalidConfigurationError", "state"),
    ],
)
def test_poll_bad_input_sends_nothing(
    api: FakeAPI,
    registry: connector.Registry,
    parameters: dict[str, Any],
    state: dict[str, Any] | None,
    error: str,
    field: str,
) -> None:
    with connector.Engine(registry) as engine, pytest.raises(RunError) as info:
        engine.poll(MODULE, api.connection(), parameters, state)
    assert (info.value.type, info.value.field) == (error, field)
    assert api.state.received == []


def test_poll_is_not_run(api: FakeAPI, registry: connector.Registry) -> None:
    with connector.Engine(registry) as engine, pytest.raises(RunError) as info:
        engine.run(MODULE, api.connection(), {"eventName": "E"})
    assert "poll" in info.value.message


def test_describe_lists_the_engine_parameters(registry: connector.Registry) -> None:
    described = registry.describe(MODULE)
    props = described["parameters"]["properties"]
    assert props["start"]["enum"] == ["now", "all", "since"]
    assert props["since"]["x-shown-when"] == {"start": "since"}
    assert props["limit"]["default"] == 100
    assert described["kind"] == "trigger" and "poll" in described


def test_poll_cli_state_file(api: FakeAPI, tmp_path: Path) -> None:
    api.state.records = [record(1, D1), record(2, D2), record(3, D3)]
    state = tmp_path / "state" / "watch.json"
    args = [
        "poll",
        MODULE,
        "-c",
        json.dumps(api.connection()),
        "-p",
        '{"eventName": "Charged", "start": "all", "limit": 2}',
        "--state",
        str(state),
        "--manifests",
        str(APP_DIR),
        "--no-packaged",
    ]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    assert [b["id"] for b in json.loads(done.stdout)] == ["r1", "r2"]
    saved = json.loads(state.read_text())
    assert saved["ids"] == ["r2"]
    done = run_cli(*args)
    assert [b["id"] for b in json.loads(done.stdout)] == ["r3"]
    after_second = state.read_text()
    # A failing poll (bad credentials) prints the error and leaves the state as it was.
    bad = list(args)
    bad[3] = json.dumps(api.connection(passcode="wrong-wrong-wrong"))
    done = run_cli(*bad)
    assert done.returncode == 1
    assert json.loads(done.stderr)["error"]["type"] == "InvalidAccessTokenError"
    assert state.read_text() == after_second
    assert [p.name for p in state.parent.iterdir()] == ["watch.json"]  # no temporary left


# -- the property: over any sequence of polls, every item once, in date order ------------


CONN = {"accountId": "acct-7f3a9c21", "passcode": "pass-Secret-5e8d2b", "workspace": "w"}


def _mock_engine(registry: connector.Registry, state: FakeState) -> connector.Engine:
    """The fake API's routes behind httpx's mock transport (no sockets: hundreds of
    polls per example), the signature check left to the end-to-end tests above."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        query = {k: v for k, v in request.url.params.items()}
        status, answer = route(state, request.method, request.url.path, query, body)
        return httpx.Response(status, json=answer)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return connector.Engine(registry, client=client)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    waves=st.lists(
        st.tuples(
            st.lists(st.integers(0, 3), max_size=6),  # new items: date steps (ties likely)
            st.integers(1, 4),  # this poll's limit
        ),
        min_size=1,
        max_size=8,
    )
)
def test_every_item_once_in_date_order(
    registry: connector.Registry, waves: list[tuple[list[int], int]]
) -> None:
    state = FakeState()
    newest = 0  # seconds after 2026-03-01T00:00:00Z
    handed: list[str] = []
    saved: dict[str, Any] | None = None
    params = {"eventName": "Charged", "start": "all"}
    with _mock_engine(registry, state) as engine:
        for steps, limit in waves:
            for step in steps:  # items arrive dated at or after the newest so far
                newest += step
                ts = int(f"20260301{newest // 3600:02d}{newest % 3600 // 60:02d}{newest % 60:02d}")
                state.records.append(record(len(state.records) + 1, ts))
            bundles, saved = engine.poll(
                MODULE, {**CONN, "host": "http://fake.invalid"}, {**params, "limit": limit}, saved
            )
            assert len(bundles) <= limit
            handed += [b["id"] for b in bundles]
        while True:  # drain: later polls hand over the rest, then nothing
            bundles, saved = engine.poll(
                MODULE, {**CONN, "host": "http://fake.invalid"}, {**params, "limit": 4}, saved
            )
            if not bundles:
                break
            handed += [b["id"] for b in bundles]
    expected = [r["id"] for r in sorted(state.records, key=lambda r: (r["ts"], r["id"]))]
    assert sorted(handed) == sorted(expected)  # each once, none skipped
    order = {r["id"]: r["ts"] for r in state.records}
    assert [order[i] for i in handed] == sorted(order[i] for i in handed)  # oldest first
