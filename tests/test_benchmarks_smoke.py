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


class _Counts:
    """A receiver's counters as ``_delivered`` reads them (no process)."""

    def reset(self) -> dict[str, float]:
        return {"events": 0, "cpu": 1.0, "errors": 0}

    def count(self) -> dict[str, float]:
        return {"events": 5, "cpu": 2.0, "errors": 0}


@pytest.mark.parametrize("deferred", [False, True])
def test_a_sides_failures_are_counted_after_the_clock_stops(
    monkeypatch: pytest.MonkeyPatch, deferred: bool
) -> None:
    """A process's failed lines are read from its output file: the benchmark's check,
    not the user's run, so the timing ends before it (and a plain count still works)."""
    from benchmarks import cases

    clock = iter([10.0, 12.0])
    calls: list[str] = []

    def now() -> float:
        calls.append("clock")
        return next(clock)

    def count() -> int:
        calls.append("count")
        return 3

    monkeypatch.setattr(cases.time, "perf_counter", now)
    got = cases._delivered(_Counts(), (lambda: count) if deferred else count)  # type: ignore[arg-type]
    assert calls == (["clock", "clock", "count"] if deferred else ["clock", "count", "clock"])
    assert (got.seconds, got.delivered, got.failed, got.receiver_cpu) == (2.0, 5, 3, 1.0)
