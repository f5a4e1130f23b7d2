"""A local fake of an API with the shapes real apps have, for the fixture app
``tests/apps/fakeapi``: cursor pages, traits over pages, errors inside a 200 body, a
cursor-opening POST then GET pages (CleverTap's events), channels for remote options,
a verify endpoint, two secret headers and a request signature. Serves on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

APP_DIR = Path(__file__).resolve().parent / "apps" / "fakeapi"
ACCOUNT = "acct-7f3a9c21"
PASSCODE = "pass-Secret-5e8d2b"
WORKSPACE = "ws-blue"


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeState:
    items: list[dict[str, Any]] = field(default_factory=list)
    #: Always answer this cursor (a broken API that would loop forever).
    repeat_cursor: bool = False
    traits: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    channels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    check_signature: bool = True
    #: The cursor a POST to /events.json opened: (records, page size).
    cursor: tuple[list[dict[str, Any]], int] = ([], 2)
    received: list[Received] = field(default_factory=list)


class FakeAPI:
    """``with FakeAPI() as api:`` serves until the block ends; ``api.url`` is its base."""

    def __init__(self) -> None:
        self.state = FakeState()
        state = self.state

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                state.received.append(Received(self.command, url.path, query, headers, body))
                if url.path == "/echo":
                    return self._answer(200, {"headers": headers, "query": query})
                if headers.get("x-account-id") != ACCOUNT or headers.get("x-passcode") != PASSCODE:
                    return self._answer(401, {"error": "bad credentials"})
                if state.check_signature:
                    message = f"{self.command} {url.path}\n".encode() + raw
                    good = hmac.new(PASSCODE.encode(), message, hashlib.sha256).hexdigest()
                    if headers.get("x-signature") != good:
                        return self._answer(401, {"error": "bad signature"})
                status, answer = route(state, self.command, unquote(url.path), query, body)
                self._answer(status, answer)

            do_GET = do_POST = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def connection(self, **changes: Any) -> dict[str, Any]:
        values = {
            "accountId": ACCOUNT,
            "passcode": PASSCODE,
            "workspace": WORKSPACE,
            "host": self.url,
        }
        values.update(changes)
        return values

    def sent(self, path: str) -> list[Received]:
        return [r for r in self.state.received if r.path == path]


def route(
    state: FakeState, method: str, path: str, query: dict[str, str], body: Any
) -> tuple[int, Any]:
    parts = path.strip("/").split("/")
    if path == "/verify":
        return 200, {"ok": True}
    if path == "/items":
        size = int(query.get("page_size", "2"))
        start = int(query.get("next", "0"))
        chunk = state.items[start : start + size]
        more = start + size < len(state.items)
        cursor = {"has_more": more, "next": "0" if state.repeat_cursor else str(start + size)}
        return 200, {"data": chunk, "cursor": cursor, "page": start // size + 1}
    if parts[0] == "profiles" and len(parts) == 3:
        pages = state.traits.get(parts[1])
        if pages is None:
            return 404, {"error": f"profile {parts[1]} not found"}
        index = int(query.get("next", "0"))
        more = index + 1 < len(pages)
        return 200, {"traits": pages[index], "cursor": {"has_more": more, "next": str(index + 1)}}
    if path == "/upload":
        events = body["d"]
        bad = [e for e in events if e["evtName"] == "bad"]
        unprocessed = [{"status": "fail", "code": 509, "error": "bad event name"} for _ in bad]
        return 200, {
            "status": "success",
            "processed": len(events) - len(bad),
            "unprocessed": unprocessed,
        }
    if path == "/events.json" and method == "POST":
        since = str(body["from"])
        wanted = [
            r
            for r in state.records
            if r["event"] == body["event_name"] and str(r["ts"])[:8] >= since
        ]
        size = int(query.get("batch_size", "2"))
        state.cursor = (wanted, size)
        return 200, {"status": "success", "cursor": "c-0"}
    if path == "/events.json" and method == "GET":
        wanted, size = state.cursor
        index = int(query["cursor"].split("-")[1])
        chunk = wanted[index * size : (index + 1) * size]
        answer: dict[str, Any] = {"status": "success", "records": chunk}
        if (index + 1) * size < len(wanted):
            answer["next_cursor"] = f"c-{index + 1}"
        return 200, answer
    if parts[0] == "teams" and len(parts) == 3 and parts[2] == "channels":
        channels = state.channels.get(parts[1])
        if channels is None:
            return 404, {"error": "no such team"}
        return 200, {"channels": channels}
    if parts[0] == "teams" and len(parts) == 5 and method == "POST":
        return 200, {"ok": True, "channel": parts[3], "text": body["text"]}
    return 404, {"error": "not found"}
