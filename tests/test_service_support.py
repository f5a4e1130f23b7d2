"""Shared by the service tests: a real uvicorn server on 127.0.0.1 in a thread, over a
state the test chooses (data directory, limits, engine), and signing helpers."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

import connector
from connector.format.manifest import RetrySpec
from connector.runs.incomplete import IncompleteStore
from connector.service import Limits, ServiceState, create_app
from connector.service.server import bind
from connector.service.state import INCOMPLETE
from tests.conftest import ROOT

TOKEN = "test-token-0123456789abcdef"
SHARED_SECRET = "shh-shared-secret-42"
WRITE_KEY = "wk_Service_9f8e7d6c5b4a"
#: Fast retries: the tests exercise retry exhaustion against the sink's faults.
FAST_RETRY = RetrySpec(attempts=2, backoff=0.01, maxBackoff=0.02)


class Served:
    """A running service: its URL, a client with the token, and its state."""

    def __init__(self, url: str, state: ServiceState) -> None:
        self.url = url
        self.state = state
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def connection(self, sink_url: str, **extra: Any) -> str:
        values = {"writeKey": WRITE_KEY, "host": sink_url, "sharedSecret": SHARED_SECRET, **extra}
        answer = self.client.post("/v1/connections", json={"app": "segment", "values": values})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


@contextmanager
def served(
    data_dir: Path,
    *,
    limits: Limits | None = None,
    retry: RetrySpec | None = FAST_RETRY,
    registry: connector.Registry | None = None,
) -> Iterator[Served]:
    registry = registry or connector.load()
    engine = connector.Engine(
        registry, retry=retry, incomplete=IncompleteStore(data_dir / INCOMPLETE)
    )
    state = ServiceState.open(
        data_dir,
        registry,
        limits=limits,
        engine=engine,
        environ={"CONNECTOR_API_TOKEN": TOKEN},
    )
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(create_app(state), log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.01)
    running = Served(f"http://127.0.0.1:{sock.getsockname()[1]}", state)
    try:
        yield running
    finally:
        running.client.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        state.close()


def signed(body: bytes, secret: str = SHARED_SECRET) -> dict[str, str]:
    """The headers Segment's Webhooks destination puts on ``body``."""
    import hashlib
    import hmac

    return {"X-Signature": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


def spawn_service(
    data: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``connector serve --port 0`` in its own process, its output (stderr too) piped
    to read; ``env`` defaults to this process's with the tests' API token."""
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "serve", "--port", "0", "--data", str(data), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CONNECTOR_API_TOKEN": TOKEN} if env is None else env,
        cwd=ROOT,
    )


def start_service(data: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``connector serve --port 0`` in its own process; its URL once it listens."""
    process = spawn_service(data, *extra)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"listening on (http://\S+)", line)
    if found is None:
        process.kill()
        raise AssertionError(f"the service did not start: {line}{process.stdout.read()}")
    return process, found.group(1)
