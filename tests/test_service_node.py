"""A non-Python host: tests/node/service.test.mjs drives a real ``connector serve``
process with Node's built-in fetch and test runner. Skipped only where ``node`` is
missing outside CI (.ci/run installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connector.testing.sink import Sink
from tests.conftest import ROOT
from tests.test_service_support import TOKEN, start_service

NODE = shutil.which("node")


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[str]:
    process, url = start_service(tmp_path / "data")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_node_host_drives_the_service(service_process: str, sink: Sink) -> None:
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing in CI: .ci/run installs it")
        pytest.skip("node is not installed")
    done = subprocess.run(
        [NODE, "--test", "--test-reporter=tap", str(ROOT / "tests" / "node")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "SERVICE_URL": service_process,
            "SERVICE_TOKEN": TOKEN,
            "SINK_URL": sink.url,
        },
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^# pass 7$", done.stdout, re.M), done.stdout
    assert re.search(r"^# fail 0$", done.stdout, re.M), done.stdout
    assert any(m.get("userId") == "node-user-1" for m in sink.messages())
