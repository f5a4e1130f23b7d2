"""The benchmark still runs: ``python -m benchmarks --smoke`` exits 0 with every row.

Only the smoke mode runs here (seconds, tiny counts): the figures are noise at that
size and targets are not checked. It runs in a subprocess, as ``make bench`` would, so
the receiver process, the cold-start and memory subprocesses are all exercised.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from benchmarks.cases import ROW_LABELS
from tests.conftest import run_module


def _official_installed() -> bool:
    try:
        return importlib.util.find_spec("segment.analytics") is not None
    except ModuleNotFoundError:
        return False


pytestmark = pytest.mark.skipif(
    not _official_installed(),
    reason="segment-analytics-python is not installed (the bench extra: pip install -e '.[bench]')",
)


def test_smoke_run_prints_every_case(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_module("benchmarks", "--smoke", "--json", str(out), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for label in ROW_LABELS:
        assert any(line.startswith(f"| {label} ") for line in table), (label, done.stdout)
    assert "machine: " in done.stdout

    result = json.loads(out.read_text())
    assert result["config"]["mode"] == "smoke"
    assert [row["case"] for row in result["rows"]] == list(ROW_LABELS)
    assert not [row for row in result["rows"] if "error" in row["data"]]
    assert result["machine"]["cores"] >= 1
