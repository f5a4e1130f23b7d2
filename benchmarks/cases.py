"""The benchmark cases. Each returns :class:`Row` objects: ours, the peer, the ratio.

Method, and why:

* Throughput cases interleave ours and the peer repeat by repeat and keep the best
  repeat of each: on a shared 2-core machine noise only ever slows a repeat down, so
  the best is the closest to the true cost, and interleaving makes a noisy stretch hit
  both sides instead of one.
* Delivered events are counted by the receiver (another process), not by the client:
  a client that drops or fails events cannot look fast. A repeat that delivered fewer
  events than it sent is reported in the row's note.
* Cold start and memory run in fresh subprocesses, since an already warm interpreter
  (modules imported, manifests cached, heap grown) would hide exactly what they measure.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

import connector
from benchmarks import workload
from benchmarks.receiver import ROOT, Receiver
from connector.format.manifest import RetrySpec

__all__ = ["CASES", "ROW_LABELS", "Bench", "Config", "Row", "compile_engine", "official_available"]

#: Bounded retries: a broken receiver must end the benchmark quickly, not in minutes.
BENCH_RETRY = RetrySpec(attempts=2, backoff=0.05, max_backoff=0.1)
#: The raw /v1/batch peer fills batches up to this (the issue's ~450 KB; Segment: 500 KB).
RAW_BATCH_BYTES = 450_000
#: Memory is "flat" when 10x the bundles grow peak RSS by less than this.
FLAT_MEMORY_BYTES = 10 * 1024 * 1024
COLD_START_TARGET_MS = 150.0

# The row labels: stable, whatever is available (the smoke test looks for each).
PREPARE = "prepare (vs official track(), send=False)"
PREPARE_MAPPED = "prepare, 3 mapped values (info)"
SINGLE = "single runs (vs raw httpx POST)"
CLI_OFFICIAL = "connector run --batch, a process (vs segment-analytics-python)"
CLI_RAW = "connector run --batch, a process (vs raw httpx /v1/batch)"
CLI_MEMORY = "peak memory, connector run --batch"
BULK_OFFICIAL = "bulk in-process (vs segment-analytics-python)"
BULK_RAW = "bulk in-process (vs raw httpx /v1/batch)"
COLD_START = "cold start (import + load)"
MEMORY = "peak memory, batch mode"
#: In table order: the command a user types first, the in-process figures after it.
ROW_LABELS = (
    CLI_OFFICIAL,
    CLI_RAW,
    BULK_OFFICIAL,
    BULK_RAW,
    CLI_MEMORY,
    PREPARE,
    PREPARE_MAPPED,
    SINGLE,
    COLD_START,
    MEMORY,
)


@dataclass(frozen=True)
class Config:
    """Counts for one mode: ``full`` (about 2 minutes) or ``smoke`` (seconds, for CI)."""

    mode: str
    prepare_seconds: float  # wall time of one timed repeat of the prepare loops
    repeats: int  # repeats of the throughput cases (best kept)
    single_runs: int  # sequential runs per repeat
    bulk_events: int  # events per bulk repeat (a multiple of 100, see bulk_official)
    bulk_repeats: int
    cold_repeats: int
    memory_bundles: tuple[int, int]  # (small, large): the large one is what counts
    memory_warmup: int
    cli_memory_lines: tuple[int, int]  # (small, large) lines through the CLI process

    @classmethod
    def full(cls) -> Config:
        return cls("full", 0.5, 5, 2000, 50_000, 3, 5, (10_000, 100_000), 200, (100_000, 1_000_000))

    @classmethod
    def smoke(cls) -> Config:
        return cls("smoke", 0.02, 1, 20, 500, 1, 1, (200, 1_000), 50, (200, 1_000))


@dataclass
class Row:
    """One line of the results table; ``met`` is None for information-only rows."""

    case: str
    ours: str
    peer: str = "-"
    ratio: float | None = None
    target: str = "-"
    met: bool | None = None
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unavailable(cls, case: str, reason: str, target: str = "-") -> Row:
        return cls(case, f"n/a ({reason})", target=target, data={"available": False})

    @classmethod
    def failed(cls, case: str, exc: BaseException) -> Row:
        message = f"{type(exc).__name__}: {exc}"
        return cls(case, "error", note=message, data={"error": message})


@dataclass
class Bench:
    """What the cases share: the config, the receiver, and one engine."""

    config: Config
    receiver: Receiver
    engine: connector.Engine

    @property
    def connection(self) -> dict[str, str]:
        return workload.connection(self.receiver.url)


def official_available() -> bool:
    """Whether segment-analytics-python is installed (the ``bench`` extra)."""
    try:
        import segment.analytics  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


# -- timing helpers ---------------------------------------------------------------------


def _calibrate(op: Callable[[], object], seconds: float) -> int:
    """Iterations of ``op`` that take about ``seconds``; doubles as the warm-up."""
    count = 1
    while True:
        start = time.perf_counter()
        for _ in range(count):
            op()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds / 5 or count >= 1 << 22:
            return max(1, math.ceil(count * seconds / max(elapsed, 1e-9)))
        count *= 2


def _time_loop(op: Callable[[], object], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        op()
    return time.perf_counter() - start


def _best_rates(
    ops: dict[str, Callable[[], object]], seconds: float, repeats: int
) -> dict[str, tuple[float, int]]:
    """Calls/s of each op, best of ``repeats`` interleaved repeats; and the iterations."""
    counts = {name: _calibrate(op, seconds) for name, op in ops.items()}
    best = dict.fromkeys(ops, math.inf)
    for _ in range(repeats):
        for name, op in ops.items():
            best[name] = min(best[name], _time_loop(op, counts[name]))
    return {name: (counts[name] / best[name], counts[name]) for name in ops}


def _ratio_row(
    case: str,
    ours: float,
    peer: float,
    target: float,
    fmt: Callable[[float], str],
    note: str = "",
    data: dict[str, Any] | None = None,
    peer_fmt: Callable[[float], str] | None = None,
) -> Row:
    ratio = ours / peer if peer > 0 else math.inf
    return Row(
        case,
        fmt(ours),
        (peer_fmt or fmt)(peer),
        ratio,
        f">= {target:g}x",
        ratio >= target,
        note,
        {"ours": ours, "peer": peer, "ratio": ratio, "target": target, **(data or {})},
    )


def _per_second(unit: str) -> Callable[[float], str]:
    return lambda rate: f"{rate:,.0f} {unit}/s"


def _with_cost(rate: float) -> str:
    return f"{rate:,.0f}/s ({1e6 / rate:.1f} us)"


# -- 1. prepare -------------------------------------------------------------------------


def prepare(bench: Bench) -> list[Row]:
    """Render + validate + build one track message, against the official ``track()``.

    The official client is created with ``send=False``: in segment-analytics-python
    2.x ``Client._enqueue`` then builds and checks the message (clean, JSON size check,
    messageId, timestamp, context.library) and returns before ``queue.put``, and the
    consumer thread is never started; so its ``track()`` is the library's whole
    per-event cost without I/O, which is what ``Engine.prepare`` is. We check after the
    loop that its queue stayed empty.
    """
    engine, conn, cfg = bench.engine, bench.connection, bench.config
    prepared = engine.prepare("segment.track", conn, workload.PARAMETERS)
    body = json.loads(prepared.request.content or b"{}")
    if len(body.get("properties", {})) != 12:  # revenue, currency and the 10 custom ones
        raise AssertionError(f"unexpected prepared body: {body}")

    ops: dict[str, Callable[[], object]] = {
        "ours": lambda: engine.prepare("segment.track", conn, workload.PARAMETERS),
        "mapped": lambda: engine.prepare(
            "segment.track", conn, workload.MAPPED_PARAMETERS, workload.MAPPED_CONTEXT
        ),
    }
    client = None
    if official_available():
        from segment.analytics.client import Client  # type: ignore[import-untyped]

        client = Client(workload.WRITE_KEY, host=bench.receiver.url, send=False)
        props = workload.OFFICIAL_PROPERTIES
        ops["official"] = lambda: client.track(
            user_id="user-1", event=workload.EVENT, properties=props
        )
    rates = _best_rates(ops, cfg.prepare_seconds, cfg.repeats)
    ours, _ = rates["ours"]
    mapped, _ = rates["mapped"]
    if client is None:
        missing = "n/a (segment-analytics-python not installed)"
        return [
            Row(PREPARE, _with_cost(ours), missing, target=">= 1x", data={"ours": ours}),
            Row(PREPARE_MAPPED, _with_cost(mapped), missing, data={"ours": mapped}),
        ]
    if client.queue.qsize() != 0 or any(c.is_alive() for c in client.consumers or []):
        raise AssertionError("the official client enqueued or started sending with send=False")
    official, _ = rates["official"]
    return [
        _ratio_row(
            PREPARE,
            ours,
            official,
            1.0,
            _with_cost,
            data={"iterations": rates["ours"][1]},
        ),
        Row(
            PREPARE_MAPPED,
            _with_cost(mapped),
            _with_cost(official),
            mapped / official,
            note="builder expressions rendered over a context",
            data={"ours": mapped, "peer": official},
        ),
    ]


# -- 2. single runs ---------------------------------------------------------------------


def single(bench: Bench) -> list[Row]:
    """Sequential ``engine.run`` against sequential raw httpx POSTs of a prebuilt body.

    Both over one pooled keep-alive connection to the receiver; the raw peer does no
    per-event work at all, so the ratio is the engine's whole overhead per run.
    """
    engine, conn, cfg, receiver = bench.engine, bench.connection, bench.config, bench.receiver
    url = receiver.url + "/v1/track"
    body, headers = workload.raw_body(), workload.auth_headers()
    runs = cfg.single_runs
    best = {"ours": math.inf, "raw": math.inf}
    short: list[str] = []
    with httpx.Client() as client:

        def ours() -> None:
            for _ in range(runs):
                engine.run("segment.track", conn, workload.PARAMETERS)

        def raw() -> None:
            for _ in range(runs):
                client.post(url, content=body, headers=headers).raise_for_status()

        for _ in range(min(50, runs)):  # warm-up: connections, caches
            engine.run("segment.track", conn, workload.PARAMETERS)
            client.post(url, content=body, headers=headers)
        for _ in range(cfg.repeats):
            for name, loop in (("ours", ours), ("raw", raw)):
                receiver.reset()
                elapsed = _time_loop(loop, 1)
                delivered = int(receiver.count()["events"])
                if delivered != runs:
                    short.append(f"{name}: {delivered}/{runs} delivered")
                best[name] = min(best[name], elapsed)
    return [
        _ratio_row(
            SINGLE,
            runs / best["ours"],
            runs / best["raw"],
            0.8,
            _per_second("runs"),
            "; ".join(short),
            {"runs": runs},
            _per_second("POSTs"),
        )
    ]


# -- 3. bulk ----------------------------------------------------------------------------


@dataclass
class _Delivery:
    """One timed bulk repeat, as the receiver saw it."""

    seconds: float
    delivered: int
    receiver_cpu: float  # receiver process CPU seconds during the repeat
    receiver_errors: int  # requests the receiver refused
    failed: int = 0  # events the client itself reported as failed or dropped

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0

    @property
    def receiver_share(self) -> float:
        return self.receiver_cpu / self.seconds if self.seconds > 0 else 0.0


#: A side's send: the events it saw fail; or, for a side whose failures are read from
#: what it wrote (a process's output file), how to count them once the clock stopped.
Send = Callable[[], "int | Callable[[], int]"]


def _delivered(receiver: Receiver, send: Send) -> _Delivery:
    """Time ``send`` and count what arrived (and what the side saw fail)."""
    before = receiver.reset()
    start = time.perf_counter()
    failed = send()
    elapsed = time.perf_counter() - start
    if callable(failed):
        failed = failed()
    after = receiver.count()
    return _Delivery(
        elapsed,
        int(after["events"]),
        after["cpu"] - before["cpu"],
        int(after["errors"]),
        failed,
    )


def _bulk_ours(bench: Bench, events: int) -> int:
    """``engine.run_batch`` over a generator; every result is looked at, then dropped."""
    failed = 0
    for result in bench.engine.run_batch(
        "segment.track", bench.connection, workload.parameter_stream(events)
    ):
        if not isinstance(result, list):
            failed += 1
    return failed


def _bulk_official(bench: Bench, events: int, timeout: float) -> int:
    """Track N then flush, with the library's defaults (batches of 100, one consumer).

    ``max_queue_size`` is raised to N so that ``track()`` never drops (its default queue
    of 10,000 would silently drop the rest of a fast burst). N is a multiple of 100, so
    the last batch is full and flush() does not wait out the 0.5 s upload interval.
    ``flush()`` runs in a thread joined with a timeout: it would block forever if the
    receiver went away.
    """
    from segment.analytics.client import Client

    errors: list[int] = []
    client = Client(
        workload.WRITE_KEY,
        host=bench.receiver.url,
        max_queue_size=events + 1,
        max_retries=1,
        on_error=lambda exc, batch: errors.append(len(batch)),
    )
    props = workload.OFFICIAL_PROPERTIES
    try:
        dropped = 0
        for index in range(events):
            ok, _ = client.track(user_id=f"user-{index}", event=workload.EVENT, properties=props)
            dropped += not ok
        flusher = threading.Thread(target=client.flush, daemon=True)
        flusher.start()
        flusher.join(timeout)
        if flusher.is_alive():
            raise TimeoutError(f"the official client's flush() took over {timeout:.0f} s")
    finally:
        for consumer in client.consumers or []:
            consumer.pause()  # its thread ends after its current 0.5 s poll; not joined
    return dropped + sum(errors)


def _post_batches(bench: Bench, bodies: Iterator[bytes]) -> int:
    """POST each body on one client; returns 0 failed events (a failed POST raises)."""
    url = bench.receiver.url + "/v1/batch"
    headers = workload.auth_headers()
    with httpx.Client(timeout=30) as client:
        for body in bodies:
            client.post(url, content=body, headers=headers).raise_for_status()
    return 0


def _batch_body(parts: list[bytes]) -> bytes:
    sent_at = datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    return b'{"batch":[' + b",".join(parts) + b'],"sentAt":"' + sent_at.encode() + b'"}'


def _raw_batches(events: int) -> Iterator[bytes]:
    """~450 KB batch bodies built per event as a minimal client must: a message with a
    fresh messageId and timestamp, serialised once, then joined (no second encoding)."""
    parts: list[bytes] = []
    size = 0
    for index in range(events):
        part = json.dumps(workload.raw_message(index), separators=(",", ":")).encode()
        if parts and size + len(part) + len(parts) > RAW_BATCH_BYTES:
            yield _batch_body(parts)
            parts, size = [], 0
        parts.append(part)
        size += len(part)
    if parts:
        yield _batch_body(parts)


def _prebuilt_batches(events: int) -> Callable[[], Iterator[bytes]]:
    """The ceiling: the same ~450 KB bodies built before the clock starts, so only
    HTTP and the receiver are timed (no per-event work at all)."""
    bodies = list(_raw_batches(events))
    return lambda: iter(bodies)


def _default_workers() -> int:
    from connector.tools.batch_workers import default_workers

    return default_workers()


def _cli_command(bench: Bench) -> list[str]:
    conn = json.dumps(bench.connection)
    return [sys.executable, "-m", "connector", "run", "segment.track", "-c", conn]


def _cli_env(home: str) -> dict[str, str]:
    """The user's defaults, in a home of the benchmark's own (store and manifest cache)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CONNECTOR_CACHE", "CONNECTOR_HOME")}
    return {**env, "CONNECTOR_HOME": home}


