"""A fake of LiveLike's Segment destination API ("LiveLike Cloud Mode")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.fakes._server import FakeAPI, Reply, Request

__all__ = ["LiveLikeFake"]

_APP = "/api/v1/applications/{client_id}"


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _event_errors(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["an event must be an object"]
    errors = []
    if not isinstance(event.get("action_key"), str) or not event["action_key"]:
        errors.append("action_key: this field is required")
    if not event.get("user_id") and not event.get("livelike_profile_id"):
        errors.append("user_id or livelike_profile_id: one of them is required")
    if not _iso(event.get("timestamp")):
        errors.append("timestamp: an ISO 8601 date-time is required")
    if "properties" in event and not isinstance(event["properties"], dict):
        errors.append("properties: must be an object")
    return errors


class LiveLikeFake(FakeAPI):
    """One application, ``client_id``, whose producer token is ``token`` (Bearer)."""

    def __init__(self, client_id: str = "ll-client-1", token: str = "ll_producer_token") -> None:
        super().__init__()
        self.client_id = client_id
        self.token = token
        self.events: list[dict[str, Any]] = []
        self.route("GET", _APP + "/validate-app/", self._validate)
        self.route("POST", _APP + "/segment-events/", self._segment_events)

    def _check(self, request: Request, args: dict[str, str]) -> Reply | None:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply(401, {"detail": "Invalid producer token."})
        if args["client_id"] != self.client_id:
            return Reply(404, {"detail": "Application not found."})
        return None

    def _validate(self, request: Request, args: dict[str, str]) -> Reply:
        return self._check(request, args) or Reply(
            200, {"client_id": self.client_id, "valid": True}
        )

    def _segment_events(self, request: Request, args: dict[str, str]) -> Reply:
        failed = self._check(request, args)
        if failed is not None:
            return failed
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"detail": "JSON parse error."})
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return Reply(400, {"events": ["a non-empty list of events is required"]})
        errors = {str(i): e for i, event in enumerate(events) if (e := _event_errors(event))}
        if errors:
            return Reply(400, {"events": errors})
        self.events.extend(events)
        return Reply(202, {"received": len(events)})
