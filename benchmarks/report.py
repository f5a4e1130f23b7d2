"""Machine info and the results table.

Figures are only meaningful with the machine they came from (cores, CPU, versions), so
every printed table and JSON file carries it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.cases import Config, Row

__all__ = ["machine_info", "render_machine", "render_table", "to_json"]

COLUMNS = ("case", "ours", "peer", "ratio", "target", "met?")


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_revision(root: Path) -> str:
    """The commit measured, with ``+dirty`` when the work tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info(root: Path) -> dict[str, Any]:
    """CPU, cores, load, versions and date: what the figures depend on."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = -1.0
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_1min_at_start": round(load, 2),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "httpx": _version("httpx"),
        "segment-analytics-python": _version("segment-analytics-python"),
        "connector": _version("connector"),
        "revision": _git_revision(root),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def render_machine(info: dict[str, Any], config: Config) -> str:
    return (
        f"machine: {info['cpu']}, {info['cores']} cores, load {info['load_1min_at_start']}, "
        f"{info['os']}\n"
        f"python {info['python']}, httpx {info['httpx']}, "
        f"segment-analytics-python {info['segment-analytics-python']}, "
        f"connector {info['connector']} ({info['revision']})\n"
        f"date: {info['date']}, mode: {config.mode}"
    )


def _cells(row: Row) -> tuple[str, ...]:
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
    met = "-" if row.met is None else ("yes" if row.met else "NO")
    return (row.case, row.ours, row.peer, ratio, row.target, met)


def render_table(rows: Sequence[Row]) -> str:
    """A plain-text table (Markdown-compatible), then each row's note below it."""
    cells = [COLUMNS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells[1:]]
    notes = [f"- {row.case}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)


def to_json(info: dict[str, Any], config: Config, rows: Sequence[Row]) -> dict[str, Any]:
    return {
        "machine": info,
        "config": vars(config) | {"memory_bundles": list(config.memory_bundles)},
        "rows": [
            {
                "case": row.case,
                "ours": row.ours,
                "peer": row.peer,
                "ratio": row.ratio,
                "target": row.target,
                "met": row.met,
                "note": row.note,
                "data": row.data,
            }
            for row in rows
        ],
    }