class _CliRun:
    """``connector run segment.track -c CONN --batch FILE`` as a user types it: a fresh
    process with its defaults (the incomplete store on, in a ``CONNECTOR_HOME`` of the
    benchmark's own), the events in a JSON-lines file, its output lines into a file.
    Timed from the process's start to its end, so start-up is included."""

    def __init__(self, bench: Bench, events: int, home: str | None = None) -> None:
        import tempfile

        self.bench, self.events = bench, events
        self._own = home is None
        self.home = home or tempfile.mkdtemp(prefix="connector-bench-")
        self.path = os.path.join(self.home, f"events-{events}.jsonl")
        with open(self.path, "wb") as out:
            for parameters in workload.parameter_stream(events):
                out.write(json.dumps(parameters).encode() + b"\n")

    def command(self) -> list[str]:
        return _cli_command(self.bench)

    def env(self) -> dict[str, str]:
        return _cli_env(self.home)

    def run(self, flags: tuple[str, ...] = ()) -> Callable[[], int]:
        """Run it (a failed process raises); then how to count the lines it reported
        failed. The count reads its output file (~30 ms at 50,000 lines), which is the
        benchmark's check, not the user's run: a timed caller counts after its clock."""
        out_path = os.path.join(self.home, "out.jsonl")
        with open(out_path, "wb") as out:
            done = subprocess.run(
                [*self.command(), "--batch", self.path, *flags],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.PIPE,
                env=self.env(),
                timeout=max(120.0, self.events / 500),
            )
        if done.returncode not in (0, 1):
            raise RuntimeError(f"connector run --batch failed: {done.stderr[-500:]!r}")

        def failed() -> int:
            count = 0
            with open(out_path, "rb") as out:
                for line in out:
                    count += b'"error"' in line[:40]
            return count

        return failed

    def close(self) -> None:
        if self._own:
            import shutil

            shutil.rmtree(self.home, ignore_errors=True)


