"""A fake of Segment's Profile API: traits and events of profiles, with cursor pages."""

from __future__ import annotations

import base64
from typing import Any

from tests.fakes._server import FakeAPI, Reply, Request

__all__ = ["ProfilesFake"]

_BASE = "/v1/spaces/{space}/collections/{collection}/profiles/{external_id}"


def _basic_user(header: str) -> str | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return None
    return user if sep and password == "" else None


def _limit(request: Request, default: int = 10, most: int = 200) -> int | Reply:
    raw = request.query.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        return Reply(400, {"error": {"code": "bad_request", "message": f"limit must be 1-{most}"}})
    return int(raw)


def _offset(request: Request) -> int | Reply:
    raw = request.query.get("next", "") or "0"
    if not raw.isdigit():
        return Reply(400, {"error": {"code": "bad_request", "message": "invalid next cursor"}})
    return int(raw)


class ProfilesFake(FakeAPI):
    """Profiles by ``(space, collection, external id)``; ``token`` is the only access token
    accepted (as the Basic username, with an empty password)."""

    def __init__(self, token: str = "pat_test_token", space: str = "spa_test") -> None:
        super().__init__()
        self.token = token
        self.space = space
        self.profiles: dict[tuple[str, str], dict[str, Any]] = {}
        self.route("GET", _BASE + "/traits", self._traits)
        self.route("GET", _BASE + "/events", self._events)

    def add_profile(
        self,
        external_id: str,
        traits: dict[str, Any] | None = None,
        events: list[dict[str, Any]] | None = None,
        collection: str = "users",
    ) -> None:
        """Events are given in any order; the API answers them newest first."""
        self.profiles[(collection, external_id)] = {
            "traits": dict(traits or {}),
            "events": sorted(events or [], key=lambda e: e["timestamp"], reverse=True),
        }

    def add_event(self, external_id: str, event: dict[str, Any], collection: str = "users") -> None:
        profile = self.profiles[(collection, external_id)]
        profile["events"].append(event)
        profile["events"].sort(key=lambda e: e["timestamp"], reverse=True)

    def _profile(self, request: Request, args: dict[str, str]) -> dict[str, Any] | Reply:
        if _basic_user(request.headers.get("authorization", "")) != self.token:
            return Reply(
                401, {"error": {"code": "unauthorized", "message": "invalid access token"}}
            )
        if args["space"] != self.space:
            return Reply(404, {"error": {"code": "not_found", "message": "space not found"}})
        if args["collection"] not in ("users", "accounts"):
            return Reply(404, {"error": {"code": "not_found", "message": "collection not found"}})
        profile = self.profiles.get((args["collection"], args["external_id"]))
        if profile is None:
            return Reply(404, {"error": {"code": "not_found", "message": "profile not found"}})
        return profile

    def _cursor(self, request: Request, has_more: bool, after: int) -> dict[str, Any]:
        return {
            "url": request.path,
            "has_more": has_more,
            "next": str(after) if has_more else "",
        }

    def _page_of(
        self, request: Request, args: dict[str, str], most: int
    ) -> tuple[dict[str, Any], int, int] | Reply:
        """The profile asked for and the page's limit (at most ``most``) and offset, or
        the error reply for the first of them at fault."""
        profile = self._profile(request, args)
        limit, offset = _limit(request, 10, most), _offset(request)
        for failed in (profile, limit, offset):
            if isinstance(failed, Reply):
                return failed
        assert isinstance(profile, dict) and isinstance(limit, int) and isinstance(offset, int)
        return profile, limit, offset

    def _traits(self, request: Request, args: dict[str, str]) -> Reply:
        page_of = self._page_of(request, args, 200)
        if isinstance(page_of, Reply):
            return page_of
        profile, limit, offset = page_of
        names = sorted(profile["traits"])
        include = request.query.get("include", "")
        if include:
            wanted = {name.strip() for name in include.split(",")}
            names = [name for name in names if name in wanted]
        page = names[offset : offset + limit]
        more = offset + limit < len(names)
        traits = {name: profile["traits"][name] for name in page}
        return Reply(200, {"traits": traits, "cursor": self._cursor(request, more, offset + limit)})

    def _events(self, request: Request, args: dict[str, str]) -> Reply:
        page_of = self._page_of(request, args, 100)
        if isinstance(page_of, Reply):
            return page_of
        profile, limit, offset = page_of
        events = profile["events"]
        page = events[offset : offset + limit]
        more = offset + limit < len(events)
        return Reply(200, {"data": page, "cursor": self._cursor(request, more, offset + limit)})
