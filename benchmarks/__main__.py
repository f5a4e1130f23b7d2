"""``python -m benchmarks``: every case in one run, one table of ratios.

Exit status: 0 when every case ran (targets missed or not: this is a measurement, not a
test; ``--strict`` makes a missed target exit 1), 1 when a case raised, 3 when the
whole run overran its time limit and was stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

import connector
from benchmarks.cases import BENCH_RETRY, CASES, Bench, Config, Row, compile_engine
from benchmarks.receiver import ROOT, Receiver
from benchmarks.report import machine_info, render_machine, render_table, to_json

#: Hard limits for the whole run; a full run normally takes 3-5 minutes (a million
#: lines through the command for its memory).
TIME_LIMIT = {"full": 1800.0, "smoke": 120.0}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark the engine against segment-analytics-python and raw httpx.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny counts (seconds): exercises every path, for CI"
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the results here")
    parser.add_argument(
        "--case",
        action="append",
        choices=[name for name, _, _ in CASES],
        help="run only this case (repeatable); default: all",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed (not with --smoke)"
    )
    return parser.parse_args(argv)


def _watchdog(limit: float, receiver: Receiver) -> threading.Timer:
    """Stop everything if the run overruns: a benchmark must end by itself."""

    def expire() -> None:
        print(f"benchmarks: over the {limit:.0f} s time limit, stopping", file=sys.stderr)
        receiver.stop()
        os._exit(3)

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    config = Config.smoke() if args.smoke else Config.full()
    selected = [case for case in CASES if not args.case or case[0] in args.case]
    info = machine_info(ROOT)
    print(render_machine(info, config), flush=True)
    compile_engine()  # before any case: every process a case starts reads the bytecode
    rows: list[Row] = []
    started = time.perf_counter()
    receiver = Receiver(max_seconds=TIME_LIMIT[config.mode] + 60)
    timer = _watchdog(TIME_LIMIT[config.mode], receiver)
    try:
        with receiver, connector.Engine(connector.load(), retry=BENCH_RETRY) as engine:
            bench = Bench(config, receiver, engine)
            for name, case, labels in selected:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                try:
                    rows += case(bench)
                except Exception as exc:
                    traceback.print_exc()
                    rows += [Row.failed(label, exc) for label in labels]
    finally:
        timer.cancel()
    elapsed = time.perf_counter() - started
    print()
    print(render_table(rows))
    print(f"\n(total {elapsed:.1f} s)")
    if args.json is not None:
        result = to_json(info, config, rows) | {"seconds": elapsed}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if any("error" in row.data for row in rows):
        return 1
    if args.strict and not args.smoke and any(row.met is False for row in rows):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
