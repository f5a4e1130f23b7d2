"""Polling triggers: state, where to start, oldest first, at most ``limit``, the rest in
the next poll, nothing skipped or twice; against the fixture app's CleverTap-like
events API (a POST opens a cursor, GETs read the pages) on 127.0.0.1."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connector
from connector.errors import RunError
from connector.runs.poll import digest_id
from connector.tools.cli_kinds import lock_path
from tests.conftest import run_cli
from tests.fakeapi import APP_DIR, FakeAPI, FakeState, route

MODULE = "fakeapi.watch_records"


def record(n: int, ts: int, event: str = "Charged") -> dict[str, Any]:
    return {"id": f"r{n}", "event": event, "ts": ts, "profile": {"identity": f"u{n}"}}


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
    fake_api: FakeAPI,
    fakeapi_registry: connector.Registry,
    parameters: dict[str, Any],
    steps: list[tuple[list[dict[str, Any]], list[str]]],
) -> None:
    """Each step: records added before the poll, and the ids the poll must give."""
    parameters = {"eventName": "Charged", **parameters}
    state: dict[str, Any] | None = None
    with connector.Engine(fakeapi_registry) as engine:
        for added, expected in steps:
            fake_api.state.records.extend(added)
            bundles, state = engine.poll(MODULE, fake_api.connection(), parameters, state)
            assert [b["id"] for b in bundles] == expected, (added, state)


def test_poll_requests_and_state(fake_api: FakeAPI, fakeapi_registry: connector.Registry) -> None:
    fake_api.state.records = [record(n, D1 + n) for n in range(1, 6)]
    with connector.Engine(fakeapi_registry) as engine:
        first = engine.poll(MODULE, fake_api.connection(), {"eventName": "Charged", "start": "all"})
        assert [b["id"] for b in first.bundles] == ["r1", "r2", "r3", "r4", "r5"]
        assert first.bundles[0] == {"id": "r1", "identity": "u1", "at": "2026-03-01T09:00:01.000Z"}
        assert first.state == {
            "module": MODULE,
            "since": "2026-03-01T09:00:05Z",
            "ids": [digest_id("r5")],
            "idHash": "sha256",
        }
        # The POST opened a cursor; GETs read 3 pages of 2 (mergeWithParent false).
        methods = [(r.method, r.query.get("cursor")) for r in fake_api.sent("/events.json")]
        assert methods == [("POST", None), ("GET", "c-0"), ("GET", "c-1"), ("GET", "c-2")]
        assert fake_api.sent("/events.json")[0].json() == {
            "event_name": "Charged",
            "from": 20000101,
        }
        fake_api.state.received.clear()
        again = engine.poll(MODULE, fake_api.connection(), {"eventName": "Charged"}, first.state)
        assert again.bundles == [] and again.state == first.state
        # The next poll asks the API from the state's day (state.since in the template).
        assert fake_api.sent("/events.json")[0].json()["from"] == 20260301


def test_the_state_keeps_ids_as_digests_never_in_clear(
    fake_api: FakeAPI, fakeapi_registry: connector.Registry
) -> None:
    # An item id may be an email address or a token: the state keeps only its digest.
    secret_ids = ["ada@example.com", "tok_live_5e8d2b", "plain"]
    fake_api.state.records = [{**record(n, D1), "id": i} for n, i in enumerate(secret_ids)]
    with connector.Engine(fakeapi_registry) as engine:
        bundles, state = engine.poll(
            MODULE, fake_api.connection(), {"eventName": "Charged", "start": "all"}
        )
        assert sorted(b["id"] for b in bundles) == sorted(secret_ids)
        assert state["idHash"] == "sha256"
        assert state["ids"] == sorted(digest_id(i) for i in secret_ids)
        text = json.dumps(state)
        assert not any(i in text for i in secret_ids)
        again, same = engine.poll(MODULE, fake_api.connection(), {"eventName": "Charged"}, state)
        assert again == [] and same == state  # the digests keep the comparison exact


@pytest.mark.parametrize(
    ("legacy_ids", "expected"),
    [
        (["r1", "r2"], ["r3"]),  # both handed over at that date: only r3 is new
        (["r1"], ["r2", "r3"]),
        ([], ["r1", "r2", "r3"]),
    ],
)
def test_a_state_written_before_with_raw_ids_still_works(
    fake_api: FakeAPI,
    fakeapi_registry: connector.Registry,
    legacy_ids: list[str],
    expected: list[str],
) -> None:
    fake_api.state.records = [record(1, D1), record(2, D1), record(3, D1)]
    legacy = {"module": MODULE, "since": "2026-03-01T09:00:00Z", "ids": legacy_ids}
    with connector.Engine(fakeapi_registry) as engine:
        bundles, state = engine.poll(
            MODULE, fake_api.connection(), {"eventName": "Charged"}, legacy
        )
    assert [b["id"] for b in bundles] == expected
    assert state["ids"] == sorted(digest_id(f"r{n}") for n in (1, 2, 3))
    assert state["idHash"] == "sha256"


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
        (
            {"eventName": "E"},
            {"since": "2026-03-01T09:00:00Z", "ids": [], "idHash": "md5"},
            "InvalidConfigurationError",
            "state",
        ),
    ],
)
def test_poll_bad_input_sends_nothing(
    fake_api: FakeAPI,
    fakeapi_registry: connector.Registry,
    parameters: dict[str, Any],
    state: dict[str, Any] | None,
    error: str,
    field: str,
) -> None:
    with connector.Engine(fakeapi_registry) as engine, pytest.raises(RunError) as info:
        engine.poll(MODULE, fake_api.connection(), parameters, state)
    assert (info.value.type, info.value.field) == (error, field)
    assert fake_api.state.received == []


def test_poll_is_not_run(fake_api: FakeAPI, fakeapi_registry: connector.Registry) -> None:
    with connector.Engine(fakeapi_registry) as engine, pytest.raises(RunError) as info:
        engine.run(MODULE, fake_api.connection(), {"eventName": "E"})
    assert "poll" in info.value.message


def test_describe_lists_the_engine_parameters(fakeapi_registry: connector.Registry) -> None:
    described = fakeapi_registry.describe(MODULE)
    props = described["parameters"]["properties"]
    assert props["start"]["enum"] == ["now", "all", "since"]
    assert props["since"]["x-shown-when"] == {"start": "since"}
    assert props["limit"]["default"] == 100
    assert described["kind"] == "trigger" and "poll" in described


def test_poll_cli_state_file(fake_api: FakeAPI, tmp_path: Path) -> None:
    fake_api.state.records = [record(1, D1), record(2, D2), record(3, D3)]
    state = tmp_path / "state" / "watch.json"
    args = [
        "poll",
        MODULE,
        "-c",
        json.dumps(fake_api.connection()),
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
    assert saved["ids"] == [digest_id("r2")] and "r2" not in state.read_text()
    done = run_cli(*args)
    assert [b["id"] for b in json.loads(done.stdout)] == ["r3"]
    after_second = state.read_text()
    # A failing poll (bad credentials) prints the error and leaves the state as it was.
    bad = list(args)
    bad[3] = json.dumps(fake_api.connection(passcode="wrong-wrong-wrong"))
    done = run_cli(*bad)
    assert done.returncode == 1
    assert json.loads(done.stderr)["error"]["type"] == "InvalidAccessTokenError"
    assert state.read_text() == after_second
    # No temporary file left; the lock file stays, for the next poll to lock.
    assert sorted(p.name for p in state.parent.iterdir()) == ["watch.json", "watch.json.lock"]


# -- the property: over any sequence of polls, every item once, in date order ------------


CONN = {"accountId": "acct-7f3a9c21", "passcode": "pass-Secret-5e8d2b", "workspace": "w"}


def _mock_engine(fakeapi_registry: connector.Registry, state: FakeState) -> connector.Engine:
    """The fake API's routes behind httpx's mock transport (no sockets: hundreds of
    polls per example), the signature check left to the end-to-end tests above."""
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        query = {k: v for k, v in request.url.params.items()}
        status, answer = route(state, request.method, request.url.path, query, body)
        return httpx.Response(status, json=answer)

    client = httpx.Client(transport=httpx.MockTransport(handle))
    return connector.Engine(fakeapi_registry, client=client)


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
    fakeapi_registry: connector.Registry, waves: list[tuple[list[int], int]]
) -> None:
    state = FakeState()
    newest = 0  # seconds after 2026-03-01T00:00:00Z
    handed: list[str] = []
    saved: dict[str, Any] | None = None
    params = {"eventName": "Charged", "start": "all"}
    with _mock_engine(fakeapi_registry, state) as engine:
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


def _poll_args(fake_api: FakeAPI, state: Path) -> list[str]:
    return [
        "poll",
        MODULE,
        "-c",
        json.dumps(fake_api.connection()),
        "-p",
        '{"eventName": "Charged", "start": "all"}',
        "--state",
        str(state),
        "--manifests",
        str(APP_DIR),
        "--no-packaged",
    ]


def _try_lock(path: Path) -> bool:
    """Whether this process could take the poll's lock on ``path`` now."""
    descriptor = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)  # releases it again
    return True