def _hwm(pid: int) -> int:
    """A process's peak resident set so far (VmHWM, bytes); 0 once it has ended."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listed:
            return [int(child) for child in listed.read().split()]
    except OSError:
        return []


def _cli_peak(bench: Bench, lines: int, home: str) -> tuple[int, float, int]:
    """Peak RSS (bytes) of the largest process of one ``run --batch -`` command (its
    parent or a worker) fed ``lines`` lines on stdin (made as they are written: a million
    lines never sit on disk), its seconds, and the lines it answered.

    Each process's VmHWM is read every 50 ms while it runs: it is a high-water mark,
    so the last reading holds the peak up to then. (``ru_maxrss`` from ``wait4`` would
    report the benchmark's own size: Linux carries it across fork and exec.)"""
    command, env = _cli_command(bench), _cli_env(home)
    start = time.perf_counter()
    proc = subprocess.Popen(
        [*command, "--batch", "-"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    answered = 0

    def feed() -> None:
        assert proc.stdin is not None
        template = json.dumps(workload.PARAMETERS).encode()
        head, tail = template.split(b'"user-1"')
        try:
            for index in range(lines):
                proc.stdin.write(head + b'"user-%d"' % index + tail + b"\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass

    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in (proc.pid, *_children(proc.pid)):
                peaks[pid] = max(peaks.get(pid, 0), _hwm(pid))
            time.sleep(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    sampler = threading.Thread(target=sample, daemon=True)
    feeder.start()
    sampler.start()
    for _ in proc.stdout:
        answered += 1
    feeder.join()
    done.set()
    sampler.join()
    proc.wait()
    seconds = time.perf_counter() - start
    return max(peaks.values(), default=0), seconds, answered


def cli_memory(bench: Bench) -> list[Row]:
    """Peak RSS of the ``run --batch`` process at a small and a large number of lines
    (100,000 and 1,000,000 in full mode): flat when the large run grows it by less
    than :data:`FLAT_MEMORY_BYTES`."""
    import tempfile

    small_n, large_n = bench.config.cli_memory_lines
    with tempfile.TemporaryDirectory(prefix="connector-bench-") as home:
        small, _, small_ok = _cli_peak(bench, small_n, home)
        large, seconds, large_ok = _cli_peak(bench, large_n, home)
    mb = 1024 * 1024
    growth = large - small
    return [
        Row(
            CLI_MEMORY,
            f"{large / mb:.0f} MB @{large_n:,} lines ({small / mb:.0f} MB @{small_n:,})",
            target=f"flat (+< {FLAT_MEMORY_BYTES // mb} MB for 10x)",
            met=growth < FLAT_MEMORY_BYTES and large_ok == large_n and small_ok == small_n,
            note=(
                f"peak RSS (VmHWM) of the largest process of the command (parent or "
                f"worker), store on; {large_n / seconds:,.0f} lines/s"
            ),
            data={"small_bytes": small, "large_bytes": large, "growth_bytes": growth},
        )
    ]


def bulk(bench: Bench) -> list[Row]:
    """Events/s delivered in batch mode, against the official library and raw /v1/batch.

    The raw peer that the target is set against builds each message (messageId,
    timestamp, serialisation): a client that sends prebuilt bytes does no per-event work
    and measures only the transport. That ceiling is reported in the note.
    """
    cfg, events = bench.config, bench.config.bulk_events
    timeout = max(60.0, events / 500)
    prebuilt = _prebuilt_batches(events)
    sides: dict[str, Send] = {}
    has_batch = hasattr(bench.engine, "run_batch")
    has_official = official_available()
    cli = _CliRun(bench, events)
    sides["cli"] = cli.run
    sides["cli1"] = lambda: cli.run(("--workers", "1"))
    if has_batch:
        sides["ours"] = lambda: _bulk_ours(bench, events)
    if has_official:
        sides["official"] = lambda: _bulk_official(bench, events, timeout)
    sides["raw"] = lambda: _post_batches(bench, _raw_batches(events))
    sides["prebuilt"] = lambda: _post_batches(bench, prebuilt())
    # Warm-up outside the timings: connections, imports, the engine's compiled plan
    # (and, for the process, the manifest cache and the store's folder).
    warm = min(events, 200)
    _CliRun(bench, warm, cli.home).run()
    if has_batch:
        _bulk_ours(bench, warm)
    if has_official:
        _bulk_official(bench, warm, timeout)
    _post_batches(bench, _raw_batches(warm))
    best: dict[str, _Delivery] = {}
    problems: list[str] = []
    for _ in range(cfg.bulk_repeats):
        for name, send in sides.items():
            got = _delivered(bench.receiver, send)
            if got.delivered != events or got.failed or got.receiver_errors:
                problems.append(
                    f"{name}: {got.delivered}/{events} delivered, {got.failed} failed, "
                    f"{got.receiver_errors} refused"
                )
            if name not in best or got.rate > best[name].rate:
                best[name] = got
    cli.close()

    rate = _per_second("ev")

    def summary(name: str) -> dict[str, Any]:
        got = best[name]
        return {
            f"{name}_rate": got.rate,
            f"{name}_seconds": got.seconds,
            f"{name}_delivered": got.delivered,
            f"{name}_receiver_cpu_share": got.receiver_share,
        }

    def note(peer: str, side: str = "ours") -> str:
        busy = ", ".join(
            f"{name} {best[name].receiver_share:.0%}" for name in (side, peer) if name in best
        )
        extra = [f"receiver busy: {busy}"]
        if peer == "raw":
            ceiling, busy_then = rate(best["prebuilt"].rate), best["prebuilt"].receiver_share
            extra.append(
                f"raw with prebuilt bodies (transport ceiling): {ceiling}, "
                f"receiver busy {busy_then:.0%}"
            )
        return "; ".join([*problems, *extra])

    data = {"events": events, **{k: v for name in best for k, v in summary(name).items()}}
    rows: list[Row] = []
    for case, peer, target in ((CLI_OFFICIAL, "official", 3.0), (CLI_RAW, "raw", 0.6)):
        if peer not in best:
            missing = "n/a (segment-analytics-python not installed)"
            rows.append(Row(case, rate(best["cli"].rate), missing, target=f">= {target:g}x"))
            continue
        workers = _default_workers()
        extra = (
            f"a fresh process: file in, JSON lines out, incomplete store on (defaults: "
            f"{workers} worker processes); one process (--workers 1): "
            f"{rate(best['cli1'].rate)}, {best['cli1'].rate / best[peer].rate:.2f}x"
        )
        rows.append(
            _ratio_row(
                case,
                best["cli"].rate,
                best[peer].rate,
                target,
                rate,
                f"{extra}; {note(peer, 'cli')}",
                data,
            )
        )
    targets = ((BULK_OFFICIAL, "official", 3.0), (BULK_RAW, "raw", 0.6))
    for case, peer, target in targets:
        if peer not in best:
            missing = "n/a (segment-analytics-python not installed)"
            ours = rate(best["ours"].rate) if "ours" in best else "n/a (batch mode not available)"
            rows.append(Row(case, ours, missing, target=f">= {target:g}x", data=data))
        elif "ours" not in best:
            row = Row.unavailable(case, "batch mode not available", f">= {target:g}x")
            row.peer, row.note, row.data = rate(best[peer].rate), note(peer), data
            rows.append(row)
        else:
            rows.append(
                _ratio_row(case, best["ours"].rate, best[peer].rate, target, rate, note(peer), data)
            )
    return rows


# -- 4. cold start ----------------------------------------------------------------------

_COLD_START = """\
import time
start = time.perf_counter()
import connector
registry = connector.load()
elapsed = time.perf_counter() - start
print(f"{elapsed * 1000:.3f} {len(registry.module_ids())}")
"""


def _cold_runs(repeats: int, env: dict[str, str]) -> tuple[float, float, int]:
    """Best inside and process times (ms) of ``repeats`` fresh interpreters, and the
    number of modules they loaded."""
    inside, wall, modules = math.inf, math.inf, 0
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _COLD_START],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=env,
        )
        wall = min(wall, (time.perf_counter() - start) * 1000)
        ms, count = done.stdout.split()
        inside, modules = min(inside, float(ms)), int(count)
    return inside, wall, modules


def compile_engine() -> None:
    """The engine's bytecode, as ``pip install`` leaves an installed package: a process a
    case starts (the command, cold start) then reads it instead of compiling the
    engine's sources, which an editable checkout under PYTHONDONTWRITEBYTECODE=1 (set on
    the benchmark machine) would do on every start."""
    import compileall

    compileall.compile_dir(str(ROOT / "connector"), quiet=1)


def cold_start(bench: Bench) -> list[Row]:
    """``import connector; connector.load()`` in a fresh interpreter: the time a CLI call
    or a new worker pays before its first run. Timed from inside (import + load) and as
    the subprocess's wall time (interpreter start-up and exit included); best of N.
    Bytecode is compiled first (again, for a run of this case alone), as ``pip install``
    does for an installed package: an editable checkout under
    ``PYTHONDONTWRITEBYTECODE=1`` (set on this machine) would otherwise recompile every
    module of the engine on every start.

    Measured twice, each in a cache directory of its own: with the manifest cache as the
    CLI, or a host that opts in (here by ``CONNECTOR_CACHE``), has it from its second
    start on (filled by one untimed start), and with the cache off, as on the very first
    start or in a host that does not opt in (see connector.core.cache).
    """
    import tempfile

    compile_engine()
    repeats = bench.config.cold_repeats
    with tempfile.TemporaryDirectory() as directory:
        cached_env = {**os.environ, "CONNECTOR_CACHE": os.path.join(directory, "cache")}
        _cold_runs(1, cached_env)  # fills the cache
        inside, wall, modules = _cold_runs(repeats, cached_env)
    uncached, uncached_wall, _ = _cold_runs(repeats, {**os.environ, "CONNECTOR_CACHE": "off"})
    return [
        Row(
            COLD_START,
            f"{inside:.0f} ms ({wall:.0f} ms process)",
            target=f"< {COLD_START_TARGET_MS:.0f} ms",
            met=inside < COLD_START_TARGET_MS,
            note=(
                f"{modules} modules loaded; with the manifest cache filled (from a host's "
                f"second start on); without it (first start): {uncached:.0f} ms "
                f"({uncached_wall:.0f} ms process)"
            ),
            data={
                "ms": inside,
                "process_ms": wall,
                "modules": modules,
                "uncached_ms": uncached,
                "uncached_process_ms": uncached_wall,
            },
        )
    ]


# -- 5. peak memory ---------------------------------------------------------------------


def _memory_run(bench: Bench, bundles: int) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.memory",
            "--url",
            bench.receiver.url,
            "--bundles",
            str(bundles),
            "--warmup",
            str(bench.config.memory_warmup),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=max(60.0, bundles / 200),
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory subprocess failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def memory(bench: Bench) -> list[Row]:
    """Peak RSS growth of ``run_batch`` over a generator of N bundles, for a small and a
    large N, each in a fresh process: streaming keeps it flat, holding bundles makes it
    grow ~linearly (a retained track bundle costs kilobytes). See benchmarks.memory."""
    case, target = MEMORY, "flat"
    small_n, large_n = bench.config.memory_bundles
    if not hasattr(bench.engine, "run_batch"):
        return [Row.unavailable(case, "batch mode not available", target)]
    small = _memory_run(bench, small_n)
    if not small.get("available"):
        return [Row.unavailable(case, "batch mode not available", target)]
    large = _memory_run(bench, large_n)
    growth = large["delta_bytes"] - small["delta_bytes"]
    mb = 1024 * 1024
    notes = [
        f"peak above a {large['baseline_bytes'] / mb:.0f} MB baseline ({large['method']})",
        f"{growth / (large_n - small_n):+.0f} B per extra bundle",
        f"{large_n / large['seconds']:,.0f} ev/s",
    ]
    if small["ok"] != small_n or large["ok"] != large_n:
        notes.append(f"failed: {small['failed']} @{small_n:,}, {large['failed']} @{large_n:,}")
    return [
        Row(
            case,
            f"+{large['delta_bytes'] / mb:.1f} MB @{large_n:,} "
            f"(+{small['delta_bytes'] / mb:.1f} MB @{small_n:,})",
            target=f"{target} (+< {FLAT_MEMORY_BYTES // mb} MB for 10x)",
            met=growth < FLAT_MEMORY_BYTES and large["ok"] == large_n,
            note="; ".join(notes),
            data={"small": small, "large": large, "growth_bytes": growth},
        )
    ]


#: Every case, in the order of the issue, with the rows it prints (in table order).
CASES: list[tuple[str, Callable[[Bench], list[Row]], tuple[str, ...]]] = [
    ("bulk", bulk, (CLI_OFFICIAL, CLI_RAW, BULK_OFFICIAL, BULK_RAW)),
    ("cli memory", cli_memory, (CLI_MEMORY,)),
    ("prepare", prepare, (PREPARE, PREPARE_MAPPED)),
    ("single runs", single, (SINGLE,)),
    ("cold start", cold_start, (COLD_START,)),
    ("peak memory", memory, (MEMORY,)),
]
