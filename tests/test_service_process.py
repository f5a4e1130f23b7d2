"""``connector serve`` as a process: binds 127.0.0.1 by default, prints a new token
once (keeping only its hash), and stops on SIGTERM without a traceback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import httpx

from tests.test_service_support import spawn_service


def _start(data: Path) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "CONNECTOR_API_TOKEN"}
    process = spawn_service(data, env=env)
    assert process.stdout is not None
    return process, [process.stdout.readline(), process.stdout.readline()]


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    # uvicorn shuts down gracefully, then re-raises the signal for its parent to see.
    assert process.returncode in (0, -signal.SIGTERM), out
    assert "Traceback" not in out, out
    return out


def test_first_start_prints_a_token_once_and_binds_loopback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    process, lines = _start(data)
    try:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+) ", lines[0])
        assert found, lines
        url = found.group(1)
        token = re.search(r"API token \(shown once.*\): (cst_\S+)", lines[1])
        assert token, lines
        assert httpx.get(
            url + "/v1", headers={"Authorization": f"Bearer {token.group(1)}"}
        ).is_success
        assert (
            httpx.get(url + "/v1", headers={"Authorization": "Bearer cst_other"}).status_code == 401
        )
    finally:
        rest = _stop(process)
    stored = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
    assert token.group(1).encode() not in stored + rest.encode()

    again, lines = _start(data)
    try:
        url = re.search(r"listening on (\S+) ", lines[0]).group(1)  # type: ignore[union-attr]
        assert httpx.get(
            url + "/v1", headers={"Authorization": f"Bearer {token.group(1)}"}
        ).is_success
    finally:
        rest = _stop(again)
    assert "cst_" not in "".join(lines) + rest  # never printed again
