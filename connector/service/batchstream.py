"""The streamed batch: NDJSON in, NDJSON out, one line out per line in, in order.

The engine's :meth:`~connector.core.engine.Engine.run_batch` reads its inputs lazily
and yields results as their batch is answered; here it runs in a worker thread, pulling
lines from the request body as it needs them and handing each result line back to the
event loop to send. Neither side is buffered whole: memory stays flat in the batch's
length, and a client that reads while it sends sees results while it is still sending.

This is a plain ASGI response, not Starlette's StreamingResponse, because the body is
still being read while the response is sent (StreamingResponse would read ``receive``
itself, to watch for a disconnect, and take the request's body from us).

Input lines as ``connector run --batch`` reads them: blank lines are skipped, a line
that is not a JSON object gets its own DataError line in its place. If the body is cut
off (over the size limit, or the client left), the output ends with one error line
saying so; results already written stand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import orjson
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from connector.errors import DataError, RunError
from connector.service.errors import error_body, service_status
from connector.service.limits import BodyTooLarge

__all__ = ["BatchStream"]

_MEDIA = "application/x-ndjson"
_log = logging.getLogger("connector.service")


class BatchStream(Response):
    media_type = _MEDIA

    def __init__(
        self,
        state: Any,
        module_id: str,
        connection: dict[str, Any],
        context: dict[str, Any] | None,
    ) -> None:
        super().__init__(media_type=_MEDIA)
        self._state = state
        self._module_id = module_id
        self._connection = connection
        self._context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lines = _LineReader(receive)
        out_send, out_receive = anyio.create_memory_object_stream[bytes](256)
        engine = self._state.engine

        def inputs() -> Iterator[dict[str, Any] | RunError]:
            number = 0
            while True:
                line = anyio.from_thread.run(lines.next)
                if line is None:
                    return
                number += 1
                if not line.strip():
                    continue
                yield _parse(number, line)

        def work() -> None:
            try:
                for result in engine.run_batch(
                    self._module_id, self._connection, inputs(), self._context
                ):
                    anyio.from_thread.run(out_send.send, _encode(result))
            except RunError as exc:  # the whole batch could not start (its endpoint)
                anyio.from_thread.run(out_send.send, _encode(exc))
            except Exception as exc:
                # Not known to be secret-free: its type only, as the CLI does.
                _log.error("batch of %s failed: unexpected %s", self._module_id, type(exc).__name__)
                message = f"unexpected {type(exc).__name__} in the service"
                line = orjson.dumps(error_body("RuntimeError", message, None, "service"))
                anyio.from_thread.run(out_send.send, line + b"\n")
            else:
                if lines.cut is not None:
                    error = DataError(f"the batch was cut off: {lines.cut}", field="body")
                    anyio.from_thread.run(out_send.send, _encode(error))
            finally:
                anyio.from_thread.run(out_send.aclose)

        async with self._state.run_gate():  # a 429 here is still a plain error response
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", _MEDIA.encode())],
                }
            )
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_in_thread, work)
                async with out_receive:
                    async for chunk in out_receive:
                        message = {"type": "http.response.body", "body": chunk, "more_body": True}
                        await send(message)
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _in_thread(work: Any) -> None:
    await anyio.to_thread.run_sync(work)


class _LineReader:
    """Lines of the request body, read from ``receive`` as they are asked for."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._buffer = bytearray()
        self._done = False
        self.cut: str | None = None

    async def next(self) -> bytes | None:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if self._done:
                if self._buffer:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    return line
                return None
            try:
                message = await self._receive()
            except BodyTooLarge as exc:
                self.cut = str(exc.detail)
                self._done = True
                self._buffer.clear()  # a partial last line is not an input
                continue
            if message["type"] == "http.disconnect":
                self.cut = "the client disconnected"
                self._done = True
                self._buffer.clear()
                continue
            self._buffer += message.get("body", b"")
            self._done = not message.get("more_body", False)


def _parse(number: int, line: bytes) -> dict[str, Any] | RunError:
    """As ``connector run --batch`` reads a line (the standard library's JSON)."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        return DataError(f"line {number}: invalid JSON: {exc.msg}", field="body")
    except UnicodeDecodeError:
        return DataError(f"line {number} is not UTF-8 text", field="body")
    except RecursionError:
        return DataError(f"line {number}: JSON nested too deeply", field="body")
    if not isinstance(item, dict):
        return DataError(f"line {number} must be a JSON object", field="body")
    return item


def _encode(result: Any) -> bytes:
    if isinstance(result, RunError):
        detail = result.to_dict()
        detail["origin"] = service_status(result)[1]
        return orjson.dumps({"error": detail}) + b"\n"
    return orjson.dumps({"bundles": result}, default=str) + b"\n"
