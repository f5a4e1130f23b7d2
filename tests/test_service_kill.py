"""SIGKILL during runs and deliveries, restart, and nothing is lost.

A real ``connector serve`` process takes signed deliveries and track runs from
concurrent clients, with the sink slow so that runs are in flight, and is killed with
SIGKILL. Restarted on the same data directory:

* every delivery that was answered 200 has all its bundles, and no delivery has only
  some of them (one transaction each);
* every run answered 200 reached the sink; runs in flight are incomplete executions,
  and replaying them sends the same message (same messageId);
* after that replay, and the host re-sending the runs whose calls failed (as an
  at-least-once host does), every run has reached the sink.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx

from connector.testing.sink import Fault, Sink
from tests.test_service_support import SHARED_SECRET, TOKEN, WRITE_KEY, signed, start_service

DELIVERY_CLIENTS = 4
RUN_CLIENTS = 6
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_sigkill_during_runs_and_deliveries_loses_nothing(tmp_path: Path, sink: Sink) -> None:
    data = tmp_path / "data"
    process, url = start_service(data)
    api = httpx.Client(base_url=url, headers=AUTH, timeout=30)
    connection = api.post(
        "/v1/connections",
        json={
            "app": "segment",
            "values": {"writeKey": WRITE_KEY, "host": sink.url, "sharedSecret": SHARED_SECRET},
        },
    ).json()["id"]
    hook = api.post(
        "/v1/hooks", json={"module": "segment.watch_events", "connection": connection}
    ).json()
    # Runs take a while at the sink, so that some are in flight when the kill lands.
    sink.inject(*[Fault(status=None, delay=0.3)] * 10_000)

    stop = threading.Event()
    lock = threading.Lock()
    acked_deliveries: list[int] = []
    tried_deliveries: list[int] = []
    answered_runs: list[str] = []
    failed_runs: list[str] = []
    counter = iter(range(1_000_000))

    def deliver() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                with lock:
                    n = next(counter)
                    tried_deliveries.append(n)
                body = json.dumps(
                    {
                        "batch": [
                            {"type": "track", "event": "E", "userId": "u", "messageId": f"d{n}-a"},
                            {"type": "track", "event": "E", "userId": "u", "messageId": f"d{n}-b"},
                        ]
                    }
                ).encode()
                try:
                    answer = client.post(hook["url"], content=body, headers=signed(body))
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    with lock:
                        acked_deliveries.append(n)

    def run() -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
            while not stop.is_set():
                with lock:
                    user = f"run-{next(counter)}"
                try:
                    answer = client.post(
                        "/v1/modules/segment.track/run",
                        json={
                            "connection": connection,
                            "parameters": {"event": "E", "userId": user},
                        },
                    )
                except httpx.TransportError:
                    with lock:
                        failed_runs.append(user)
                    return
                with lock:
                    (answered_runs if answer.status_code == 200 else failed_runs).append(user)

    threads = [threading.Thread(target=deliver) for _ in range(DELIVERY_CLIENTS)]
    threads += [threading.Thread(target=run) for _ in range(RUN_CLIENTS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acked_deliveries) < 30 or len(answered_runs) < 10:
        assert time.monotonic() < deadline, "the service made too little progress"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    api.close()
    time.sleep(0.5)  # the sink finishes the slow requests the service left behind

    process, url = start_service(data)
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as api:
            # Deliveries: every acknowledged one whole, none in part.
            stored: dict[int, set[str]] = {}
            bundles = api.get(f"/v1/hooks/{hook['id']}/bundles", params={"limit": 1000})
            page = bundles.json()["bundles"]
            while page:
                for item in page:
                    message_id = item["bundle"]["messageId"]
                    stored.setdefault(int(message_id[1:].split("-")[0]), set()).add(message_id)
                api.post(f"/v1/hooks/{hook['id']}/ack", json={"ids": [b["id"] for b in page]})
                page = api.get(f"/v1/hooks/{hook['id']}/bundles", params={"limit": 1000}).json()[
                    "bundles"
                ]
            assert set(acked_deliveries) <= set(stored)
            for n, ids in stored.items():
                assert ids == {f"d{n}-a", f"d{n}-b"}, f"delivery {n} is partial"
            assert set(stored) <= set(tried_deliveries)

            # Runs: those answered reached the sink; those in flight were kept.
            seen = {m["userId"]: m["messageId"] for m in sink.messages()}
            assert set(answered_runs) <= set(seen)
            kept = api.get("/v1/incomplete").json()["executions"]
            assert kept, "no run was in flight at the kill: the test proved nothing"
            assert {e["state"] for e in kept} == {"pending"}
            sink.clear()
            replayed = api.post("/v1/incomplete/retry-all", json={"connection": connection}).json()[
                "outcomes"
            ]
            assert all(o["delivered"] for o in replayed), replayed
            for message in sink.messages():
                user = message["userId"]
                if user in seen:  # reached the sink before: replayed unchanged
                    assert message["messageId"] == seen[user]
                seen[user] = message["messageId"]
            assert api.get("/v1/incomplete").json()["executions"] == []
            # The host re-sends the runs whose calls failed (at-least-once).
            for user in failed_runs:
                if user not in seen:
                    again = api.post(
                        "/v1/modules/segment.track/run",
                        json={
                            "connection": connection,
                            "parameters": {"event": "E", "userId": user},
                        },
                    )
                    assert again.status_code == 200, again.text
            everything = set(answered_runs) | set(failed_runs)
            delivered = {m["userId"] for m in sink.messages()} | set(seen)
            assert everything <= delivered
    finally:
        process.terminate()
        process.wait(timeout=15)
