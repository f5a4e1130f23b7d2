"""Shared fixtures: the packaged registry, an engine, and a real loopback sink."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

import connector
from connector.format.manifest import RetrySpec
from connector.testing.sink import Sink
from tests.fakeapi import APP_DIR, FakeAPI

# In CI the property tests draw the same examples every run (a failure there is then
# reproducible from the log); locally they explore new ones each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent


def run_module(
    module: str,
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in a real process, output captured as text (``input``
    is its standard input)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=env,
    )


def run_cli(
    *args: str,
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The ``connector`` command in a real process, as a host scripts it (``input`` is
    its standard input)."""
    return run_module("connector", *args, cwd=cwd, env=env, timeout=timeout, input=input)


def kill_cli_after(sink: Sink, requests: int, *args: str, wait: float = 60) -> None:
    """Start the ``connector`` command and SIGKILL it once ``sink`` has received
    ``requests`` requests (within ``wait`` seconds): a crash mid-run, for the tests that
    check what a killed run leaves behind."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + wait
        while sink.requests_count < requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.requests_count >= requests
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def write_app(root: Path, name: str, modules: dict[str, dict[str, Any]], **app: Any) -> Path:
    """An app folder ``root/name`` for a test: its app.json (a label, a base URL and a
    connection without auth unless ``app`` sets them) listing ``modules``, one manifest
    file each. Load it with ``connector.load(folder, packaged=False)``."""
    folder = root / name
    folder.mkdir()
    manifest = {
        "name": name,
        "label": name.title(),
        "baseUrl": f"https://{name}.example",
        "connection": {"auth": {"type": "none"}},
        **app,
        "modules": list(modules),
    }
    (folder / "app.json").write_text(json.dumps(manifest), encoding="utf-8")
    for file, module in modules.items():
        (folder / file).write_text(json.dumps(module), encoding="utf-8")
    return folder


WRITE_KEY = "wk_Test_9f8e7d6c5b4a"
#: Every module the package ships, sorted (the registry's order).
SHIPPED_MODULES = [
    "clevertap.upload_events",
    "clevertap.watch_events",
    "livelike.track_event",
    "livelike_cloud.send_event",
    "segment.alias",
    "segment.api_call",
    "segment.group",
    "segment.identify",
    "segment.page",
    "segment.screen",
    "segment.track",
    "segment.watch_events",
    "segment_profiles.get_traits",
    "segment_profiles.list_events",
    "segment_profiles.watch_events",
]


@pytest.fixture(scope="session", autouse=True)
def _own_connector_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The tests, and the CLI processes they start, use a manifest cache and a home (for
    incomplete executions) of their own, never the user's ~/.connector/cache or
    ~/.connector (whose store may be another version's)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONNECTOR_CACHE", str(tmp_path_factory.mktemp("manifest-cache")))
        patch.setenv("CONNECTOR_HOME", str(tmp_path_factory.mktemp("connector-home")))
        yield


@pytest.fixture(scope="session")
def registry() -> connector.Registry:
    return connector.load()


@pytest.fixture(scope="session")
def fakeapi_registry() -> connector.Registry:
    """The fixture app tests/apps/fakeapi alone, without the packaged apps."""
    return connector.load(APP_DIR, packaged=False)


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    """tests/fakeapi.py's fake of an API, serving on 127.0.0.1 for one test."""
    with FakeAPI() as running:
        yield running


@pytest.fixture(scope="module")
def counting_engine(
    registry: connector.Registry,
) -> Iterator[tuple[connector.Engine, list[httpx.Request]]]:
    """An engine over the packaged apps whose every request is answered 200 by a mock
    transport and kept in the list beside it: for tests that check nothing was sent."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"success": True})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with connector.Engine(registry, client=client) as engine:
        yield engine, sent


@pytest.fixture
def sink() -> Iterator[Sink]:
    with Sink() as running:
        yield running


@pytest.fixture
def connection(sink: Sink) -> dict[str, str]:
    """A Segment connection pointed at the loopback sink."""
    return {"writeKey": WRITE_KEY, "host": sink.url}


#: Fast retries for tests: same attempts and statuses as Segment's policy, tiny waits.
FAST_RETRY = RetrySpec(attempts=4, backoff=0.01, maxBackoff=0.05)


@pytest.fixture
def engine(registry: connector.Registry) -> Iterator[connector.Engine]:
    with connector.Engine(registry, retry=FAST_RETRY) as running:
        yield running
