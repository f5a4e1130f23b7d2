"""The service benchmark runs end to end in its smoke mode (tiny counts; no timing is
asserted, only that every run in both paths succeeded and the report is complete)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_serve_benchmark_runs_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.serve", "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    for side in ("service", "inProcess", "inProcessDefault"):
        assert result[side]["failures"] == 0
        assert result[side]["runs"] == result["runsPerRound"]
        assert result[side]["p99"] >= result[side]["p50"] > 0
    assert len(result["serviceRssMiB"]) == result["rounds"] + 1
    assert "connector serve" in done.stdout
