"""A fake of CleverTap's server API: Upload Events and Get Events (cursor pages)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from tests.fakes._server import FakeAPI, Reply, Request

__all__ = ["CleverTapFake"]

_IDENTITIES = ("identity", "objectId", "FBID", "GPID")


def _fail(status: int, error: str) -> Reply:
    return Reply(status, {"status": "fail", "error": error, "code": status})


def _record_error(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "record must be an object"
    if record.get("type") != "event":
        return "type must be 'event'"
    if not any(record.get(key) for key in _IDENTITIES):
        return "one of identity, objectId, FBID or GPID is required"
    if not isinstance(record.get("evtName"), str) or not record["evtName"]:
        return "evtName is required"
    ts = record.get("ts")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool) or ts < 0):
        return "ts must be epoch seconds"
    if "evtData" in record and not isinstance(record["evtData"], dict):
        return "evtData must be an object"
    return None


class CleverTapFake(FakeAPI):
    """One account. Events added with :meth:`add_event` or uploaded are served by Get Events,
    oldest first, ``batch_size`` a page."""

    def __init__(self, account_id: str = "TEST-ACC-123", passcode: str = "CT-PASS-456") -> None:
        super().__init__()
        self.account_id = account_id
        self.passcode = passcode
        self.events: list[dict[str, Any]] = []
        self.uploaded: list[dict[str, Any]] = []
        self.route("POST", "/1/upload", self._upload)
        self.route("POST", "/1/events.json", self._events_query)
        self.route("GET", "/1/events.json", self._events_page)

    def connection(self) -> dict[str, str]:
        """The clevertap app's connection values for this fake (its URL as the host)."""
        return {"accountId": self.account_id, "passcode": self.passcode, "host": self.url}

    def add_event(
        self, name: str, identity: str, when: datetime, props: dict[str, Any] | None = None
    ) -> None:
        self.events.append(
            {"evtName": name, "identity": identity, "when": when, "props": props or {}}
        )

    def _auth(self, request: Request) -> Reply | None:
        if (
            request.headers.get("x-clevertap-account-id") != self.account_id
            or request.headers.get("x-clevertap-passcode") != self.passcode
        ):
            return _fail(401, "Invalid Account ID or Passcode")
        return None

    def _upload(self, request: Request, args: dict[str, str]) -> Reply:
        failed = self._auth(request)
        if failed is not None:
            return failed
        try:
            body = request.json()
        except ValueError:
            return _fail(400, "Malformed JSON")
        records = body.get("d") if isinstance(body, dict) else None
        if not isinstance(records, list):
            return _fail(400, "The payload must be an object with a list 'd'")
        if len(records) > 1000:
            return _fail(400, "At most 1000 records per request")
        unprocessed = []
        for index, record in enumerate(records):
            error = _record_error(record)
            if error is not None:
                unprocessed.append(
                    {
                        "status": "fail",
                        "code": 509,
                        "error": error,
                        "record": record,
                        "index": index,
                    }
                )
                continue
            self.uploaded.append(record)
            when = datetime.fromtimestamp(record.get("ts", 0) or 0, UTC)
            self.add_event(
                record["evtName"], record.get("identity", ""), when, record.get("evtData")
            )
        processed = len(records) - len(unprocessed)
        return Reply(200, {"status": "success", "processed": processed, "unprocessed": unprocessed})

    def _events_query(self, request: Request, args: dict[str, str]) -> Reply:
        failed = self._auth(request)
        if failed is not None:
            return failed
        size = request.query.get("batch_size", "10")
        if not size.isdigit() or not 1 <= int(size) <= 5000:
            return _fail(400, "batch_size must be 1-5000")
        try:
            query = request.json()
        except ValueError:
            return _fail(400, "Malformed JSON")
        if not isinstance(query, dict) or not isinstance(query.get("event_name"), str):
            return _fail(400, "event_name is required")
        dates = []
        for key in ("from", "to"):
            value = query.get(key)
            try:
                dates.append(datetime.strptime(str(value), "%Y%m%d").date())
            except ValueError:
                return _fail(400, f"{key} must be a date as YYYYMMDD")
        state = {
            "name": query["event_name"],
            "from": str(dates[0]),
            "to": str(dates[1]),
            "size": int(size),
            "at": 0,
        }
        return Reply(200, {"status": "success", "cursor": self._encode(state)})

    def _events_page(self, request: Request, args: dict[str, str]) -> Reply:
        failed = self._auth(request)
        if failed is not None:
            return failed
        try:
            state = json.loads(base64.urlsafe_b64decode(request.query.get("cursor", "")))
            start = datetime.fromisoformat(state["from"]).date()
            end = datetime.fromisoformat(state["to"]).date()
        except (ValueError, KeyError, TypeError):
            return _fail(400, "Invalid cursor")
        matching = sorted(
            (
                e
                for e in self.events
                if e["evtName"] == state["name"] and start <= e["when"].date() <= end
            ),
            key=lambda e: e["when"],
        )
        page = matching[state["at"] : state["at"] + state["size"]]
        records = [
            {
                "ts": int(e["when"].strftime("%Y%m%d%H%M%S")),
                "event_props": e["props"],
                "profile": {"identity": e["identity"], "platform": "Web"},
            }
            for e in page
        ]
        answer: dict[str, Any] = {"status": "success", "records": records}
        if state["at"] + state["size"] < len(matching):
            answer["next_cursor"] = self._encode({**state, "at": state["at"] + state["size"]})
        return Reply(200, answer)

    @staticmethod
    def _encode(state: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
