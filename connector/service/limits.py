"""The service's limits: body size, time per request, concurrent runs.

* **Body size.** A JSON API body may be at most ``max_body`` bytes, a streamed batch
  ``max_batch_body``, a webhook delivery ``max_delivery`` (and the trigger's own
  ``maxBodyBytes``). A declared ``Content-Length`` over the limit is refused before
  anything is read; a body that grows past it while streaming is cut off there. 413.
* **Time per request.** Every request but a streamed batch must be answered within
  ``request_timeout`` seconds, else 504 (a run cut off that way stays in the incomplete
  executions: it was stored before it was sent). A batch has ``batch_timeout``.
  Long polls wait at most ``max_wait``, below the request limit.
* **Concurrent runs.** At most ``max_runs`` runs at once; up to ``max_queued`` more
  wait for a slot, and beyond that a run is refused with 429 and ``Retry-After``.
  The default (64) stays under the pooled HTTP client's 100 connections: runs beyond
  that wait here, in one cheap semaphore, rather than in the client's pool, whose
  bookkeeping grows with its waiters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connector.service.errors import ServiceError, error_body
from connector.service.respond import Json

__all__ = ["BodyTooLarge", "Limits", "LimitsMiddleware", "RunGate"]


@dataclass(frozen=True)
class Limits:
    max_body: int = 1024 * 1024
    max_batch_body: int = 256 * 1024 * 1024
    max_delivery: int = 5 * 1024 * 1024
    request_timeout: float = 60.0
    batch_timeout: float = 3600.0
    max_wait: float = 30.0
    max_runs: int = 64
    max_queued: int = 4096


class BodyTooLarge(HTTPException):
    """Raised by the limited ``receive``; an HTTPException so that FastAPI's body
    parsing passes it on as is (413) instead of calling the body malformed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(413, f"the request body is over the limit of {limit:,} bytes")


def too_large_response(limit: int) -> Json:
    message = f"the request body is over the limit of {limit:,} bytes"
    return Json(error_body("DataError", message, "body", "service"), status_code=413)


class RunGate:
    """A semaphore for runs with a bounded queue: overload is refused, not piled up."""

    def __init__(self, limits: Limits) -> None:
        self._slots = asyncio.Semaphore(limits.max_runs)
        self._max_queued = limits.max_queued
        self._waiting = 0

    async def __aenter__(self) -> None:
        if self._slots.locked():
            if self._waiting >= self._max_queued:
                raise ServiceError(
                    429,
                    "RateLimitError",
                    "too many concurrent runs: the service's run slots and queue are full; "
                    "retry after a second",
                    headers={"Retry-After": "1"},
                )
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


def _is_batch(path: str) -> bool:
    return path.startswith("/v1/modules/") and path.endswith("/batch")


class LimitsMiddleware:
    """Body size and time limits, for every route (pure ASGI: streams stay streams)."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        batch = _is_batch(path)
        if batch:
            limit, seconds = self.limits.max_batch_body, self.limits.batch_timeout
        elif path.startswith("/hooks/"):
            limit, seconds = self.limits.max_delivery, self.limits.request_timeout
        else:
            limit, seconds = self.limits.max_body, self.limits.request_timeout
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await too_large_response(limit)(scope, receive, send)
            return
        started = False
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            async with asyncio.timeout(seconds):
                await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large_response(limit)(scope, receive, send)
        except TimeoutError:
            if not started:
                message = (
                    f"the request took longer than the service's limit of {seconds:g} s; a run "
                    "cut off this way is kept as an incomplete execution"
                )
                body = error_body("ConnectionError", message, None, "service")
                await Json(body, status_code=504)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
