"""Retry policy and remote error mapping (unit tests over httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx
import pytest

import connector
from connector.core.transport import error_for_status, parse_retry_after, retry_delay
from connector.errors import (
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    RateLimitError,
    RemoteConnectionError,
    RemoteRuntimeError,
)
from connector.format.manifest import RetrySpec
from tests.conftest import FAST_RETRY, WRITE_KEY

POLICY = RetrySpec(attempts=4, backoff=1.0, maxBackoff=8.0)


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (413, False),
        (422, False),
        (501, False),
        (505, False),
        (None, True),
    ],
)
def test_which_failures_are_retried(status: int | None, retried: bool) -> None:
    delay = retry_delay(POLICY, 1, status=status, retry_after=None, rng=lambda: 0.5)
    assert (delay is not None) is retried


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    ceilings = [
        retry_delay(POLICY, n, status=500, retry_after=None, rng=lambda: 1.0) for n in (1, 2, 3)
    ]
    assert ceilings == [1.0, 2.0, 4.0]
    assert retry_delay(POLICY, 2, status=500, retry_after=None, rng=lambda: 0.0) == 0.0
    capped = RetrySpec(attempts=10, backoff=1.0, maxBackoff=3.0)
    assert retry_delay(capped, 8, status=500, retry_after=None, rng=lambda: 1.0) == 3.0
    assert retry_delay(POLICY, 4, status=500, retry_after=None) is None  # attempts used up


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), ("0", 0.0), ("1000", 8.0), ("-5", 0.0), ("soon", None)],
)
def test_retry_after_seconds_is_honoured_and_capped(header: str, expected: float | None) -> None:
    delay = retry_delay(POLICY, 1, status=429, retry_after=header, rng=lambda: 0.25)
    assert delay == (expected if expected is not None else 0.25)


def test_retry_after_http_date() -> None:
    now = time.time()
    header = email.utils.formatdate(now + 5, usegmt=True)
    assert parse_retry_after(header, now=now) == pytest.approx(5, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 50, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, DataError),
        (401, InvalidAccessTokenError),
        (403, InvalidAccessTokenError),
        (404, InvalidConfigurationError),
        (413, DataError),
        (422, DataError),
        (429, RateLimitError),
        (408, RemoteConnectionError),
        (418, DataError),
        (500, RemoteRuntimeError),
        (503, RemoteRuntimeError),
    ],
)
def test_status_mapping(status: int, cls: type) -> None:
    assert error_for_status(status, {}) is cls


def test_app_can_override_status_mapping() -> None:
    assert error_for_status(404, {"404": "DataError"}) is DataError


def engine_with(registry: connector.Registry, handler: object) -> connector.Engine:
    client = httpx.Client(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return connector.Engine(registry, client=client, retry=FAST_RETRY)


def test_network_errors_are_retried_with_the_same_body(registry: connector.Registry) -> None:
    bodies: list[bytes] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        if len(bodies) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"success": True})

    with engine_with(registry, flaky) as engine:
        engine.run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    assert len(bodies) == 3
    assert bodies[0] == bodies[1] == bodies[2]


def test_timeouts_become_connection_errors(registry: connector.Registry) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with engine_with(registry, slow) as engine, pytest.raises(RemoteConnectionError) as info:
        engine.run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    assert info.value.attempts == FAST_RETRY.attempts
    assert "timed out" in info.value.message


def test_rate_limit_error_after_429s(registry: connector.Registry) -> None:
    calls = []

    def limited(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, headers={"Retry-After": "0"}, json={"error": "slow down"})

    with engine_with(registry, limited) as engine, pytest.raises(RateLimitError) as info:
        engine.run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    assert len(calls) == FAST_RETRY.attempts
    assert "429" in info.value.message and "slow down" in info.value.message


def test_timeout_is_set_on_requests(registry: connector.Registry) -> None:
    seen = {}

    def capture(request: httpx.Request) -> httpx.Response:
        seen.update(request.extensions["timeout"])
        return httpx.Response(200, json={"success": True})

    with engine_with(registry, capture) as engine:
        engine.run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    assert seen["read"] == registry.apps["segment"].manifest.timeout


def test_async_retries_like_sync(registry: connector.Registry) -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503 if len(calls) == 1 else 200, json={"success": True})

    async def go() -> None:
        client = httpx.AsyncClient(transport=httpx.MockTransport(flaky))
        async with connector.Engine(registry, async_client=client, retry=FAST_RETRY) as engine:
            await engine.arun(
                "segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"}
            )
        await client.aclose()

    asyncio.run(go())
    assert len(calls) == 2


def test_engine_reuses_one_client(registry: connector.Registry) -> None:
    with connector.Engine(registry) as engine:
        assert engine.client is engine.client


@pytest.mark.parametrize("status", [501, 505])
def test_permanent_5xx_answers_are_not_retried_nor_stored(
    registry: connector.Registry, tmp_path: Any, status: int
) -> None:
    """Issue 10: 501 and 505 were stored as retryable incomplete executions."""
    from connector.runs.incomplete import IncompleteStore

    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, text="no")

    listing = RetrySpec(attempts=3, backoff=0.001, maxBackoff=0.002, statuses=[status, 503])
    store = IncompleteStore(tmp_path / "store.sqlite")
    client = httpx.Client(transport=httpx.MockTransport(answer))
    with (
        connector.Engine(registry, client=client, retry=listing, incomplete=store) as engine,
        pytest.raises(connector.RunError) as info,
    ):
        engine.run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    assert len(sent) == 1  # even a policy that lists it does not retry it
    assert info.value.status == status
    assert info.value.retryable is False
    assert info.value.incomplete_id is None
    assert len(store) == 0
    store.close()


def test_batch_clients_load_the_tls_roots_once_a_process(
    registry: connector.Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run --batch`` makes its clients (one a worker) with one TLS context a process,
    made before the fork: loading the roots costs each new client ~25 ms otherwise. An
    engine's own clients keep a context each, as httpx makes them (httpcore changes a
    context for every connection, so one shared by clients in several threads would be
    changed by several at once)."""
    from connector.core import tls

    made: list[object] = []
    real = httpx.create_ssl_context

    def counting(*args: Any, **kwargs: Any) -> Any:
        context = real(*args, **kwargs)
        made.append(context)
        return context

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    tls.tls_context.cache_clear()
    try:
        clients = [tls.batch_client() for _ in range(3)]
        assert len(made) == 1
        assert made[0].verify_mode.name == "CERT_REQUIRED"  # type: ignore[attr-defined]
        assert made[0].check_hostname  # type: ignore[attr-defined]
        for client in clients:
            client.close()
        tls.tls_context.cache_clear()  # an engine taking it would make it again
        with connector.Engine(registry) as engine:
            assert isinstance(engine.client, httpx.Client)
            assert isinstance(engine.async_client, httpx.AsyncClient)
        assert len(made) == 1
    finally:
        tls.tls_context.cache_clear()
