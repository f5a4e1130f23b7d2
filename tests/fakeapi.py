"""A local fake of an API with the shapes real apps have, for the fixture app
``tests/apps/fakeapi``: cursor pages, traits over pages, errors inside a 200 body, a
cursor-opening POST then GET pages (CleverTap's events), channels for remote options,
a verify endpoint, two secret headers and a request signature. Serves on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes import _server
from tests.fakes._server import Reply, Request

APP_DIR = Path(__file__).resolve().parent / "apps" / "fakeapi"
ACCOUNT = "acct-7f3a9c21"
PASSCODE = "pass-Secret-5e8d2b"
WORKSPACE = "ws-blue"


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
    received: list[Request] = field(default_factory=list)
    #: Called with each request as it arrives, before it is answered.
    on_request: Callable[[Request], None] | None = None


class FakeAPI(_server.FakeAPI):
    """``with FakeAPI() as api:`` serves until the block ends; ``api.url`` is its base.
    Every request goes through :func:`route` after the credential and signature
    checks, and is kept in ``state.received`` (``request.target`` is its path as sent)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = FakeState()

    def handle(self, request: Request) -> Reply:
        state = self.state
        state.received.append(request)
        if state.on_request is not None:
            state.on_request(request)
        headers, query = request.headers, request.query
        if request.target == "/echo":
            return Reply(200, {"headers": headers, "query": query})
        if headers.get("x-account-id") != ACCOUNT or headers.get("x-passcode") != PASSCODE:
            return Reply(401, {"error": "bad credentials"})
        if state.check_signature:
            message = f"{request.method} {request.target}\n".encode() + request.body
            good = hmac.new(PASSCODE.encode(), message, hashlib.sha256).hexdigest()
            if headers.get("x-signature") != good:
                return Reply(401, {"error": "bad signature"})
        if "x-next" in headers:  # a cursor sent as a header instead
            query = {**query, "next": headers["x-next"]}
        return Reply(*route(state, request.method, request.path, query, request.json()))

    def connection(self, **changes: Any) -> dict[str, Any]:
        values = {
            "accountId": ACCOUNT,
            "passcode": PASSCODE,
            "workspace": WORKSPACE,
            "host": self.url,
        }
        values.update(changes)
        return values

    def sent(self, path: str) -> list[Request]:
        """The requests received on ``path`` as sent (percent-encoded)."""
        return [r for r in self.state.received if r.target == path]


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
