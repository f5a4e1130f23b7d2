"""Peak memory of one batch run, measured in a fresh process (``python -m benchmarks.memory``).

Why a fresh process: peak RSS (``ru_maxrss``) is a high-water mark for the whole process,
so it only says something about one run if nothing else ran there before.

Why RSS and not tracemalloc: tracemalloc hooks every allocation and slows the engine
several times over, which would make the 100,000-bundle run take minutes; RSS growth
is what an operator sees anyway. The run first warms up (imports, compiled templates,
HTTP pool, the first batches) so that the baseline already holds what any run needs;
what grows after that is what the run keeps per bundle. Streaming keeps it flat;
holding every bundle (or every result) would grow it by kilobytes per bundle.

Prints one JSON line: bundles, ok, failed, seconds, baseline_bytes, peak_bytes,
delta_bytes; or ``{"available": false}`` when the engine has no ``run_batch``.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from typing import Any

import connector
from benchmarks import workload
from benchmarks.cases import BENCH_RETRY

__all__ = ["main", "measure"]


def _maxrss_bytes() -> int:
    # Linux reports ru_maxrss in kilobytes (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


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


def measure(url: str, bundles: int, warmup: int) -> dict[str, Any]:
    """Warm up, then run ``bundles`` through ``run_batch`` and report peak RSS growth."""
    with connector.Engine(connector.load(), retry=BENCH_RETRY) as engine:
        if not hasattr(engine, "run_batch"):
            return {"available": False}
        _consume(engine, url, warmup)
        gc.collect()
        baseline = _maxrss_bytes()
        start = time.perf_counter()
        ok, failed = _consume(engine, url, bundles)
        seconds = time.perf_counter() - start
        peak = _maxrss_bytes()
    return {
        "available": True,
        "bundles": bundles,
        "ok": ok,
        "failed": failed,
        "seconds": seconds,
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "delta_bytes": peak - baseline,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--url", required=True, help="the benchmark receiver's base URL")
    parser.add_argument("--bundles", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=2_000)
    args = parser.parse_args(argv)
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("the receiver must be on 127.0.0.1")
    print(json.dumps(measure(args.url, args.bundles, args.warmup)))


if __name__ == "__main__":
    main()
