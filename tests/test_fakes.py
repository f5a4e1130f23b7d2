"""The local fakes keep the contracts the seed apps' manifests are written against."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx

from tests.fakes import CleverTapFake, LiveLikeFake, ProfilesFake


def _basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:".encode()).decode()}


def test_profiles_pages_traits_and_events_and_refuses_strangers() -> None:
    with ProfilesFake() as fake:
        events = [
            {"message_id": f"m{i}", "timestamp": f"2026-11-0{i}T00:00:00Z"} for i in range(1, 6)
        ]
        fake.add_profile("user_id:u1", {"a": 1, "b": 2, "c": 3}, events)
        base = f"{fake.url}/v1/spaces/spa_test/collections/users/profiles/user_id:u1"
        auth = _basic(fake.token)
        first = httpx.get(f"{base}/traits", params={"limit": 2}, headers=auth).json()
        assert first["traits"] == {"a": 1, "b": 2} and first["cursor"]["has_more"]
        rest = httpx.get(
            f"{base}/traits", params={"limit": 2, "next": first["cursor"]["next"]}, headers=auth
        ).json()
        assert rest["traits"] == {"c": 3} and not rest["cursor"]["has_more"]
        page = httpx.get(f"{base}/events", params={"limit": 2}, headers=auth).json()
        assert [e["message_id"] for e in page["data"]] == ["m5", "m4"]
        assert httpx.get(f"{base}/traits", headers=_basic("wrong")).status_code == 401
        unknown = base.replace("user_id:u1", "user_id:nobody")
        assert httpx.get(f"{unknown}/traits", headers=auth).status_code == 404


def test_livelike_validates_app_and_events() -> None:
    with LiveLikeFake() as fake:
        app = f"{fake.url}/api/v1/applications/{fake.client_id}"
        auth = {"Authorization": f"Bearer {fake.token}"}
        assert httpx.get(f"{app}/validate-app/", headers=auth).status_code == 200
        assert (
            httpx.get(f"{app}/validate-app/", headers={"Authorization": "Bearer x"}).status_code
            == 401
        )
        good = {"action_key": "badge", "user_id": "u1", "timestamp": "2026-11-30T10:00:00Z"}
        bad = {"action_name": "x", "timestamp": "yesterday"}
        refused = httpx.post(f"{app}/segment-events/", json={"events": [good, bad]}, headers=auth)
        assert refused.status_code == 400 and set(refused.json()["events"]) == {"1"}
        assert fake.events == []
        accepted = httpx.post(f"{app}/segment-events/", json={"events": [good]}, headers=auth)
        assert accepted.status_code == 202 and fake.events == [good]


def test_clevertap_upload_reports_unprocessed_and_events_page_by_cursor() -> None:
    with CleverTapFake() as fake:
        auth = {"X-CleverTap-Account-Id": fake.account_id, "X-CleverTap-Passcode": fake.passcode}
        good = {
            "identity": "u1",
            "ts": 1764496800,
            "type": "event",
            "evtName": "Charged",
            "evtData": {},
        }
        answer = httpx.post(
            f"{fake.url}/1/upload", json={"d": [good, {"type": "event"}]}, headers=auth
        )
        assert answer.status_code == 200
        assert answer.json()["processed"] == 1 and answer.json()["unprocessed"][0]["index"] == 1
        for hour in range(3):
            fake.add_event(
                "Charged", f"u{hour}", datetime(2026, 11, 30, hour, tzinfo=UTC), {"n": hour}
            )
        query = {"event_name": "Charged", "from": 20261130, "to": 20261130}
        cursor = httpx.post(
            f"{fake.url}/1/events.json", params={"batch_size": 2}, json=query, headers=auth
        ).json()["cursor"]
        seen = []
        while cursor:
            page = httpx.get(
                f"{fake.url}/1/events.json", params={"cursor": cursor}, headers=auth
            ).json()
            seen += [record["ts"] for record in page["records"]]
            cursor = page.get("next_cursor")
        assert seen == [20261130000000, 20261130010000, 20261130020000]  # oldest first, 2 a page
        assert httpx.post(f"{fake.url}/1/upload", json={"d": []}).status_code == 401
