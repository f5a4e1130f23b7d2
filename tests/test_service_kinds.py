"""The seam for polling triggers, dynamic options and connection checks.

The routes are mounted only when the engine has ``poll``, ``options`` and ``verify``
(issue 12's capabilities). Here an engine subclass stands in for them (a unit test: it
records what it was given and answers from a script), so what the *service* owns is
tested: the routes appear in the document and in ``GET /v1``, the poll state is kept
per trigger and saved only after a successful poll, ``reset`` forgets it, and errors
map as everywhere else."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import connector
from connector.errors import RemoteConnectionError
from connector.runs.poll import PollResult
from connector.service import ServiceState, create_app
from tests.fakeapi import FakeAPI
from tests.test_service_support import SHARED_SECRET, TOKEN, WRITE_KEY

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _arguments(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name, bound by the real :class:`connector.Engine`
    method's signature: the scripted engine takes whatever the engine takes, without a
    copy of its signatures, and a service calling it the wrong way fails here."""
    bound = inspect.signature(method).bind(None, *args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


class _KindsEngine(connector.Engine):
    """An engine with the three capabilities, scripted."""

    def __init__(self, registry: connector.Registry) -> None:
        super().__init__(registry)
        self.polled: list[Any] = []
        self.fail_next = False

    def poll(self, *args: Any, **kwargs: Any) -> PollResult:
        state = _arguments(connector.Engine.poll, args, kwargs)["state"]
        self.polled.append(state)
        if self.fail_next:
            self.fail_next = False
            raise RemoteConnectionError("the remote did not answer")
        seen = int((state or {}).get("seen", 0))
        return PollResult([{"n": seen + 1}], {"seen": seen + 1})

    def options(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        call = _arguments(connector.Engine.options, args, kwargs)
        connection, field = call["connection"], call["field"]
        assert connection is not None and connection["writeKey"] == WRITE_KEY
        return [{"label": f"{field} one", "value": 1}, {"label": f"{field} two", "value": 2}]

    def verify(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        connection = _arguments(connector.Engine.verify, args, kwargs)["connection"]
        assert connection is not None and connection["writeKey"] == WRITE_KEY
        return {"ok": True, "account": "acme"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, _KindsEngine]]:
    registry = connector.load()
    engine = _KindsEngine(registry)
    state = ServiceState.open(
        tmp_path, registry, engine=engine, environ={"CONNECTOR_API_TOKEN": TOKEN}
    )
    with TestClient(create_app(state), headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http, engine
    state.close()


def _connection(http: TestClient) -> str:
    values = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9", "sharedSecret": SHARED_SECRET}
    return str(http.post("/v1/connections", json={"app": "segment", "values": values}).json()["id"])


def test_the_routes_exist_only_with_the_capabilities(
    client: tuple[TestClient, _KindsEngine], tmp_path: Path
) -> None:
    http, _ = client
    paths = http.get("/openapi.json").json()["paths"]
    assert {
        "/v1/modules/{module_id}/poll",
        "/v1/modules/{module_id}/options/{field}",
        "/v1/apps/{app}/verify",
    } <= set(paths)
    assert http.get("/v1").json()["capabilities"] == ["poll", "options", "verify"]
    plain = ServiceState.open(
        tmp_path / "plain", connector.load(), environ={"CONNECTOR_API_TOKEN": TOKEN}
    )
    try:
        plain_paths = TestClient(create_app(plain)).get("/openapi.json").json()["paths"]
    finally:
        plain.close()
    if not callable(getattr(connector.Engine, "poll", None)):
        assert not any("/poll" in p or "/verify" in p for p in plain_paths)


def test_poll_state_is_kept_per_trigger_and_saved_only_after_success(
    client: tuple[TestClient, _KindsEngine],
) -> None:
    http, engine = client
    connection = _connection(http)

    def poll(**extra: Any) -> Any:
        return http.post(
            "/v1/modules/segment.track/poll",
            json={"connection": connection, "parameters": {"a": 1}, **extra},
        )

    assert poll().json() == {"bundles": [{"n": 1}]}
    assert poll().json() == {"bundles": [{"n": 2}]}
    assert engine.polled == [None, {"seen": 1}]
    # Another trigger (other parameters or a name) has its own state.
    other = http.post(
        "/v1/modules/segment.track/poll",
        json={"connection": connection, "parameters": {"a": 2}},
    )
    assert other.json() == {"bundles": [{"n": 1}]}
    assert poll(trigger="named").json() == {"bundles": [{"n": 1}]}
    # A failed poll keeps the state it had.
    engine.fail_next = True
    failed = poll()
    assert failed.status_code == 502
    assert failed.json()["error"]["type"] == "ConnectionError"
    assert poll().json() == {"bundles": [{"n": 3}]}
    assert poll(reset=True).json() == {"bundles": [{"n": 1}]}


def test_options_and_verify(client: tuple[TestClient, _KindsEngine]) -> None:
    http, _ = client
    connection = _connection(http)
    options = http.post("/v1/modules/segment.track/options/event", json={"connection": connection})
    assert options.json() == {
        "options": [{"label": "event one", "value": 1}, {"label": "event two", "value": 2}]
    }
    verified = http.post("/v1/apps/segment/verify", json={"connection": connection})
    assert verified.json() == {"ok": True, "account": "acme"}
    unknown = http.post("/v1/apps/nope/verify", json={"connection": connection})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "app"
    missing = http.post("/v1/apps/segment/verify", json={"connection": "conn_missing"})
    assert missing.status_code == 404


# -- end to end, with the engine's real capabilities (issue 12) ------------------------

needs_kinds = pytest.mark.skipif(
    not callable(getattr(connector.Engine, "poll", None)),
    reason="the engine has no poll/options/verify yet",
)


def _record(n: int, ts: int) -> dict[str, Any]:
    return {"id": f"r{n}", "event": "Charged", "ts": ts, "profile": {"identity": f"u{n}"}}


@needs_kinds
def test_poll_options_and_verify_over_http_against_the_fake_api(
    tmp_path: Path, fake_api: FakeAPI, fakeapi_registry: connector.Registry
) -> None:
    from tests.fakeapi import PASSCODE
    from tests.test_service_support import served

    registry = fakeapi_registry
    data = tmp_path / "data"
    with served(data, registry=registry) as service:
        http = service.client
        created = http.post(
            "/v1/connections", json={"app": "fakeapi", "values": fake_api.connection()}
        )
        assert created.status_code == 201, created.text
        connection = created.json()["id"]
        assert PASSCODE not in created.text
        assert set(http.get("/v1").json()["capabilities"]) == {"poll", "options", "verify"}

        assert http.post("/v1/apps/fakeapi/verify", json={"connection": connection}).json() == {
            "ok": True
        }
        refused = http.post(
            "/v1/apps/fakeapi/verify",
            json={"connection": fake_api.connection(passcode="wrong-passcode-1")},
        )
        assert refused.status_code == 502
        assert (refused.json()["error"]["type"], refused.json()["error"]["origin"]) == (
            "InvalidAccessTokenError",
            "upstream",
        )
        assert "wrong-passcode-1" not in refused.text

        fake_api.state.channels = {"t1": [{"id": "c1", "name": "general"}]}
        options = http.post(
            "/v1/modules/fakeapi.send_message/options/channel",
            json={"connection": connection, "parameters": {"team": "t1"}},
        )
        assert options.json() == {"options": [{"label": "#general", "value": "c1"}]}

        d1, d2, d3 = 20260301090000, 20260301100000, 20260302080000
        fake_api.state.records.extend(
            [_record(3, d3), _record(1, d1), _record(2, d2), _record(4, d3 + 1)]
        )
        parameters = {"eventName": "Charged", "start": "all", "limit": 2}
        body = {"connection": connection, "parameters": parameters}

        def ids(**extra: Any) -> list[str]:
            answer = http.post("/v1/modules/fakeapi.watch_records/poll", json={**body, **extra})
            assert answer.status_code == 200, answer.text
            return [b["id"] for b in answer.json()["bundles"]]

        assert ids() == ["r1", "r2"]
        assert ids() == ["r3", "r4"]
    # The state is the service's: kept across a restart.
    with served(data, registry=registry) as service:
        http = service.client
        assert ids() == []
        fake_api.state.records.append(_record(5, d3 + 2))
        assert ids() == ["r5"]
        assert ids(reset=True) == ["r1", "r2"]
