"""A local, Segment-compatible HTTP Tracking API receiver.

The engine's Segment module talks HTTP to ``api.segment.io``. To develop, demo and test it
without a real workspace (and without leaking real data), this module runs a small server that
speaks the same protocol: the same endpoints, Basic or body write-key auth, the same size
limits, and ``{"success": true}`` answers. It stores what it accepted, in memory and optionally
as JSON lines so that another process (a demo, the ``connector sink`` command) can read it.

Secrets never land in storage: the Authorization header is dropped and the write key is kept
only as a short sha256 fingerprint, so tests can assert that the key appears nowhere.

Faults (error statuses with Retry-After, delays, dropped connections) can be queued so that the
engine's retry logic is exercised against a real socket instead of a mock.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from connector.core.jsondata import dumps

__all__ = ["BATCH_LIMIT", "MAX_BATCH_MESSAGES", "MESSAGE_LIMIT", "Fault", "Sink", "message_size"]

MESSAGE_LIMIT = 32 * 1024  # Segment: 32 KB per message.
BATCH_LIMIT = 500 * 1024  # Segment: 500 KB per batch request.
MAX_BATCH_MESSAGES = 2500
MAX_READ = 1024 * 1024  # Never buffer more than this, whatever Content-Length claims.
MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
ENDPOINTS = frozenset(f"/v1/{kind}" for kind in (*MESSAGE_TYPES, "batch", "import"))
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization"})
_HOOKS = {
    "/_sink/health": "GET",
    "/_sink/messages": "GET",
    "/_sink/received": "GET, DELETE",
    "/_sink/stats": "GET",
    "/_sink/faults": "POST",
}


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by the next POST to a tracking endpoint.

    ``status=None`` means "answer normally" (useful with ``delay``). A faulted request is not
    stored, just as a real outage would lose it, so retry tests can count what got through.
    """

    status: int | None = 500
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False
    body: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"fault status must be 100-599, got {self.status}")
        if self.delay < 0:
            raise ValueError("fault delay must not be negative")

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        """Build a fault from JSON (the ``POST /_sink/faults`` hook); reject unknown keys."""
        if not isinstance(data, dict):
            raise ValueError("each fault must be a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        args = dict(data)
        if isinstance(args.get("retry_after"), int | float):
            args["retry_after"] = str(args["retry_after"])
        fault = cls(**args)
        ok = (
            (fault.status is None or type(fault.status) is int)
            and isinstance(fault.retry_after, str | None)
            and type(fault.delay) in (int, float)
            and isinstance(fault.drop, bool)
            and isinstance(fault.body, str | None)
        )
        if not ok:
            raise ValueError(f"fault has a field of the wrong type: {data}")
        return fault


class _Reject(Exception):
    """An HTTP error answer raised from deep inside request handling."""

    def __init__(self, status: int, error: str, close: bool = False, allow: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.close, self.allow = status, error, close, allow


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # NaN/Infinity would poison the JSONL file.


def _fingerprint(write_key: str) -> str:
    return hashlib.sha256(write_key.encode("utf-8")).hexdigest()[:8]


def _basic_write_key(header: str) -> str:
    """Extract the user part of ``Basic base64(writeKey:password)``; any password is allowed."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise _Reject(401, "Authorization must be Basic base64(writeKey:)")
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _Reject(401, "malformed Basic Authorization header") from exc
    user, colon, _ = decoded.partition(":")
    if not colon or not user:
        raise _Reject(401, "Basic Authorization must carry a non-empty write key and a colon")
    return user


def _split_messages(kind: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate batch limits and return the flattened messages, typed and redacted."""
    if kind not in ("batch", "import"):
        message = {k: v for k, v in body.items() if k != "writeKey"}
        message.setdefault("type", kind)
        return [message]
    items = body.get("batch")
    if not isinstance(items, list):
        raise _Reject(400, 'a batch needs a "batch" list of messages')
    if len(items) > MAX_BATCH_MESSAGES:
        raise _Reject(400, f"batch has {len(items)} messages; the limit is {MAX_BATCH_MESSAGES}")
    messages = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _Reject(400, f"batch[{index}] is not a JSON object")
        if item.get("type") not in MESSAGE_TYPES:
            raise _Reject(400, f"batch[{index}] needs a type, one of {', '.join(MESSAGE_TYPES)}")
        size = message_size(item)
        if size > MESSAGE_LIMIT:
            raise _Reject(400, f"batch[{index}] is {size} bytes; the limit is 32 KB per message")
        messages.append({k: v for k, v in item.items() if k != "writeKey"})
    return messages


def message_size(message: Any) -> int:
    """A message's size as the engine measures it before sending: the length of the JSON
    the engine writes for it (:func:`connector.core.jsondata.dumps`). Re-encoding with
    another writer would disagree on numbers (``1e-7`` against ``1e-07``), so a message
    the engine accepted at the limit would be refused here."""
    return len(dumps(message))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # The default 5 drops SYNs under bursts: a 1 s client stall.

    def __init__(self, address: tuple[str, int], sink: Sink) -> None:
        self.sink = sink
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (e.g. after its own timeout) is routine here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; every answer has a length.
    # Send each answer in one segment: headers and body in separate small writes meet the
    # client's delayed ACK and cost ~40 ms per request on keep-alive connections.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server_version = "connector-sink"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a request log would drown test and demo output."""

    @property
    def sink(self) -> Sink:
        return cast(_Server, self.server).sink

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path.startswith("/_sink/"):
                self._hook(path)
                return
            self.sink._count_request()
            if path not in ENDPOINTS:
                self._read_raw()
                raise _Reject(404, f"no such endpoint: {path}")
            if self.command != "POST":
                self._read_raw()
                raise _Reject(405, f"{self.command} not allowed; use POST", allow="POST")
            self._track(path.removeprefix("/v1/"))
        except _Reject as reject:
            self.close_connection = self.close_connection or reject.close
            extra = {"Allow": reject.allow} if reject.allow else {}
            self._json(reject.status, {"success": False, "error": reject.error}, extra)

    def _read_raw(self) -> bytes:
        """Read the body as sent, refusing to buffer more than MAX_READ bytes."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise _Reject(411, "chunked bodies are not supported; send Content-Length", True)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise _Reject(400, "invalid Content-Length", True) from None
        if length < 0:
            raise _Reject(400, "invalid Content-Length", True)
        if length > MAX_READ:
            raise _Reject(413, f"body of {length} bytes exceeds {MAX_READ} bytes", True)
        return self.rfile.read(length) if length else b""

    def _track(self, kind: str) -> None:
        raw = self._read_raw()
        fault = self.sink._next_fault()
        if fault is not None and self._apply(fault):
            return
        limit = BATCH_LIMIT if kind in ("batch", "import") else MESSAGE_LIMIT
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding == "gzip":
            inflater = zlib.decompressobj(wbits=31)
            try:  # Decompress at most limit + 1 bytes: enough to know, safe against gzip bombs.
                data = inflater.decompress(raw, limit + 1)
            except zlib.error as exc:
                raise _Reject(400, f"invalid gzip body: {exc}") from exc
            if len(data) <= limit and not inflater.eof:
                raise _Reject(400, "truncated gzip body")
        elif encoding == "identity":
            data = raw
        else:
            raise _Reject(415, f"unsupported Content-Encoding: {encoding}")
        if len(data) > limit:  # Checked before parsing: an over-size body is never decoded.
            what = "batch request" if limit == BATCH_LIMIT else "message"
            raise _Reject(400, f"{what} exceeds the {limit // 1024} KB limit ({limit} bytes)")
        try:
            body = json.loads(data, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            raise _Reject(400, f"body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _Reject(400, "body must be a JSON object")
        header = self.headers.get("Authorization")
        if header is not None:
            write_key, auth = _basic_write_key(header), "basic"
        elif isinstance(body.get("writeKey"), str) and body["writeKey"]:
            write_key, auth = body["writeKey"], "body"
        else:
            raise _Reject(401, "missing write key: send Basic auth or a writeKey field")
        messages = _split_messages(kind, body)
        stored = {k: v for k, v in body.items() if k != "writeKey"}
        if kind in ("batch", "import"):
            stored["batch"] = messages
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = {
            "path": f"/v1/{kind}",
            "method": self.command,
            "headers": {k: v for k, v in headers.items() if k not in _SECRET_HEADERS},
            "body": stored,
            "writeKeyHash": _fingerprint(write_key),
            "auth": auth,
            "receivedAt": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        }
        self.sink._accept(record, messages)
        self._json(200, {"success": True})

    def _apply(self, fault: Fault) -> bool:
        """Play a fault; return True when it answered (or dropped) instead of normal handling."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            self.close_connection = True  # No bytes at all: the client sees a hang-up.
            return True
        if fault.status is None:
            return False
        extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        if fault.body is None:
            error = {"success": False, "error": f"injected fault: HTTP {fault.status}"}
            self._json(fault.status, error, extra)
        else:
            self._send(fault.status, fault.body.encode("utf-8"), "text/plain", extra)
        return True

    def _hook(self, path: str) -> None:
        """Test hooks for a sink running in another process."""
        method = "GET" if self.command == "HEAD" else self.command  # _send omits HEAD bodies.
        route, sink = (method, path), self.sink
        raw = self._read_raw()
        if route == ("GET", "/_sink/health"):
            self._json(200, {"ok": True})
        elif route == ("GET", "/_sink/messages"):
            self._json(200, sink.messages())
        elif route == ("GET", "/_sink/received"):
            self._json(200, sink.received())
        elif route == ("DELETE", "/_sink/received"):
            sink.clear()
            self._json(200, {"success": True})
        elif route == ("GET", "/_sink/stats"):
            self._json(200, sink._stats())
        elif route == ("POST", "/_sink/faults"):
            try:
                items = json.loads(raw or b"null")
                if not isinstance(items, list):
                    raise ValueError("expected a JSON list of faults")
                faults = [Fault.from_dict(item) for item in items]
            except (ValueError, TypeError) as exc:
                raise _Reject(400, f"bad faults: {exc}") from exc
            sink.inject(*faults)
            self._json(200, {"success": True, "queued": len(faults)})
        elif path in _HOOKS:
            raise _Reject(405, f"{self.command} not allowed on {path}", allow=_HOOKS[path])
        else:
            raise _Reject(404, f"no such sink hook: {path}")

    def _json(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json", extra)

    def _send(self, status: int, data: bytes, ctype: str, extra: dict[str, str] | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Sink:
    """A Segment-compatible receiver; ``with Sink() as sink:`` runs it on a free local port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        store: str | os.PathLike[str] | None = None,
        faults: list[Fault] | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._store = Path(store) if store is not None else None
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._messages: list[dict[str, Any]] = []
        self._faults: deque[Fault] = deque(faults or [])
        self._requests = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sink:
        """Bind (so ``url`` is known immediately) and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("sink already started")
        if self._store is not None:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            self._store.touch()  # Readers can tell "nothing yet" from "wrong path".
        self._server = _Server((self._host, self._port), self)
        # A short poll interval keeps stop() fast; shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; stored data stays readable."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("sink is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """A connectable base URL; wildcard binds are reported as loopback."""
        port = self.port  # Raises when not started.
        host = str(self._server.server_address[0]) if self._server else ""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def requests_count(self) -> int:
        """Tracking API requests seen, rejected and faulted ones included (hooks excluded)."""
        with self._lock:
            return self._requests

    def received(self) -> list[dict[str, Any]]:
        """Every accepted request record, in arrival order (copies: safe to mutate)."""
        with self._lock:
            return copy.deepcopy(self._records)

    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, batches flattened, ``type`` filled in (copies)."""
        with self._lock:
            return copy.deepcopy(self._messages)

    def clear(self) -> None:
        """Forget records, messages, the request count and pending faults (not the JSONL)."""
        with self._lock:
            self._records.clear()
            self._messages.clear()
            self._faults.clear()
            self._requests = 0

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each POST to a tracking endpoint consumes the next one."""
        with self._lock:
            self._faults.extend(faults)

    @staticmethod
    def load(store: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """Read a JSONL store back; a half-written last line (a writer mid-append) is skipped."""
        text = Path(store).read_text(encoding="utf-8")
        lines = text.split("\n")
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                if number == len(lines):  # No trailing newline yet: still being written.
                    break
                raise ValueError(f"{store}:{number}: not a JSON line") from None
        return records

    def _count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self._requests,
                "received": len(self._records),
                "messages": len(self._messages),
                "pendingFaults": len(self._faults),
            }

    def _accept(self, record: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._records.append(record)
            self._messages.extend(messages)
            if self._store is not None:
                with self._store.open("a", encoding="utf-8") as handle:
                    handle.write(line)


def serve_forever_cli(host: str, port: int, store: str | None) -> None:
    """Run a sink in the foreground until Ctrl-C or SIGTERM (the ``connector sink`` command)."""
    stopped = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
    sink = Sink(host, port, store).start()
    try:
        print(f"connector sink listening on {sink.url}", flush=True)
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def show_cli(store: str) -> None:
    """Print a JSONL store as one indented JSON array."""
    print(json.dumps(Sink.load(store), indent=2))
