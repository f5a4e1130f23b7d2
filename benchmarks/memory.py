"""Peak memory of one batch run, measured in a fresh process (``python -m benchmarks.memory``).

How, and why this way:

* A fresh process, so that nothing that ran before (the benchmark's own buffers) is in
  the figures.
* The run first warms up (imports, manifests, compiled templates, the HTTP pool, a
  first batch), then frees what it can (``gc.collect()``, glibc ``malloc_trim``), and
  takes the resident set (VmRSS) as the baseline. What the run adds above that is what
  it keeps per bundle: streaming keeps it flat; holding every bundle or result would
  add kilobytes per bundle.
* The peak is the kernel's high-water mark of the resident set (VmHWM), reset to the
  baseline just before the run by writing ``5`` to ``/proc/self/clear_refs`` (Linux).
  Not ``getrusage().ru_maxrss``: Linux carries it across ``fork``/``exec``, so in a
  child of the benchmark it reports the parent's (larger) size and hides the run.
  Where the reset is not possible, ``ru_maxrss`` is the fallback and ``method`` says so.
* Not tracemalloc by default: it hooks every allocation and slows the engine about 6x,
  which would make the 100,000-bundle run take a minute; ``--tracemalloc`` adds its peak
  (Python allocations only) for a closer look.

Prints one JSON line: bundles, ok, failed, seconds, method, baseline_bytes, peak_bytes,
delta_bytes, retained_bytes (RSS after the run minus the baseline); or
``{"available": false}`` when the engine has no ``run_batch``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import connector
from benchmarks import workload
from benchmarks.cases import BENCH_RETRY

__all__ = ["main", "measure"]

_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status, in bytes."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # Linux: kilobytes; macOS: bytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _release_free_memory() -> None:
    """Collect garbage and hand free heap pages back, so the baseline is what is in use."""
    gc.collect()
    name = ctypes.util.find_library("c")
    # Not glibc (no malloc_trim): the baseline is a little higher, the comparison holds.
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _consume(engine: connector.Engine, url: str, bundles: int) -> tuple[int, int]:
    """Run ``bundles`` inputs made lazily; keep nothing but two counters."""
    ok = failed = 0
    stream = workload.parameter_stream(bundles)
    for result in engine.run_batch("segment.track", workload.connection(url), stream):
        if isinstance(result, list):
            ok += 1
        else:
            failed += 1
    return ok, failed


def measure(url: str, bundles: int, warmup: int, traced: bool = False) -> dict[str, Any]:
    """Warm up, then run ``bundles`` through ``run_batch`` and report peak RSS growth."""
    with connector.Engine(connector.load(), retry=BENCH_RETRY) as engine:
        if not hasattr(engine, "run_batch"):
            return {"available": False}
        _consume(engine, url, warmup)
        _release_free_memory()
        if traced:
            tracemalloc.start()
        method = "VmHWM" if _reset_peak() else "ru_maxrss"
        baseline = _status_bytes("VmRSS") if method == "VmHWM" else _maxrss_bytes()
        start = time.perf_counter()
        ok, failed = _consume(engine, url, bundles)
        seconds = time.perf_counter() - start
        peak = _status_bytes("VmHWM") if method == "VmHWM" else _maxrss_bytes()
        traced_peak = tracemalloc.get_traced_memory()[1] if traced else None
        tracemalloc.stop()
        _release_free_memory()
        retained = _status_bytes("VmRSS") - baseline if method == "VmHWM" else None
    return {
        "available": True,
        "bundles": bundles,
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "method": method,
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "delta_bytes": peak - baseline,
        "retained_bytes": retained,
        "tracemalloc_peak_bytes": traced_peak,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--url", required=True, help="the benchmark receiver's base URL")
    parser.add_argument("--bundles", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also report tracemalloc's peak (~6x slower)"
    )
    args = parser.parse_args(argv)
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("the receiver must be on 127.0.0.1")
    print(json.dumps(measure(args.url, args.bundles, args.warmup, args.tracemalloc)))


if __name__ == "__main__":
    main()
