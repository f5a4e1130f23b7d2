"""Sending: retries with backoff, and remote failures mapped onto Make's error types.

The retry decision is a pure function (:func:`retry_delay`) shared by the sync and async
senders, so both behave the same. What is retried: network errors and timeouts, and the
statuses in the app's retry policy (by default 408, 429, 500, 502, 503, 504). What is
not: every other 4xx, because sending the same bad request again cannot help, and
501/505, which are permanent (never retried even if a policy lists them, and their
errors are not ``retryable``, so no incomplete execution keeps them). ``Retry-After``
(seconds or an HTTP date) is honoured, capped at the policy's ``maxBackoff``. Every
attempt sends the very same request, so a message keeps its ``messageId`` and Segment
deduplicates.

An answer's body is read as it streams in, up to ``max_response_bytes`` (16 MiB by
default, an Engine option) after decoding: a larger one (by its Content-Length, or once
the bytes read pass the limit) is a RuntimeError naming the limit, not a whole read into
memory, and is not retried (the same request would get the same answer).

A failure is never swallowed: after the last attempt the error is raised with the
status, a redacted excerpt of the answer (redacted whole, then cut to 300 characters)
and the number of attempts. The path an error or log line quotes is redacted too.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from connector.core.logs import get_logger
from connector.core.request import PreparedRequest
from connector.errors import (
    ERROR_TYPES,
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    RateLimitError,
    RemoteConnectionError,
    RemoteRuntimeError,
    RunError,
)
from connector.format.manifest import RetrySpec

__all__ = [
    "DEFAULT_STATUS_ERRORS",
    "MAX_RESPONSE_BYTES",
    "PERMANENT_STATUSES",
    "PreparedRequest",
    "Sender",
    "error_for_status",
    "retry_delay",
]

logger = get_logger("connector.core.transport")


async def _asyncio_sleep(seconds: float) -> None:
    """asyncio.sleep, imported when an async run first waits (a synchronous command
    never imports asyncio: ~12 ms of its start-up)."""
    import asyncio

    await asyncio.sleep(seconds)


#: Status -> error class, when the app does not say otherwise.
DEFAULT_STATUS_ERRORS: dict[int, type[RunError]] = {
    400: DataError,
    401: InvalidAccessTokenError,
    403: InvalidAccessTokenError,
    404: InvalidConfigurationError,
    405: InvalidConfigurationError,
    408: RemoteConnectionError,
    413: DataError,
    422: DataError,
    429: RateLimitError,
}


#: The largest answer body read (decoded), unless the Engine is given another.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def _too_large(request: PreparedRequest, limit: int, redact: Callable[[str], str]) -> RunError:
    error = RemoteRuntimeError(
        f"{request.method} {_path(request, redact)} answered with a body over {limit} bytes "
        "(the engine's max_response_bytes); refused rather than read whole"
    )
    error.retryable = False
    return error


class _BoundedBody:
    """A streamed answer's body as it is read, refused past ``limit`` decoded bytes: by
    its declared length before any chunk, else as soon as the chunks pass it. The sync
    and async reads below differ only in how they iterate the chunks."""

    __slots__ = ("_chunks", "_limit", "_redact", "_request", "_response", "_total")

    def __init__(
        self,
        response: httpx.Response,
        limit: int,
        request: PreparedRequest,
        redact: Callable[[str], str],
    ) -> None:
        self._response = response
        self._limit = limit
        self._request = request
        self._redact = redact
        self._chunks: list[bytes] = []
        self._total = 0
        declared = _declared_length(response)
        if declared is not None and declared > limit:
            raise _too_large(request, limit, redact)

    def add(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._total > self._limit:
            raise _too_large(self._request, self._limit, self._redact)
        self._chunks.append(chunk)

    def keep(self) -> None:
        # What httpx's own read() does once it has the decoded bytes: later reads of
        # .content/.text/.json() use them.
        self._response._content = b"".join(self._chunks)


def _declared_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers.get("content-length", ""))
    except ValueError:
        return None


def _read_bounded(
    response: httpx.Response, limit: int, request: PreparedRequest, redact: Callable[[str], str]
) -> None:
    """Read a streamed answer's body, refusing it past ``limit`` decoded bytes."""
    body = _BoundedBody(response, limit, request, redact)
    for chunk in response.iter_bytes():
        body.add(chunk)
    body.keep()


async def _aread_bounded(
    response: httpx.Response, limit: int, request: PreparedRequest, redact: Callable[[str], str]
) -> None:
    """:func:`_read_bounded` for an async answer."""
    body = _BoundedBody(response, limit, request, redact)
    async for chunk in response.aiter_bytes():
        body.add(chunk)
    body.keep()