def test_a_poll_holds_the_state_lock_while_it_sends(fake_api: FakeAPI, tmp_path: Path) -> None:
    fake_api.state.records = [record(1, D1)]
    state = tmp_path / "watch.json"
    free_while_sending: list[bool] = []
    fake_api.state.on_request = lambda _: free_while_sending.append(_try_lock(state))
    done = run_cli(*_poll_args(fake_api, state))
    assert done.returncode == 0, done.stderr
    assert free_while_sending and not any(free_while_sending)  # held for every request
    assert _try_lock(state)  # and released at the end


def test_a_second_poll_of_the_same_state_fails_and_sends_nothing(
    fake_api: FakeAPI, tmp_path: Path
) -> None:
    fake_api.state.records = [record(1, D1), record(2, D2)]
    state = tmp_path / "watch.json"
    state.write_text(json.dumps({"module": MODULE, "since": None, "ids": []}))
    before = state.read_text()
    # Another poll holds the lock (as a running `connector poll` does).
    descriptor = os.open(lock_path(state), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        done = run_cli(*_poll_args(fake_api, state))
    finally:
        os.close(descriptor)
    assert done.returncode == 1
    error = json.loads(done.stderr)["error"]
    assert error["field"] == "--state" and "another poll is using" in error["message"]
    assert done.stdout == "" and fake_api.state.received == [] and state.read_text() == before
    done = run_cli(*_poll_args(fake_api, state))  # once the other has finished
    assert done.returncode == 0, done.stderr
    assert [b["id"] for b in json.loads(done.stdout)] == ["r1", "r2"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"since": ' + "9" * 5000 + "}", "cannot be read"),  # over Python's digit limit
        ("[" * 100_000 + "]" * 100_000, "cannot be read"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (b"\xff\xfe".decode("latin-1"), "is not JSON"),
    ],
)
def test_an_unreadable_state_file_is_a_usage_error_naming_state(
    fake_api: FakeAPI, tmp_path: Path, text: str, reason: str
) -> None:
    state = tmp_path / "watch.json"
    state.write_text(text)
    done = run_cli(*_poll_args(fake_api, state))
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stderr)["error"]
    assert error["field"] == "--state" and reason in error["message"]
    assert "unexpected" not in error["message"]
    assert fake_api.state.received == [] and state.read_text() == text
