"""``python -m benchmarks.cpu``: CPU time per delivered event, for a machine too busy for
throughput figures.

On a shared machine under load, wall-clock throughput measures the other tenants as
much as the client; the CPU time a client spends per event does not (much). This
measures, on the same loopback receiver, the CPU seconds (user + system, every thread
and process of the client) per event delivered of:

* the official library (``track()`` then ``flush()``, in this process: its consumer
  thread included), and
* ``connector run segment.track --batch FILE`` as a process with its defaults (its
  worker processes included, through the children's resource usage).

It prints one JSON object. Information only: the targets are set on throughput
(``python -m benchmarks``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from benchmarks.cases import Bench, Config, _bulk_official, _CliRun
from benchmarks.receiver import Receiver

__all__ = ["main"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import connector

    events = args.events
    best = {"official": float("inf"), "cli": float("inf")}
    with Receiver(max_seconds=1200) as receiver, connector.Engine(connector.load()) as engine:
        bench = Bench(Config.full(), receiver, engine)
        cli = _CliRun(bench, events)
        try:
            _bulk_official(bench, 200, 60)  # warm-up
            _CliRun(bench, 200, cli.home).run()
            for _ in range(args.repeats):
                receiver.reset()
                start = time.process_time()
                _bulk_official(bench, events, 600)
                spent = time.process_time() - start
                assert int(receiver.count()["events"]) == events, "official: events lost"
                best["official"] = min(best["official"], spent / events)
                receiver.reset()
                start = _children_cpu()
                cli.run()
                spent = _children_cpu() - start
                assert int(receiver.count()["events"]) == events, "cli: events lost"
                best["cli"] = min(best["cli"], spent / events)
        finally:
            cli.close()
    result = {
        "events": events,
        "official_us_cpu_per_event": round(best["official"] * 1e6, 1),
        "cli_us_cpu_per_event": round(best["cli"] * 1e6, 1),
        "ratio": round(best["official"] / best["cli"], 2),
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