def error_for_status(status: int, overrides: Mapping[str, str]) -> type[RunError]:
    override = overrides.get(str(status))
    if override is not None:
        return ERROR_TYPES[override]
    if status in DEFAULT_STATUS_ERRORS:
        return DEFAULT_STATUS_ERRORS[status]
    if 400 <= status < 500:
        return DataError
    return RemoteRuntimeError


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def retry_delay(
    policy: RetrySpec,
    attempt: int,
    *,
    status: int | None,
    retry_after: str | None,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None when not to retry.

    ``status`` is None for a network error or timeout. Backoff is exponential with full
    jitter; a server's Retry-After wins over it but is capped at ``maxBackoff``.
    """
    if attempt >= policy.attempts:
        return None
    if status is not None and (status not in policy.statuses or status in PERMANENT_STATUSES):
        return None
    hinted = parse_retry_after(retry_after)
    if hinted is not None:
        return min(hinted, policy.max_backoff)
    ceiling = min(policy.max_backoff, policy.backoff * (2 ** (attempt - 1)))
    return float(rng() * ceiling)


#: Answers that no retry can change (Not Implemented, HTTP Version Not Supported): never
#: retried, whatever the policy lists, and never kept to be replayed.
PERMANENT_STATUSES = frozenset({501, 505})
_EXCERPT = 300


def _excerpt(response: httpx.Response, redact: Callable[[str], str]) -> str:
    # Redacted whole, then cut: a cut first could leave half a key that no longer
    # matches any of its forms.
    text = redact(response.text.strip().replace("\n", " "))
    if len(text) > _EXCERPT:
        text = text[: _EXCERPT - 3] + "..."
    return text


def _path(request: PreparedRequest, redact: Callable[[str], str]) -> str:
    """The request's path as messages quote it: redacted (a builder may map the key
    into the URL), never its query."""
    return redact(httpx.URL(request.url).raw_path.decode("ascii").split("?", 1)[0])


def _status_error(
    request: PreparedRequest,
    response: httpx.Response,
    attempts: int,
    overrides: Mapping[str, str],
    redact: Callable[[str], str],
) -> RunError:
    cls = error_for_status(response.status_code, overrides)
    message = f"{request.method} {_path(request, redact)} answered {response.status_code}"
    excerpt = _excerpt(response, redact)
    if excerpt:
        message += f": {excerpt}"
    if attempts > 1:
        message += f" (after {attempts} attempts)"
    error = cls(message, status=response.status_code, attempts=attempts)
    if response.status_code in PERMANENT_STATUSES:
        error.retryable = False
    return error


def _network_error(
    request: PreparedRequest, exc: httpx.HTTPError, attempts: int, redact: Callable[[str], str]
) -> RunError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    detail = redact(str(exc) or type(exc).__name__)
    message = f"{request.method} {_path(request, redact)} {kind}: {detail}"
    if attempts > 1:
        message += f" (after {attempts} attempts)"
    return RemoteConnectionError(message, attempts=attempts)


class Sender:
    """Sends prepared requests with one retry policy, over pooled clients."""

    def __init__(
        self,
        policy: RetrySpec,
        errors: Mapping[str, str],
        *,
        retry: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Any] | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.policy = policy if retry else policy.model_copy(update={"attempts": 1})
        self.max_response_bytes = max_response_bytes
        self.errors = errors
        self._sleep = sleep
        self._asleep = asleep if asleep is not None else _asyncio_sleep

    def _build(
        self, client: httpx.Client | httpx.AsyncClient, req: PreparedRequest
    ) -> httpx.Request:
        return client.build_request(
            req.method,
            req.url,
            headers=req.headers,
            params=req.query or None,
            content=req.content,
            timeout=req.timeout if req.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )

    def _decide(
        self,
        req: PreparedRequest,
        attempt: int,
        response: httpx.Response | None,
        exc: httpx.HTTPError | None,
        redact: Callable[[str], str],
    ) -> float:
        """Delay before the next attempt; raises the final error when there is none."""
        status = response.status_code if response is not None else None
        retry_after = response.headers.get("retry-after") if response is not None else None
        delay = retry_delay(self.policy, attempt, status=status, retry_after=retry_after)
        if delay is None:
            if response is not None:
                raise _status_error(req, response, attempt, self.errors, redact)
            assert exc is not None
            raise _network_error(req, exc, attempt, redact)
        logger.warning(
            "%s %s: attempt %d failed (%s); retrying in %.2fs",
            req.method,
            _path(req, redact),
            attempt,
            status if status is not None else type(exc).__name__,
            delay,
        )
        return delay

    def send(
        self, client: httpx.Client, req: PreparedRequest, redact: Callable[[str], str]
    ) -> tuple[httpx.Response, int]:
        """Send until success or a final error; returns the response and attempts made."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = client.send(self._build(client, req), stream=True)
                try:
                    _read_bounded(response, self.max_response_bytes, req, redact)
                finally:
                    response.close()
            except httpx.HTTPError as exc:
                self._sleep(self._decide(req, attempt, None, exc, redact))
                continue
            if response.is_success:
                return response, attempt
            self._sleep(self._decide(req, attempt, response, None, redact))

    async def asend(
        self, client: httpx.AsyncClient, req: PreparedRequest, redact: Callable[[str], str]
    ) -> tuple[httpx.Response, int]:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await client.send(self._build(client, req), stream=True)
                try:
                    await _aread_bounded(response, self.max_response_bytes, req, redact)
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:
                await self._asleep(self._decide(req, attempt, None, exc, redact))
                continue
            if response.is_success:
                return response, attempt
            await self._asleep(self._decide(req, attempt, response, None, redact))
