"""The service benchmark runs end to end in its smoke mode (tiny counts; no timing is
asserted, only that every run in both paths succeeded and the report is complete)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_module


def test_the_serve_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    done = run_module("benchmarks.serve", "--smoke", "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    for side in ("service", "inProcess", "inProcessDefault"):
        assert result[side]["failures"] == 0
        assert result[side]["runs"] == result["runsPerRound"]
        assert result[side]["p99"] >= result[side]["p50"] > 0
    assert len(result["serviceRssMiB"]) == result["rounds"] + 1
    assert "connector serve" in done.stdout
