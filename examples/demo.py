"""The demo: a local Segment sink, then Identify, Track and an API call against it.

It runs everything through the ``connector`` command exactly as a host would, from
the example inputs beside this file, and prints the output bundles and what the sink
received. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "connector"]


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


def run(module: str, connection: Path, parameters: str) -> list[dict[str, object]]:
    cmd = [
        *CLI,
        "run",
        module,
        "--connection",
        str(connection),
        "--parameters",
        str(HERE / parameters),
        "--context",
        str(HERE / "context.json"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{module} failed:\n{done.stderr}")
    bundles: list[dict[str, object]] = json.loads(done.stdout)
    return bundles


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
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
            shown = subprocess.run(
                [*CLI, "sink", "--show", str(store)], capture_output=True, text=True, check=True
            )
            received = json.loads(shown.stdout)
            print(f"== the sink received {len(received)} request(s)")
            for record in received:
                print(f"{record['method']} {record['path']} (auth: {record.get('auth')})")
                print(json.dumps(record["body"], indent=2))
        finally:
            sink.terminate()
            sink.wait(timeout=10)


if __name__ == "__main__":
    main()
