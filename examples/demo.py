"""The demo: a local Segment sink, then Identify, Track and an API call against it;
then the CleverTap -> Segment flow: a local CleverTap fake polled by
``clevertap.watch_events``, each new event mapped onto ``segment.track``.

It runs every module through the ``connector`` command exactly as a host would, from
the example inputs beside this file, and prints the output bundles and what the sink
received. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "connector"]
# The CleverTap fake lives with the tests (tests/fakes/); the demo serves it in-process.
sys.path.insert(0, str(HERE.parent))


def start_sink(store: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*CLI, "sink", "--port", "0", "--store", str(store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"the sink did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1]


def run(
    module: str, connection: Path, parameters: str, context: str | None = None
) -> list[dict[str, object]]:
    cmd = [
        *CLI,
        "run",
        module,
        "--connection",
        str(connection),
        "--parameters",
        str(HERE / parameters),
        "--context",
        context if context is not None else str(HERE / "context.json"),
    ]
    return _json_out(cmd, module)


def _json_out(cmd: list[str], what: str) -> list[dict[str, object]]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr}")
    bundles: list[dict[str, object]] = json.loads(done.stdout)
    return bundles


def received(store: Path) -> list[dict[str, Any]]:
    shown = subprocess.run(
        [*CLI, "sink", "--show", str(store)], capture_output=True, text=True, check=True
    )
    records: list[dict[str, Any]] = json.loads(shown.stdout)
    return records


def clevertap_to_segment(tmp: Path, segment: Path, store: Path, seen: int) -> None:
    """Poll CleverTap for Charged events and send each new one to Segment as a track."""
    from tests.fakes import CleverTapFake

    now = datetime.now(UTC).replace(microsecond=0)
    with CleverTapFake() as clevertap:
        clevertap.add_event(
            "Charged",
            "ada@example.com",
            now - timedelta(minutes=20),
            {"Amount": 300, "Currency": "USD", "Payment mode": "Credit Card"},
        )
        clevertap.add_event("App Launched", "ada@example.com", now - timedelta(minutes=15))
        clevertap.add_event(
            "Charged", "bob@example.com", now - timedelta(minutes=10), {"Amount": 5}
        )
        conn = tmp / "clevertap.json"
        # The local fake's URL as the host, instead of us1.api.clevertap.com.
        conn.write_text(json.dumps(clevertap.connection()))
        state = tmp / "clevertap-state.json"
        watch = {"eventName": "Charged", "start": "all"}
        print(f"== CleverTap -> Segment (a CleverTap fake on {clevertap.url})")
        for round_ in (1, 2):
            if round_ == 2:
                clevertap.add_event(
                    "Charged", "cy@example.com", now, {"Amount": 7, "Currency": "EUR"}
                )
            poll = [*CLI, "poll", "clevertap.watch_events", "-c", str(conn)]
            bundles = _json_out(
                [*poll, "-p", json.dumps(watch), "--state", str(state)], "clevertap.watch_events"
            )
            print(f"poll {round_}: {len(bundles)} new Charged event(s)")
            for bundle in bundles:
                run(
                    "segment.track",
                    segment,
                    "clevertap_to_segment.json",
                    json.dumps({"ct": bundle}),
                )
                print(f"  {bundle['identity']} {bundle['event_props']} -> segment.track")
    forwarded = received(store)[seen:]
    print(f"== the sink received {len(forwarded)} track(s) from CleverTap")
    for record in forwarded:
        body = record["body"]
        print(f"{record['method']} {record['path']}: {body['event']} by {body['userId']}")
        print(f"  properties {json.dumps(body['properties'])}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # The demo's runs keep their state (incomplete executions, the manifest cache)
        # in its own folder, never in the user's ~/.connector.
        os.environ["CONNECTOR_HOME"] = tmp
        store = Path(tmp) / "sink.jsonl"
        sink, url = start_sink(store)
        try:
            connection = json.loads((HERE / "connection.json").read_text())
            connection["host"] = url  # point the Segment app at the local sink
            conn_file = Path(tmp) / "connection.json"
            conn_file.write_text(json.dumps(connection))
            print(f"Sink listening on {url}\n")
            for module, params in (
                ("segment.identify", "identify.json"),
                ("segment.track", "track.json"),
                ("segment.api_call", "api_call.json"),
            ):
                bundles = run(module, conn_file, params)
                print(f"== {module} ({params}) -> output bundles")
                print(json.dumps(bundles, indent=2))
                print()
            records = received(store)
            print(f"== the sink received {len(records)} request(s)")
            for record in records:
                print(f"{record['method']} {record['path']} (auth: {record.get('auth')})")
                print(json.dumps(record["body"], indent=2))
            print()
            clevertap_to_segment(Path(tmp), conn_file, store, len(records))
        finally:
            sink.terminate()
            sink.wait(timeout=10)


if __name__ == "__main__":
    main()
