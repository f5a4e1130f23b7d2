"""``python -m benchmarks.serve``: ``connector serve`` under 200 concurrent clients on
loopback, against the same runs in-process with ``Engine.arun_many``, in one run.

Three processes share the machine: the fast receiver (:mod:`benchmarks.receiver`) as
Segment, the service (``python -m connector serve``, as a host starts it), and this
one, which first drives the service with ``--clients`` concurrent clients (each one
keep-alive connection, sending ``segment.track`` runs one after another with a stored
connection) and then makes the same number of runs in-process with ``arun_many`` at the
same concurrency. Both sides keep incomplete executions (write-ahead), so they do the
same work per run.

The clients are a minimal HTTP/1.1 writer and reader on asyncio streams, with the
request bytes made beforehand: the point is the service's cost, and a heavier client
would take CPU from it on a 2-core machine.

Reported: CPU seconds per run, the service process's own against the in-process
engine's (on a shared machine throughput follows each process's share of the cores;
CPU per run does not); throughput (runs/s) each way and their ratio (target: the service at least
0.5x in-process), per-run latency p50/p99 each way (in-process: the same runs timed one
by one under the same concurrency), also in-process at ``arun_many``'s default
concurrency of 16, which is faster there than 200 (the target is checked against the
faster of the two), and the service's resident memory after each round
(flat: the growth from the first to the last round is printed). ``--smoke`` runs tiny
counts, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import connector
from benchmarks.receiver import ROOT, Receiver
from benchmarks.workload import connection as receiver_connection
from connector.runs.incomplete import IncompleteStore

__all__ = ["main"]

TOKEN = "bench-token-0123456789abcdef"
#: arun_many's own default concurrency: the in-process baseline at its best, since
#: 200 runs at once through one pooled client is slower in-process than 16.
_ARUN_MANY_DEFAULT = 16


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by a process (this one by default)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class _Service:
    """``connector serve --port 0`` in its own process, over a fresh data directory."""

    def __init__(self, data: Path) -> None:
        env = {**os.environ, "CONNECTOR_API_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "serve", "--port", "0", "--data", str(data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on " not in line:
            self.proc.kill()
            raise RuntimeError(f"the service did not start: {line}")
        url = line.split("listening on ", 1)[1].split()[0]
        self.host, port = url.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length)
    return status, body


def _run_request(host: str, port: int, connection_id: str, user: str) -> bytes:
    body = json.dumps(
        {"connection": connection_id, "parameters": {"event": "Bench", "userId": user}}
    ).encode()
    head = (
        f"POST /v1/modules/segment.track/run HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _create_connection(service: _Service, receiver_url: str) -> str:
    reader, writer = await asyncio.open_connection(service.host, service.port)
    body = json.dumps({"app": "segment", "values": receiver_connection(receiver_url)}).encode()
    raw = (
        f"POST /v1/connections HTTP/1.1\r\nHost: {service.host}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    status, answer = await _request(reader, writer, raw)
    writer.close()
    if status != 201:
        raise RuntimeError(f"creating the connection failed: {status} {answer!r}")
    return str(json.loads(answer)["id"])


async def _drive_service(
    service: _Service, connection_id: str, clients: int, per_client: int
) -> dict[str, Any]:
    """``clients`` keep-alive connections, each sending ``per_client`` runs in turn."""
    latencies: list[float] = []
    failures = 0

    async def client(index: int) -> None:
        nonlocal failures
        requests = [
            _run_request(service.host, service.port, connection_id, f"c{index}-{i}")
            for i in range(per_client)
        ]
        reader, writer = await asyncio.open_connection(service.host, service.port)
        try:
            for raw in requests:
                started = time.perf_counter()
                status, _ = await _request(reader, writer, raw)
                latencies.append(time.perf_counter() - started)
                failures += status != 200
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "runs": clients * per_client,
        "seconds": elapsed,
        "rate": clients * per_client / elapsed,
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
        "failures": failures,
    }


async def _in_process(
    engine: connector.Engine, receiver_url: str, clients: int, runs: int
) -> dict[str, Any]:
    """The same runs with ``arun_many`` (throughput), then timed one by one under the
    same concurrency (latency)."""
    conn = receiver_connection(receiver_url)
    params: list[Mapping[str, Any]] = [{"event": "Bench", "userId": f"p-{i}"} for i in range(runs)]
    cpu = _cpu()
    started = time.perf_counter()
    results = await engine.arun_many("segment.track", conn, params, concurrency=clients)
    elapsed = time.perf_counter() - started
    cpu = _cpu() - cpu
    failures = sum(isinstance(r, Exception) for r in results)

    semaphore = asyncio.Semaphore(clients)
    latencies: list[float] = []

    async def timed(parameters: Mapping[str, Any]) -> None:
        async with semaphore:
            begun = time.perf_counter()
            await engine.arun("segment.track", conn, parameters)
            latencies.append(time.perf_counter() - begun)

    await asyncio.gather(*(timed(p) for p in params))
    return {
        "runs": runs,
        "seconds": elapsed,
        "rate": runs / elapsed,
        "cpuPerRun": cpu / runs,
        "p50": _percentile(latencies, 0.5),
        "p99": _percentile(latencies, 0.99),
        "failures": failures,
    }


async def _measure(args: argparse.Namespace, receiver: Receiver, work: Path) -> dict[str, Any]:
    service = _Service(work / "service")
    try:
        connection_id = await _create_connection(service, receiver.url)
        # Warm-up: imports, the connection cache, pooled upstream connections.
        await _drive_service(service, connection_id, min(args.clients, 20), 5)
        rounds = []
        memory = [_rss(service.proc.pid)]
        for _ in range(args.rounds):
            service_cpu, client_cpu = _cpu(service.proc.pid), _cpu()
            done = await _drive_service(service, connection_id, args.clients, args.runs)
            done["cpuPerRun"] = (_cpu(service.proc.pid) - service_cpu) / done["runs"]
            done["clientCpuPerRun"] = (_cpu() - client_cpu) / done["runs"]
            rounds.append(done)
            memory.append(_rss(service.proc.pid))
    finally:
        service.stop()
    store = IncompleteStore(work / "inprocess.sqlite")
    async with connector.Engine(connector.load(), incomplete=store) as engine:
        await _in_process(engine, receiver.url, min(args.clients, 20), 100)  # warm-up
        total = args.clients * args.runs
        local = [
            await _in_process(engine, receiver.url, args.clients, total) for _ in range(args.rounds)
        ]
        default = [
            await _in_process(engine, receiver.url, _ARUN_MANY_DEFAULT, total)
            for _ in range(args.rounds)
        ]
    store.close()
    served = max(rounds, key=lambda r: r["rate"])
    inproc = max(local, key=lambda r: r["rate"])
    best_default = max(default, key=lambda r: r["rate"])
    strongest = max(inproc["rate"], best_default["rate"])
    return {
        "clients": args.clients,
        "runsPerRound": total,
        "rounds": args.rounds,
        "service": served,
        "inProcess": inproc,
        "inProcessDefault": best_default,
        "ratio": served["rate"] / inproc["rate"],
        "ratioStrongest": served["rate"] / strongest,
        # CPU per run: the service process's own, against the in-process engine's (the
        # client's is reported apart). On a machine shared with other work, throughput
        # follows each side's share of the cores; the CPU per run does not.
        "cpuRatio": best_default["cpuPerRun"] / served["cpuPerRun"],
        "serviceRssMiB": [round(m / 2**20, 1) for m in memory],
        "rssGrowthMiB": round((memory[-1] - memory[1]) / 2**20, 1),
        "allServiceRates": [round(r["rate"]) for r in rounds],
        "allInProcessRates": [round(r["rate"]) for r in local],
    }


def _report(result: dict[str, Any]) -> str:
    s, p, d = result["service"], result["inProcess"], result["inProcessDefault"]
    lines = [
        f"{result['clients']} concurrent clients, {result['runsPerRound']:,} segment.track runs "
        f"a round, best of {result['rounds']} rounds",
        f"{'':<22}{'runs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'failed':>8}",
        f"{'connector serve':<22}{s['rate']:>10,.0f}{s['p50'] * 1000:>10.1f}"
        f"{s['p99'] * 1000:>10.1f}{s['failures']:>8}",
        f"{'in-process arun_many':<22}{p['rate']:>10,.0f}{p['p50'] * 1000:>10.1f}"
        f"{p['p99'] * 1000:>10.1f}{p['failures']:>8}",
        f"{'in-process, conc. 16':<22}{d['rate']:>10,.0f}{d['p50'] * 1000:>10.1f}"
        f"{d['p99'] * 1000:>10.1f}{d['failures']:>8}",
        f"ratio, service / in-process at {result['clients']}: {result['ratio']:.2f}x; "
        f"against the faster in-process figure: {result['ratioStrongest']:.2f}x "
        f"(target >= 0.5x: {'met' if result['ratioStrongest'] >= 0.5 else 'MISSED'})",
        f"CPU per run: service process {s['cpuPerRun'] * 1e6:,.0f} us (its clients "
        f"{s['clientCpuPerRun'] * 1e6:,.0f} us), in-process {d['cpuPerRun'] * 1e6:,.0f} us at "
        f"16 and {p['cpuPerRun'] * 1e6:,.0f} us at {result['clients']}; in-process / service: "
        f"{result['cpuRatio']:.2f}x",
        f"service RSS after warm-up and each round (MiB): {result['serviceRssMiB']}; "
        f"growth over the rounds: {result['rssGrowthMiB']} MiB",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--runs", type=int, default=10, help="runs per client per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="tiny counts, for CI")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.runs, args.rounds = 10, 3, 2
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, Receiver() as receiver:
        result = asyncio.run(_measure(args, receiver, Path(tmp)))
    print(_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    failed = sum(result[k]["failures"] for k in ("service", "inProcess", "inProcessDefault"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
