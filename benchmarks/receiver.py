"""A minimal, fast Segment-compatible receiver for benchmarks, run in its own process.

Why not :mod:`connector.testing.sink`: the sink is built for tests (it validates every message
against Segment's limits, deep-copies and stores everything, one thread per connection),
so under bulk load it would be the bottleneck and the benchmark would measure it. This
receiver does the least a real endpoint must: HTTP/1.1 keep-alive over one asyncio
event loop (no threads), ``Content-Length`` bodies, ``json.loads`` of each body (so a
malformed body is caught and events are counted exactly, not guessed from bytes), and a
precomputed ``200 {"success":true}`` answer. ``json.loads`` costs about 2.5 ms for a
450 KB batch of ~900 events on the benchmark machine, i.e. ~360,000 events/s of headroom
on the receiver's own core; the benchmark reports the receiver's CPU time per case so a
saturated receiver would show.

It runs in a separate process so that it never competes with the client for the GIL,
only for cores. Loopback only: it binds 127.0.0.1 and refuses anything else.

Endpoints:

* ``POST /v1/{track,identify,page,screen,group,alias}``: one event;
* ``POST /v1/batch`` (and ``/v1/import``): ``len(body["batch"])`` events;
* ``GET /count``: ``{"events", "requests", "batches", "bytes", "errors", "cpu"}``;
* ``POST /reset``: the same counters, then zeroes them;
* ``GET /health``.

Requests need ``Authorization: Basic ...`` or a ``writeKey`` in the body, like Segment;
bad ones get 4xx and are counted in ``errors``, never in ``events``.

Lifetime is bounded: it exits when its standard input closes (the parent ended or died),
on SIGTERM/SIGINT, or after ``--max-seconds`` whatever happens.

Usage: ``python -m benchmarks.receiver [--port 0] [--max-seconds 600]``; it prints
``READY http://127.0.0.1:PORT`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

__all__ = ["Counts", "Receiver", "main"]

HOST = "127.0.0.1"
MAX_HEADER = 64 * 1024
MAX_BODY = 4 * 1024 * 1024
SINGLE_ENDPOINTS = frozenset(
    f"/v1/{kind}" for kind in ("track", "identify", "page", "screen", "group", "alias")
)
BATCH_ENDPOINTS = frozenset({"/v1/batch", "/v1/import"})
ROOT = Path(__file__).resolve().parent.parent

Counts = dict[str, float]


def _answer(status: str, body: bytes, close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode("ascii") + b"\r\n" + body


_OK = _answer("200 OK", b'{"success":true}')
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Stats:
    """Counters shared by every connection (one event loop: no locks needed)."""

    def __init__(self) -> None:
        self.events = 0
        self.requests = 0
        self.batches = 0
        self.bytes = 0
        self.errors = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "requests": self.requests,
            "batches": self.batches,
            "bytes": self.bytes,
            "errors": self.errors,
            "cpu": time.process_time(),
        }

    def reset(self) -> None:
        self.events = self.requests = self.batches = self.bytes = self.errors = 0


class _Reject(Exception):
    def __init__(self, status: str, error: str, close: bool = False) -> None:
        super().__init__(error)
        self.status, self.error, self.close = status, error, close


class _HTTP(asyncio.Protocol):
    """One keep-alive connection: parse requests as bytes arrive, answer in order."""

    def __init__(self, stats: _Stats, ack_early: bool) -> None:
        self.stats = stats
        self.ack_early = ack_early
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        # The request whose body is still arriving: (method, path, headers, length).
        self.pending: tuple[str, str, dict[str, str], int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            while self._next():
                pass
        except _Reject as reject:
            self._reply(reject)

    def _next(self) -> bool:
        """Handle one complete request from the buffer; False when more bytes are needed."""
        if self.transport is None or self.transport.is_closing():
            return False
        if self.pending is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    raise _Reject("431 Request Header Fields Too Large", "headers too big", True)
                return False
            self.pending = self._head(bytes(self.buffer[:end]))
            del self.buffer[: end + 4]
            if self.pending[2].get("expect", "").lower() == "100-continue":
                self.transport.write(_CONTINUE)
        method, path, headers, length = self.pending
        if len(self.buffer) < length:
            return False
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        self.pending = None
        close = headers.get("connection", "").lower() == "close"
        try:
            answer = self._handle(method, path, headers, body)
        except _Reject as reject:
            self.stats.errors += 1
            reject.close = reject.close or close
            self._reply(reject)
            return not reject.close
        if answer is not None:
            self.transport.write(answer)
        if close:  # The client asked for it; it reads to the close, no header needed.
            self.transport.close()
            return False
        return True

    @staticmethod
    def _head(raw: bytes) -> tuple[str, str, dict[str, str], int]:
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Reject("400 Bad Request", "malformed request line", True)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise _Reject("400 Bad Request", "malformed header", True)
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _Reject("411 Length Required", "send Content-Length", True)
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _Reject("400 Bad Request", "invalid Content-Length", True) from None
        if not 0 <= length <= MAX_BODY:
            raise _Reject("413 Content Too Large", "body too large", True)
        return parts[0], parts[1].partition("?")[0], headers, length

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes | None:
        """The answer to send, or None when it was already sent (early acknowledgement)."""
        stats = self.stats
        single = path in SINGLE_ENDPOINTS
        if single or path in BATCH_ENDPOINTS:
            if method != "POST":
                raise _Reject("405 Method Not Allowed", "use POST")
            stats.requests += 1
            stats.bytes += len(body)
            early = self.ack_early and headers.get("authorization", "").startswith("Basic ")
            if early:
                assert self.transport is not None
                self.transport.write(_OK)
            try:
                self._count(single, headers, body)
            except _Reject:
                if not early:
                    raise
                stats.errors += 1  # Too late to answer it: the benchmark reports errors.
            return None if early else _OK
        if path == "/count" and method == "GET":
            return _answer("200 OK", json.dumps(stats.snapshot()).encode())
        if path == "/reset" and method == "POST":
            snapshot = stats.snapshot()
            stats.reset()
            return _answer("200 OK", json.dumps(snapshot).encode())
        if path == "/health" and method == "GET":
            return _answer("200 OK", b'{"ok":true}')
        raise _Reject("404 Not Found", f"no such endpoint: {path}")

    def _count(self, single: bool, headers: dict[str, str], body: bytes) -> None:
        """Parse the body and count its events; raises _Reject for a bad one."""
        if headers.get("content-encoding", "").lower() == "gzip":
            try:
                body = zlib.decompress(body, wbits=31)
            except zlib.error:
                raise _Reject("400 Bad Request", "invalid gzip body") from None
        try:
            data = json.loads(body)
        except ValueError:
            raise _Reject("400 Bad Request", "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise _Reject("400 Bad Request", "body must be a JSON object")
        if not headers.get("authorization", "").startswith("Basic ") and not data.get("writeKey"):
            raise _Reject("401 Unauthorized", "missing write key")
        if single:
            self.stats.events += 1
            return
        items = data.get("batch")
        if not isinstance(items, list):
            raise _Reject("400 Bad Request", 'a batch needs a "batch" list')
        self.stats.events += len(items)
        self.stats.batches += 1

    def _reply(self, reject: _Reject) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        body = json.dumps({"success": False, "error": reject.error}).encode()
        self.transport.write(_answer(reject.status, body, reject.close))
        if reject.close:
            self.transport.close()


async def _serve(port: int, max_seconds: float, ack_early: bool) -> None:
    loop = asyncio.get_running_loop()
    stats = _Stats()
    stopped = asyncio.Event()
    server = await loop.create_server(
        lambda: _HTTP(stats, ack_early), HOST, port, reuse_address=True, backlog=256
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    loop.call_later(max_seconds, stopped.set)

    def watch_stdin() -> None:
        # EOF on stdin means the parent closed it or died: never outlive the benchmark.
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stopped.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    bound = server.sockets[0].getsockname()[1]
    print(f"READY http://{HOST}:{bound}", flush=True)
    async with server:
        await stopped.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.receiver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="exit after this long, whatever happens"
    )
    parser.add_argument(
        "--ack-after-parse",
        action="store_true",
        help="answer only after parsing the body (slower: the parse is on the client's clock)",
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port, args.max_seconds, not args.ack_after_parse))


class Receiver:
    """The receiver as a child process, with a small client for its counters.

    ``with Receiver() as receiver:`` starts it and waits for its READY line (bounded),
    and on exit closes its stdin, then terminates it if it has not gone within seconds.
    The counters are read over a separate httpx client, never over a measured one.
    """

    def __init__(
        self, max_seconds: float = 600.0, start_timeout: float = 15.0, ack_after_parse: bool = False
    ) -> None:
        self.max_seconds = max_seconds
        self.ack_after_parse = ack_after_parse
        self.start_timeout = start_timeout
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    def start(self) -> Receiver:
        command = [sys.executable, "-m", "benchmarks.receiver"]
        command += ["--max-seconds", str(self.max_seconds)]
        if self.ack_after_parse:
            command.append("--ack-after-parse")
        self._proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.start_timeout)
        line = self._proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the receiver did not start (got {line!r})")
        self.url = line.removeprefix("READY ")
        self._client = httpx.Client(base_url=self.url, timeout=10)
        return self

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else -1

    def count(self) -> dict[str, Any]:
        """The counters since the last reset (and the receiver's CPU time, in seconds)."""
        assert self._client is not None, "receiver not started"
        data: dict[str, Any] = self._client.get("/count").raise_for_status().json()
        return data

    def reset(self) -> dict[str, Any]:
        """Zero the counters; returns them as they were."""
        assert self._client is not None, "receiver not started"
        data: dict[str, Any] = self._client.post("/reset").raise_for_status().json()
        return data

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    main()
