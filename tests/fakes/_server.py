"""The machinery the fakes share: a threaded loopback server with routes and a request log."""

from __future__ import annotations

import json
import re
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeAPI", "Reply", "Request"]


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    #: The path as it came on the wire, still percent-encoded (``path`` is decoded).
    target: str = ""

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request, dict[str, str]], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeAPI) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # Skip HTTPServer's reverse DNS lookup, which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the fake's request log instead."""

    def do_GET(self) -> None:
        fake: FakeAPI = self.server.fake  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(
            self.command,
            unquote(parts.path),
            query,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            parts.path,
        )
        reply = fake.handle(request)
        data = json.dumps(reply.payload).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET


class FakeAPI:
    """A fake API: routes as ``(method, path pattern)``, every request kept in ``requests``.

    Path patterns use ``{name}`` for one path segment. Subclasses add routes in
    ``__init__`` and call :meth:`start` (or use the fake as a context manager).
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        #: Replies given, in order, to the next requests instead of the routes' own.
        self.faults: list[Reply] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def route(self, method: str, pattern: str, handler: Route) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.faults:
                return self.faults.pop(0)
            allowed = False
            for method, pattern, handler in self._routes:
                match = pattern.match(request.path)
                if match is None:
                    continue
                allowed = True
                if method == request.method:
                    return handler(request, match.groupdict())
            if allowed:
                return Reply(405, {"error": f"{request.method} not allowed"})
            return Reply(404, {"error": f"no such endpoint: {request.path}"})

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
