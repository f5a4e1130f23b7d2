"""Batch mode: many bundles through one module, packed into /v1/batch (real sink)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connector
from connector.testing.sink import Fault, Sink
from tests.conftest import FAST_RETRY, WRITE_KEY, kill_cli_after, run_cli

ROOT = Path(__file__).resolve().parent.parent


def run_batch_cli(sink: Sink, path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`connector run segment.track --batch PATH` against the sink, as a host runs it."""
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    return run_cli("run", "segment.track", *flags, "-c", conn, "--batch", str(path))


def track(i: int, **extra: Any) -> dict[str, Any]:
    return {"event": f"E{i}", "userId": f"u{i}", **extra}


def test_results_in_input_order_with_per_item_errors(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    inputs = [track(i) for i in range(10)]
    inputs[3] = {"event": "no identity"}
    inputs[6] = track(6, customProperties={"blob": "x" * 40_000})  # over 32 KB
    results = list(engine.run_batch("segment.track", connection, inputs))
    assert len(results) == 10
    assert isinstance(results[3], connector.DataError) and results[3].field == "userId"
    assert isinstance(results[6], connector.DataError) and "32,768" in results[6].message
    for i, result in enumerate(results):
        if i not in (3, 6):
            assert isinstance(result, list)
            assert result[0]["event"] == f"E{i}" and result[0]["success"] is True
    [record] = sink.received()
    assert record["path"] == "/v1/batch"
    assert record["auth"] == "basic"
    assert [m["event"] for m in record["body"]["batch"]] == [
        f"E{i}" for i in range(10) if i not in (3, 6)
    ]
    assert record["body"]["sentAt"].endswith("Z")
    # Each item is the very message a single run would send, messageId included.
    ids = {r[0]["messageId"] for r in results if isinstance(r, list)}
    assert ids == {m["messageId"] for m in record["body"]["batch"]}


def test_packing_respects_both_limits_at_volume(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    results = list(engine.run_batch("segment.track", connection, (track(i) for i in range(5001))))
    assert all(isinstance(r, list) for r in results)
    records = sink.received()
    assert len(records) >= 3
    for record in records:
        assert len(record["body"]["batch"]) <= 2500
        assert len(json.dumps(record["body"], separators=(",", ":")).encode()) <= 500 * 1024
    assert sum(len(r["body"]["batch"]) for r in records) == 5001


def test_packer_message_count_limit() -> None:
    from connector.runs.batch import PendingItem, _Packer

    packer = _Packer(max_items=3, max_bytes=10_000, overhead=100)
    taken = []
    for _ in range(7):
        if not packer.fits(b"x" * 10):
            taken.append(len(packer.take()[0]))
        packer.add(PendingItem(), b"x" * 10)
    taken.append(len(packer.take()[0]))
    assert taken == [3, 3, 1]


def test_packing_respects_the_byte_limit(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    padding = "p" * 20_000  # ~20 KB messages: 500 KB fits about 24
    results = list(
        engine.run_batch(
            "segment.track",
            connection,
            (track(i, customProperties={"pad": padding}) for i in range(60)),
        )
    )
    assert all(isinstance(r, list) for r in results)
    records = sink.received()
    assert len(records) >= 3
    for record in records:
        size = len(json.dumps(record["body"], separators=(",", ":")).encode())
        assert size <= 500 * 1024
    assert sum(len(r["body"]["batch"]) for r in records) == 60


def test_streaming_yields_before_the_input_ends(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    consumed = 0

    def inputs() -> Iterator[dict[str, Any]]:
        nonlocal consumed
        for i in range(20_000):
            consumed += 1
            yield track(i)

    results = engine.run_batch("segment.track", connection, inputs())
    first = next(results)
    assert isinstance(first, list)
    # The first batch went out while input was still unread: at most the batch being
    # sent, one waiting, and the one being filled were read ahead.
    assert consumed < 10_000
    assert sum(1 for _ in results) == 19_999


def test_invalid_items_only_send_nothing(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    results = list(engine.run_batch("segment.track", connection, [{"event": "x"}] * 3))
    assert all(isinstance(r, connector.DataError) for r in results)
    assert sink.requests_count == 0


def test_a_failed_batch_gives_every_item_the_error(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    sink.inject(Fault(status=401))
    results = list(engine.run_batch("segment.track", connection, [track(i) for i in range(4)]))
    assert all(isinstance(r, connector.InvalidAccessTokenError) for r in results)
    assert sink.received() == []


def test_non_batchable_module_is_refused(engine: connector.Engine, connection: dict) -> None:
    with pytest.raises(connector.InvalidConfigurationError) as info:
        list(engine.run_batch("segment.api_call", connection, [{"url": "/v1/x"}]))
    assert "batch" in info.value.message


def test_arun_batch_matches_run_batch(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    inputs = [track(i) for i in range(3000)]
    inputs[10] = {"event": "bad"}

    async def go() -> list[Any]:
        try:
            return [
                r
                async for r in engine.arun_batch("segment.track", connection, inputs, concurrency=2)
            ]
        finally:
            await engine.aclose()

    results = asyncio.run(go())
    assert len(results) == 3000
    assert isinstance(results[10], connector.DataError)
    events = [r[0]["event"] for i, r in enumerate(results) if i != 10]
    assert events == [f"E{i}" for i in range(3000) if i != 10]
    assert len(sink.messages()) == 2999


def test_cli_batch_prints_one_line_per_input(sink: Sink, tmp_path: Path) -> None:
    lines = [json.dumps(track(i)) for i in range(5)]
    lines.insert(2, json.dumps({"event": "no identity"}))
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = run_batch_cli(sink, path, "--no-store")
    assert done.returncode == 1  # one input failed
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == 6
    assert out[2]["error"]["type"] == "DataError"
    assert [o["bundles"][0]["event"] for i, o in enumerate(out) if i != 2] == [
        f"E{i}" for i in range(5)
    ]
    assert len(sink.messages()) == 5
    assert WRITE_KEY not in done.stdout + done.stderr


def test_cli_batch_bad_line_is_that_lines_error(sink: Sink, tmp_path: Path) -> None:
    """A bad line is its own result, in place; the lines around it still run."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"event": "A", "userId": "u"}\nnot json\n[1]\n{"event": "B", "userId": "u"}\n')
    done = run_batch_cli(sink, path, "--no-store")
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert out[0]["bundles"][0]["event"] == "A"
    assert "line 2" in out[1]["error"]["message"] and out[1]["error"]["type"] == "DataError"
    assert "line 3" in out[2]["error"]["message"]
    assert out[3]["bundles"][0]["event"] == "B"
    assert [m["event"] for m in sink.messages()] == ["A", "B"]


def test_cli_batch_dry_run_checks_every_line_and_sends_nothing(sink: Sink, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps(track(0))
        + "\n"
        + json.dumps({"event": "no identity"})
        + "\n\n"
        + json.dumps(track(3))
        + "\n"
    )
    done = run_batch_cli(sink, path, "--dry-run")
    assert done.returncode == 1  # line 2 fails its checks
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4]
    assert out[0]["request"]["method"] == "POST" and out[0]["request"]["body"]["event"] == "E0"
    assert out[0]["request"]["headers"]["Authorization"] == "[REDACTED]"
    assert out[1]["error"]["message"].startswith("line 2:") and out[1]["error"]["line"] == 2
    assert out[2] == {"line": 3, "blank": True}
    assert out[3]["request"]["body"]["event"] == "E3"
    assert done.stderr.strip() == "2 checked, 1 failed (line 2), nothing sent, 1 blank line"
    assert sink.requests_count == 0
    assert WRITE_KEY not in done.stdout


def test_cli_batch_output_line_n_answers_input_line_n(sink: Sink, tmp_path: Path) -> None:
    """Blank lines get a line of their own; every error names its line; the summary
    counts what was sent, what failed (by line) and what is kept for retry."""
    lines = ["", json.dumps(track(1)), "   ", json.dumps({"event": "x"}), json.dumps(track(4)), ""]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = run_batch_cli(sink, path, "--no-store")
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5, 6]
    assert out[0] == {"line": 1, "blank": True} and out[2] == {"line": 3, "blank": True}
    assert out[5] == {"line": 6, "blank": True}
    assert out[1]["bundles"][0]["event"] == "E1" and out[4]["bundles"][0]["event"] == "E4"
    assert out[3]["error"]["message"].startswith("line 4: ")
    assert done.stderr == "2 sent, 1 failed (line 4), 0 kept for retry, 3 blank lines\n"


def test_cli_batch_summary_counts_the_runs_kept_for_retry(sink: Sink, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(track(i)) + "\n" for i in range(3)))
    sink.inject(*[Fault(status=503, retry_after="0")] * 10)
    done = run_batch_cli(sink, path, "--store", str(tmp_path / "s.sqlite"))
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(o["error"]["incompleteId"] for o in out)
    assert done.stderr.strip() == "0 sent, 3 failed (lines 1, 2, 3), 3 kept for retry"


def test_cli_batch_lines_may_bring_their_own_context(sink: Sink, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    rows = [
        {
            "parameters": {"event": "{{ row.name }}", "userId": "{{ user.id }}"},
            "context": {"row": {"name": f"Row {i}"}},
        }
        for i in range(3)
    ]
    rows.append({"parameters": "no object"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    done = run_cli(
        "run",
        "segment.track",
        "-c",
        conn,
        "--batch",
        str(path),
        "--no-store",
        "-x",
        json.dumps({"user": {"id": "u-7"}}),
    )
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["bundles"][0]["event"] for o in out[:3]] == ["Row 0", "Row 1", "Row 2"]
    assert {o["bundles"][0]["userId"] for o in out[:3]} == {"u-7"}  # --context merged under
    assert "parameters must be a JSON object" in out[3]["error"]["message"]


def test_cli_batch_lines_that_used_to_crash_the_run_are_their_own_errors(
    sink: Sink, tmp_path: Path
) -> None:
    """Issue 10, section 2: a 5,000-digit integer, a NaN from a template and a byte that
    is not UTF-8 each fail their line, named, while their neighbours are sent."""
    path = tmp_path / "in.jsonl"
    with path.open("wb") as out:
        out.write(json.dumps(track(1)).encode() + b"\n")
        out.write(b'{"event": "E", "userId": "u", "revenue": ' + b"7" * 5000 + b"}\n")
        out.write(json.dumps({"event": "{{ 'NaN'|float }}", "userId": "u"}).encode() + b"\n")
        out.write(json.dumps({"event": "{{ 'inf'|float }}", "userId": "u"}).encode() + b"\n")
        out.write(b'{"event": "caf\xe9", "userId": "u"}\n')
        out.write(json.dumps(track(6)).encode() + b"\n")
    done = run_batch_cli(sink, path, "--no-store")
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5, 6]
    for index in (1, 4):
        error = out[index]["error"]
        assert error["type"] == "DataError", error
        assert error["message"].startswith(f"line {index + 1}: ")
    assert "digits" in out[1]["error"]["message"]
    assert "UTF-8" in out[4]["error"]["message"]
    # A NaN or an infinity from a template: that line's own result (sent as the text
    # "nan" into a text field, or its DataError), never the end of the run.
    for index in (2, 3):
        assert "bundles" in out[index] or out[index]["error"]["type"] == "DataError"
    events = [m["event"] for m in sink.messages()]
    assert events[0] == "E1" and events[-1] == "E6" and len(events) in (2, 3, 4)


def test_cli_batch_keeps_integers_orjson_would_round(sink: Sink, tmp_path: Path) -> None:
    """A line with an integer over 64 bits is read exactly (orjson reads it as a float)."""
    path = tmp_path / "in.jsonl"
    big = 123456789012345678901234567890
    path.write_text(json.dumps(track(1, customProperties={"big": big})) + "\n")
    done = run_batch_cli(sink, path, "--no-store")
    assert done.returncode == 0, done.stderr
    [message] = sink.messages()
    assert message["properties"]["big"] == big
    assert json.loads(done.stdout)["bundles"][0]["properties"]["big"] == big


def test_cli_batch_progress_only_on_a_terminal(sink: Sink, tmp_path: Path) -> None:
    import os
    import pty

    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(track(i)) + "\n" for i in range(3000)))
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    command = [sys.executable, "-m", "connector", "run", "segment.track", "-c", conn]
    command += ["--batch", str(path), "--no-store"]
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=secondary, stdin=subprocess.DEVNULL
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=60)
    os.close(primary)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0
    # The progress line: lines read, sent, failed, and the rate.
    assert re.search(r"[\d,]+ lines read, [\d,]+ sent, 0 failed, [\d,]+ lines/s", text), text
    assert "3,000 sent, 0 failed, 0 kept for retry" in text
    piped = run_batch_cli(sink, path, "--no-store")
    assert piped.stderr == "3,000 sent, 0 failed, 0 kept for retry\n"  # no progress


@pytest.mark.parametrize(
    "args", [["--dry-run"], ["--workers", "1"], ["--workers", "2"]], ids=["dry", "one", "workers"]
)
def test_cli_batch_typed_on_a_terminal_ends_at_one_ctrl_d(sink: Sink, args: list[str]) -> None:
    """``--batch -`` on a terminal: lines typed, then Ctrl-D at a line's start ends the
    input, as it ends any command reading a terminal. (A read of a whole block returns
    at that Ctrl-D, and the next read would wait for another one.)"""
    import os
    import pty

    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    command = [sys.executable, "-m", "connector", "run", "segment.track", "-c", conn]
    command += ["--batch", "-", "--no-store", *args]
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    os.close(secondary)
    try:
        os.write(primary, (json.dumps(track(0)) + "\n" + json.dumps(track(1)) + "\n").encode())
        os.write(primary, b"\x04")  # Ctrl-D
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.write(primary, b"\x04")
            proc.communicate(timeout=30)
            pytest.fail("the command waited for a second Ctrl-D")
    finally:
        os.close(primary)
    assert proc.returncode == 0, err
    assert [json.loads(line)["line"] for line in out.splitlines()] == [1, 2]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_cli_batch_typed_on_a_terminal_stops_at_one_ctrl_c(sink: Sink, workers: str) -> None:
    """``--batch -`` typed on a terminal, and one Ctrl-C while the command waits for the
    next line: it stops at once (the reading would wait for a line, so the interrupt is
    not left for later), with its summary, exit 130. Typed input is read in one
    process whatever ``--workers`` says."""
    import os
    import pty
    import time

    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    command = [sys.executable, "-m", "connector", "run", "segment.track", "-c", conn]
    command += ["--batch", "-", "--no-store", "--workers", workers]
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(secondary)
    try:
        os.write(primary, (json.dumps(track(0)) + "\n").encode())
        time.sleep(1.5)  # past its start-up, waiting for the next line
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
            pytest.fail("one Ctrl-C did not stop the command")
    finally:
        os.close(primary)
    assert proc.returncode == 130, err
    assert b"interrupted after line" in err, err
    assert b"Traceback" not in err
    assert all(json.loads(line)["line"] for line in out.splitlines())  # whole lines only


def test_an_input_that_breaks_a_limit_of_python_is_its_own_error(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = [deep]
    inputs = [
        track(0),
        track(1, revenue="1" * 5000),  # over int()'s 4,300 digits
        track(2, customProperties={"deep": deep}),
        track(3, customProperties="[" * 100_000 + "]" * 100_000),
        track(4),
    ]
    results = list(engine.run_batch("segment.track", connection, inputs))
    assert [type(r).__name__ for r in results] == [
        "list",
        "DataError",
        "DataError",
        "DataError",
        "list",
    ]
    assert [m["event"] for m in sink.messages()] == ["E0", "E4"]


def test_arun_batch_raises_a_failing_send_like_run_batch(
    registry: connector.Registry, sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """A send that fails outside HTTP (here the store) is raised, never dropped."""
    from connector.runs.incomplete import IncompleteStore

    class BrokenStore(IncompleteStore):
        def begin_batch(self, *args: Any) -> str:
            raise RuntimeError("disk full")

    with BrokenStore(tmp_path / "s.sqlite") as store:
        engine = connector.Engine(registry, incomplete=store)

        async def go() -> list[Any]:
            try:
                return [
                    r
                    async for r in engine.arun_batch(
                        "segment.track", connection, [track(i) for i in range(5)]
                    )
                ]
            finally:
                await engine.aclose()

        with pytest.raises(RuntimeError, match="disk full"):
            asyncio.run(go())
        with pytest.raises(RuntimeError, match="disk full"):
            list(engine.run_batch("segment.track", connection, [track(0)]))


def _echo_app(tmp_path: Path, output: Any, headers: Any = None, body: Any = None) -> Path:
    """The Segment app plus a batchable ``segment.echo`` with its own output template."""
    import shutil

    app = tmp_path / "segment"
    shutil.copytree(ROOT / "manifests" / "segment", app, ignore=shutil.ignore_patterns("tests"))
    track_manifest = json.loads((app / "track.json").read_text())
    track_manifest["id"] = "segment.echo"
    track_manifest["output"] = {"bundle": output}
    if headers is not None:
        track_manifest["request"]["headers"] = headers
    if body is not None:
        track_manifest["request"]["body"] = body
    (app / "echo.json").write_text(json.dumps(track_manifest))
    app_manifest = json.loads((app / "app.json").read_text())
    app_manifest["modules"].append("echo.json")
    (app / "app.json").write_text(json.dumps(app_manifest))
    return app


def test_batch_outputs_match_single_runs_when_they_read_parameters_and_headers(
    sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """A batch keeps only what the output template needs of each waiting item; an
    output that reads the parameters, the run and per-item headers still gets each
    item's own, exactly as a single run renders them."""
    output = {
        "event": "{{ parameters.event }}",
        "id": "{{ run.id }}",
        "sent": "{{ request.body.messageId }}",
        "shard": "{{ request.headers['X-Shard'] }}",
        "method": "{{ request.method }}",
        "ok": "{{ response.body.success }}",
    }
    app = _echo_app(tmp_path, output, {"X-Shard": "{{ parameters.userId[-1] }}"})
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        inputs = [track(i) for i in range(12)]
        inputs[4] = {"event": "no identity"}
        results = list(engine.run_batch("segment.echo", connection, inputs))
        single = engine.run("segment.echo", connection, track(7))
    for i, result in enumerate(results):
        if i == 4:
            assert isinstance(result, connector.DataError)
            continue
        assert isinstance(result, list)
        [bundle] = result
        assert bundle["event"] == f"E{i}" and bundle["shard"] == str(i)[-1]
        assert bundle["id"] == bundle["sent"] and bundle["method"] == "POST"
        assert bundle["ok"] is True
    assert set(single[0]) == set(results[7][0])  # type: ignore[index]
    ids = [m["messageId"] for m in sink.messages()[:11]]
    assert ids == [r[0]["id"] for r in results if isinstance(r, list)]  # type: ignore[index]


def test_batch_output_that_never_names_parameters_renders_the_same(
    sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """Items are not kept with their parameters when the output never names them: the
    bundle is the same as a single run's, and a template that binds the name itself
    (a loop variable) still reads the scope's outside its loop."""
    shadowed = (
        "{% for parameters in ['m'] %}{{ parameters }}{% endfor %}"
        "-{{ parameters.event }}-{{ request.body.event }}"
    )
    app = _echo_app(tmp_path, {"text": shadowed})
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, [track(1), track(2)]))
        plain = list(engine.run_batch("segment.track", connection, [track(3)]))
        single = engine.run("segment.track", connection, track(3))
    assert [r[0]["text"] for r in results] == ["m-E1-E1", "m-E2-E2"]  # type: ignore[index]
    assert plain[0][0].keys() == single[0].keys()  # type: ignore[index]
    assert plain[0][0]["properties"] == single[0]["properties"]  # type: ignore[index]


def test_batch_shows_each_items_headers_in_its_own_order(
    sink: Sink, connection: dict, tmp_path: Path
) -> None:
    """Headers built by a template may differ in order only: each bundle still shows
    its own item's, as its single run would."""
    app = _echo_app(
        tmp_path, "{{ request.headers | list | join(',') }}", "{{ parameters.context }}"
    )
    pairs = [{"key": "X-A", "value": "1"}, {"key": "X-B", "value": "2"}]
    inputs = [track(i, context=pairs if i % 2 else pairs[::-1]) for i in range(4)]
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles
    assert [r[0] for r in results] == [  # type: ignore[index]
        "X-B,X-A,Content-Type",
        "X-A,X-B,Content-Type",
        "X-B,X-A,Content-Type",
        "X-A,X-B,Content-Type",
    ]


def test_a_store_set_during_a_batch_run_applies_to_the_next_run(
    registry: connector.Registry, sink: Sink, connection: dict, tmp_path: Path
) -> None:
    from connector.runs.incomplete import IncompleteStore

    with (
        connector.Engine(registry, retry=FAST_RETRY) as engine,
        IncompleteStore(tmp_path / "s.sqlite") as store,
    ):
        run = engine.run_batch("segment.track", connection, (track(i) for i in range(2600)))
        first = next(run)  # the first batch (2,500 items) is out and answered
        engine.incomplete = store
        rest = list(run)
        assert len(rest) == 2599 and all(isinstance(r, list) for r in [first, *rest])
        assert store.executions() == []  # this run was planned without it
        sink.inject(*[Fault(status=503)] * FAST_RETRY.attempts)
        failed = list(engine.run_batch("segment.track", connection, [track(0)]))
        assert isinstance(failed[0], connector.RunError) and failed[0].incomplete_id
        assert len(store.executions()) == 1  # the next run writes ahead


MERGED_OUTPUTS = [
    # (output template, rendered once per batch response?)
    ("{{ request.body | merge({'ok': response.body.success}) }}", True),
    ("{{ request.body | merge({'status': response.status, 'to': connection.host}) }}", True),
    ("{{ request.body | merge(response.body) }}", True),
    ("{{ request.body | merge({'event': response.status}) }}", True),  # X wins a clash
    ("{{ request.body | merge(none) }}", True),
    ("{{ request.body | merge({'again': parameters.event}) }}", False),
    ("{{ request.body | merge(parameters) }}", False),  # a bare name is read too
    ("{{ request.body | merge(request) }}", False),
    ("{{ request.body | merge({'has_id': run.id is string}) }}", False),
    ("{{ request.body | merge({'n': request.body.event}) }}", False),
    ("{{ request.body | merge('text') }}", True),  # fails: each item gets the error
    ("{{ request.body | merge(response.body.success) }}", True),  # fails: not an object
    ("{{ {'a': 1} | merge(request.body) }}", False),
]


@pytest.mark.parametrize(("output", "per_batch"), MERGED_OUTPUTS)
def test_merged_outputs_match_single_runs(
    sink: Sink, connection: dict, tmp_path: Path, output: str, per_batch: bool
) -> None:
    """``{{ request.body | merge(X) }}`` with an X that reads only the response and the
    connection is rendered once per batch response; every bundle (or error) is still
    exactly its single run's."""
    from connector.runs.batch import BatchPlan

    app = _echo_app(tmp_path, output)
    inputs = [track(i, messageId=f"m-{i}", timestamp="2026-11-25T10:00:00.000Z") for i in range(5)]
    inputs[2] = {"event": "no identity"}
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        plan = BatchPlan(engine, "segment.echo", connection)
        assert plan.bundles.merge_per_batch is per_batch
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles: list[Any] = []
        for item in inputs:
            try:
                singles.append(engine.run("segment.echo", connection, item))
            except connector.RunError as exc:
                singles.append(exc)
    for result, single in zip(results, singles, strict=True):
        if isinstance(single, connector.RunError):
            assert type(result) is type(single) and result.message == single.message  # type: ignore[union-attr]
        else:
            assert result == single
    bundles = [r[0] for r in results if isinstance(r, list)]
    if len(bundles) > 1 and bundles[0]:
        bundles[0].clear()  # bundles share nothing: emptying one leaves the others
        assert all(bundles[1:])


def test_the_merged_object_is_rendered_once_per_batch_response(
    engine: connector.Engine, sink: Sink, connection: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connector.runs.batch_items as batch_module

    calls: list[int] = []
    real = batch_module.output_bundles

    def counted(*args: Any) -> list[Any]:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(batch_module, "output_bundles", counted)
    results = list(engine.run_batch("segment.track", connection, [track(i) for i in range(3000)]))
    assert all(isinstance(r, list) and r[0]["success"] is True for r in results)
    assert len(sink.received()) == 2 and len(calls) == 2  # two batches, one render each


def test_items_of_any_body_kind_match_single_runs(tmp_path: Path) -> None:
    """After the first item, items whose body is a JSON object or list share the batch's
    head and build no request of their own; other bodies (text, numbers, null) build
    theirs. Either way each bundle is its single run's. (A mock server: the sink, like
    Segment, refuses bodies that are not objects.)"""
    import httpx

    output = "{{ request.method }} {{ request.headers | list | join(',') }} {{ request.body }}"
    app = _echo_app(tmp_path, output, body="{{ parameters.event }}")
    sent: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return httpx.Response(200, json={"success": True})

    events = ['{"a": 1}', "[1, 2]", '"text"', "7", '{"b": [true]}', "null", "[]"]
    inputs = [track(i, event=event) for i, event in enumerate(events)]
    connection = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9"}
    client = httpx.Client(transport=httpx.MockTransport(answer))
    with connector.Engine(connector.load(app, packaged=False), client=client) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles
    assert json.loads(sent[0])["batch"] == [{"a": 1}, [1, 2], "text", 7, {"b": [True]}, None, []]


ODD_PROPERTIES: list[Any] = [
    [{"key": "plain", "value": "x"}],
    [{"key": "secret", "value": f"it is {WRITE_KEY}"}],  # replaced in the bundle
    [{"key": "nothing", "value": None}],  # null in the message
    [{"key": "word", "value": "nullable"}],  # "null" in text: written by the stdlib too
    [{"key": "big", "value": 2**70}],  # over 64 bits: written by the standard library
    [{"key": "uni", "value": 'caf\u00e9 \u2603 "q" \\\\ \n'}],
    [{"key": "float", "value": 1e300}, {"key": "neg", "value": -0.0}],
    [{"key": "list", "value": [1, {"a": None}]}],
]


@pytest.mark.parametrize("output", [None, "{{ request.body | merge({'s': none}) }}"])
def test_bundles_made_from_message_bytes_match_single_runs(
    sink: Sink, connection: dict, tmp_path: Path, output: str | None
) -> None:
    """A batch makes a bundle from its message's bytes when it can; secrets, nulls and
    integers over 64 bits take the general copy. Each bundle is its single run's, in
    order, whatever the mix in one chunk."""
    app = _echo_app(
        tmp_path,
        output
        or json.loads((ROOT / "manifests/segment/track.json").read_text())["output"]["bundle"],
    )
    inputs = [
        track(i, messageId=f"m-{i}", timestamp="2026-11-25T10:00:00.000Z", customProperties=p)
        for i, p in enumerate(ODD_PROPERTIES * 3)
    ]
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles
    by_key = {next(iter(r[0]["properties"])): r[0]["properties"] for r in results}  # type: ignore[index]
    assert by_key["secret"]["secret"] == "it is [REDACTED]"
    assert by_key["big"]["big"] == 2**70 and type(by_key["big"]["big"]) is int
    assert by_key["nothing"] == {"nothing": None}


@pytest.mark.parametrize("name", ["parameters", "run", "request", "response"])
def test_a_bare_name_merged_is_named(name: str) -> None:
    from connector.templating.templates import TemplateTree, merge_operand_names

    tree = TemplateTree("{{ request.body | merge(" + name + ") }}")
    assert merge_operand_names(tree, ("request", "body")) == {name}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (  # an object for the first item, text (never parsed as JSON) for the others
            {"Content-Type": "text/plain"},
            "{{ parameters.customProperties if parameters.userId == 'u0' else parameters.event }}",
        ),
        ({"X-Static": "1"}, None),  # literal headers with the manifest's object body
        ({"Content-Type": "text/plain"}, None),
    ],
)
def test_literal_headers_encode_batch_items_as_single_runs(
    tmp_path: Path, headers: dict[str, str], body: str | None
) -> None:
    import httpx

    output = "{{ request.headers | list | join(',') }} {{ request.body }}"
    app = _echo_app(tmp_path, output, headers=headers, body=body)
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"success": True}))
    )
    events = ['{"a": 1}', '{"b": 2}', "[3]", "plain"]
    fixed = {"timestamp": "2026-11-25T10:00:00.000Z"}
    inputs = [track(i, event=e, messageId=f"m-{i}", **fixed) for i, e in enumerate(events)]
    inputs[0]["customProperties"] = [{"key": "k", "value": 1}]
    connection = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9"}
    with connector.Engine(connector.load(app, packaged=False), client=client) as engine:
        results = list(engine.run_batch("segment.echo", connection, inputs))
        singles = [engine.run("segment.echo", connection, item) for item in inputs]
    assert results == singles


def test_a_nan_in_the_merged_object_stays_nan(sink: Sink, connection: dict, tmp_path: Path) -> None:
    """orjson writes NaN as null: a merged object holding one takes the general copy,
    which keeps the NaN, as a single run's bundle does."""
    import math

    app = _echo_app(tmp_path, "{{ request.body | merge({'n': 1e308 * 10 * 0}) }}")
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        results = list(engine.run_batch("segment.echo", connection, [track(0), track(1)]))
        single = engine.run("segment.echo", connection, track(2))
    for bundles in (*results, single):
        assert isinstance(bundles, list) and math.isnan(bundles[0]["n"])


# -- one bad item never costs the batch (issue 10, section 3) ----------------------------


class _PoisonReceiver:
    """A loopback /v1/batch receiver that refuses, with ``status``, any batch holding a
    message whose event is "Poison" (as a real endpoint refuses a whole batch for one
    bad message), and keeps what it accepted."""

    def __init__(self, status: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.accepted: list[dict[str, Any]] = []
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                bad = any(m.get("event") == "Poison" for m in body["batch"])
                answer = b'{"success":false}' if bad else b'{"success":true}'
                if not bad:
                    outer.accepted += body["batch"]
                self.send_response(status if bad else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_refused_batch_is_split_so_only_bad_items_fail(
    registry: connector.Registry, tmp_path: Path, status: int
) -> None:
    from connector.runs.incomplete import IncompleteStore

    receiver = _PoisonReceiver(status)
    try:
        inputs = [track(i) for i in range(40)]
        for bad in (5, 6, 33):
            inputs[bad] = {"event": "Poison", "userId": f"u{bad}"}
        with (
            IncompleteStore(tmp_path / "s.sqlite") as store,
            connector.Engine(registry, retry=FAST_RETRY, incomplete=store) as engine,
        ):
            connection = {"writeKey": WRITE_KEY, "host": receiver.url}
            results = list(engine.run_batch("segment.track", connection, inputs))
            assert len(store) == 0  # refused for good: nothing to retry, nothing kept
        failed = [i for i, r in enumerate(results) if isinstance(r, connector.RunError)]
        assert failed == [5, 6, 33]
        for i in failed:
            error = results[i]
            assert isinstance(error, connector.RunError) and error.status == status
            assert error.incomplete_id is None
        delivered = sorted(int(m["userId"][1:]) for m in receiver.accepted)
        assert delivered == [i for i in range(40) if i not in (5, 6, 33)]  # each once
        # Halving: far fewer requests than one per item.
        assert receiver.requests < 40
    finally:
        receiver.close()


def test_a_refused_batch_through_the_cli_names_the_bad_lines(tmp_path: Path) -> None:
    receiver = _PoisonReceiver(400)
    try:
        path = tmp_path / "events.jsonl"
        lines = [json.dumps(track(i)) for i in range(12)]
        lines[7] = json.dumps({"event": "Poison", "userId": "u7"})
        path.write_text("\n".join(lines) + "\n")
        conn = json.dumps({"writeKey": WRITE_KEY, "host": receiver.url})
        done = run_cli("run", "segment.track", "-c", conn, "--batch", str(path), "--no-store")
        assert done.returncode == 1
        out = [json.loads(line) for line in done.stdout.splitlines()]
        assert [o["line"] for o in out] == list(range(1, 13))
        assert "error" in out[7] and out[7]["error"]["message"].startswith("line 8:")
        assert out[7]["error"]["status"] == 400
        assert all("bundles" in o for i, o in enumerate(out) if i != 7)
        assert done.stderr.strip().endswith("11 sent, 1 failed (line 8), 0 kept for retry")
        assert len(receiver.accepted) == 11
    finally:
        receiver.close()


def test_split_halves_that_fail_retryably_are_kept_alone(
    registry: connector.Registry, sink: Sink, tmp_path: Path
) -> None:
    """The whole batch is refused (400), its first half then fails with 503 after its
    retries, its second half is delivered: the row keeps only the first half."""
    from connector.runs.incomplete import IncompleteStore

    sink.inject(Fault(status=400), *[Fault(status=503)] * FAST_RETRY.attempts)
    with (
        IncompleteStore(tmp_path / "s.sqlite") as store,
        connector.Engine(registry, retry=FAST_RETRY, incomplete=store) as engine,
    ):
        connection = {"writeKey": WRITE_KEY, "host": sink.url}
        results = list(engine.run_batch("segment.track", connection, [track(i) for i in range(8)]))
        kept = [r for r in results[:4] if isinstance(r, connector.RunError)]
        assert len(kept) == 4 and all(isinstance(r, list) for r in results[4:])
        [row] = store.executions()
        assert kept[0].incomplete_id == row.id and row.kind == "batch" and row.items == 4
        assert [m["event"] for m in row.messages()] == ["E0", "E1", "E2", "E3"]
        sink.clear()
        [outcome] = store.retry_all(engine, connection)
        assert outcome["delivered"] is True and outcome["messages"] == 4
        assert [m["event"] for m in sink.messages()] == ["E0", "E1", "E2", "E3"]
        assert len(store) == 0


# -- write-ahead once per request (issue 14) ---------------------------------------------


def test_write_ahead_is_one_row_per_request(
    registry: connector.Registry, sink: Sink, connection: dict, tmp_path: Path
) -> None:
    from connector.runs.incomplete import IncompleteStore

    written: list[int] = []

    class CountingStore(IncompleteStore):
        def begin_batch(self, module: Any, conn: Any, request: Any, items: int, key: str) -> str:
            written.append(items)
            return super().begin_batch(module, conn, request, items, key)

    with (
        CountingStore(tmp_path / "s.sqlite") as store,
        connector.Engine(registry, incomplete=store) as engine,
    ):
        results = list(
            engine.run_batch("segment.track", connection, (track(i) for i in range(5001)))
        )
        assert all(isinstance(r, list) for r in results)
        assert len(store) == 0  # each row deleted once its request was answered
    assert len(written) == sink.requests_count >= 3
    assert sum(written) == 5001


def test_a_killed_batch_run_loses_nothing_and_replays_the_same_ids(
    sink: Sink, tmp_path: Path
) -> None:
    """SIGKILL while batch requests are out: every line is either delivered or in the
    store, and `incomplete retry --all` sends the very messageIds written ahead."""
    import time

    from connector.runs.incomplete import IncompleteStore

    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(track(i)) + "\n" for i in range(6000)))
    db = tmp_path / "kill.sqlite"
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    sink.inject(Fault(status=None), Fault(status=503, retry_after="30"))  # 2nd request stalls
    kill_cli_after(
        sink, 2, "run", "segment.track", "-c", conn, "--batch", str(path), "--store", str(db)
    )
    # Its worker processes ended with it: nothing more arrives.
    time.sleep(1)
    seen = sink.requests_count
    time.sleep(1)
    assert sink.requests_count == seen
    first = [m["messageId"] for m in sink.messages()]
    with IncompleteStore(db) as store:
        rows = store.executions()
        assert rows and all(r.kind == "batch" and r.state == "pending" for r in rows)
        stored = [i for r in rows for i in r.message_ids()]
        assert sum(r.items for r in rows) == len(stored) > 0
    # The request that was waiting to retry was never delivered: its messages are kept.
    # (A request answered just before the kill may be both delivered and kept: the
    # replay then sends its messageIds again, and Segment drops the duplicates.)
    assert first and set(stored) - set(first)
    sink.clear()
    done = run_cli("incomplete", "retry", "--all", "--store", str(db), "-c", conn)
    assert done.returncode == 0, done.stderr
    replayed = [m["messageId"] for m in sink.messages()]
    assert replayed == stored  # the same messages, in order
    with IncompleteStore(db) as store:
        assert len(store) == 0


def _kinds(stdout: str) -> list[tuple[int, str, str | None]]:
    out = []
    for line in stdout.splitlines():
        item = json.loads(line)
        kind = next(k for k in item if k != "line")
        event = item["bundles"][0]["event"] if kind == "bundles" else None
        out.append((item["line"], kind, event))
    return out


def test_cli_batch_workers_answer_in_input_order_like_one_process(
    sink: Sink, tmp_path: Path
) -> None:
    """Several chunks over three workers: the same lines, kinds and summary as one
    process, in input order (blank lines and bad lines across chunk borders)."""
    lines = [json.dumps(track(i)) for i in range(3500)]
    for bad in (0, 999, 1000, 2001, 3499):
        lines[bad] = json.dumps({"event": f"bad {bad}"})
    for blank in (5, 1001, 2999):
        lines[blank] = ""
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    one = run_batch_cli(sink, path, "--no-store", "--workers", "1")
    three = run_batch_cli(sink, path, "--no-store", "--workers", "3")
    assert one.returncode == three.returncode == 1
    assert _kinds(three.stdout) == _kinds(one.stdout)
    assert [n for n, _, _ in _kinds(three.stdout)] == list(range(1, 3501))
    assert three.stderr == one.stderr
    assert three.stderr.startswith(
        "3,492 sent, 5 failed (lines 1, 1,000, 1,001, 2,002, 3,500), 0 kept for retry, 3 blank"
    )
    assert len(sink.messages()) == 2 * 3492


def test_cli_batch_workers_report_a_bad_module_once(sink: Sink, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(track(1)) + "\n")
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    done = run_cli("run", "segment.api_call", "-c", conn, "--batch", str(path), "--workers", "2")
    assert done.returncode == 1
    assert "cannot run in batch mode" in json.loads(done.stderr)["error"]["message"]
    bad = run_cli("run", "segment.track", "-c", conn, "--batch", str(path), "--workers", "0")
    assert bad.returncode == 2


# -- bundles handed over as JSON are the bundles (one semantics) ------------------------

_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.booleans(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "success", 'q"', "é"]), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20),
            st.dictionaries(
                st.sampled_from(["sku", "success", "note", "x y", "ü"]), _VALUES, max_size=4
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_bundles_as_json_read_back_as_the_parsed_bundles(
    engine: connector.Engine, sink: Sink, connection: dict, rows: list[tuple[str, dict]]
) -> None:
    from connector.runs.batch import batch
    from connector.runs.batch_items import BundlesJSON

    inputs = [
        {
            "event": event,
            "userId": f"u{i}",
            "messageId": f"m-{i}",
            "timestamp": "2026-01-02T03:04:05.000Z",
            "customProperties": props,
        }
        for i, (event, props) in enumerate(rows)
    ]
    parsed = list(batch(engine, "segment.track", connection, inputs))
    as_json = list(batch(engine, "segment.track", connection, inputs, as_json=True))
    assert len(parsed) == len(as_json) == len(inputs)
    for one, other in zip(parsed, as_json, strict=True):
        if isinstance(one, connector.RunError):
            assert isinstance(other, connector.RunError) and other.message == one.message
            continue
        read = json.loads(other.data) if isinstance(other, BundlesJSON) else other
        assert read == one
        assert json.dumps(read) == json.dumps(one)  # the same keys, in the same order


def test_bundles_as_json_are_taken_where_they_can_be(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    from connector.runs.batch import batch
    from connector.runs.batch_items import BundlesJSON

    inputs = [track(0), track(1, customProperties={"success": 1}), {"event": "x"}]
    results = list(batch(engine, "segment.track", connection, inputs, as_json=True))
    assert isinstance(results[0], BundlesJSON)
    assert json.loads(results[0].data)[0]["success"] is True
    # A body with a key the output also sets would write it twice: parsed instead.
    assert isinstance(results[1], list) and results[1][0]["properties"]["success"] == 1
    assert isinstance(results[2], connector.DataError)


def test_cli_batch_workers_from_stdin_at_volume(sink: Sink) -> None:
    """Lines on stdin, many chunks per worker: every line is answered, in order (a parent
    that waited for answers while it still had lines to deal could wait forever)."""
    data = "".join(json.dumps(track(i)) + "\n" for i in range(20_000))
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    done = run_cli(
        *("run", "segment.track", "-c", conn, "--batch", "-", "--no-store", "--workers", "2"),
        input=data,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 20_000
    assert [json.loads(line)["line"] for line in lines[::997]] == list(range(1, 20_001, 997))
    assert done.stderr == "20,000 sent, 0 failed, 0 kept for retry\n"


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(_JSON_VALUES, st.booleans())
def test_a_line_reads_as_the_standard_library_reads_it(value: Any, ascii_only: bool) -> None:
    """Lines go to orjson unless they hold a long run of digits; either way the value
    is the one the standard library reads (one semantics for the two readers)."""
    from connector.tools.batch_file import _parse

    raw = json.dumps({"parameters": value}, ensure_ascii=ascii_only).encode()
    got, expected = _parse(raw, 1), json.loads(raw)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_worker_pipes_hold_several_blocks() -> None:
    """Each pipe to a worker holds blocks ahead (Linux), so dealing one worker its next
    block does not wait for it to finish the one it is on."""
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_GETPIPE_SZ"):
        pytest.skip("no pipe sizes on this system")
    from connector.tools import batch_file, batch_workers

    read, write = os.pipe()
    try:
        batch_workers._widen(write)
        size = fcntl.fcntl(write, fcntl.F_GETPIPE_SZ)
        with open("/proc/sys/fs/pipe-max-size") as limit:
            allowed = int(limit.read())
        assert size >= min(batch_workers.PIPE_BYTES, allowed)
        # Several blocks fit: the next block is dealt while the worker is on one.
        assert batch_workers.PIPE_BYTES >= 2 * batch_file.BLOCK_BYTES
    finally:
        os.close(read)
        os.close(write)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "sigterm"],
)
def test_cli_batch_interrupted_ends_with_whole_lines_a_summary_and_exit_130(
    sink: Sink, tmp_path: Path, workers: str, signum: int, group: bool
) -> None:
    """Ctrl-C (SIGINT to the command's process group, as a terminal sends it) or SIGTERM
    to the command alone (as ``docker stop`` or a supervisor sends it) during a long run:
    the output still ends with a whole line and answers lines 1..N in order, the summary
    says the run was interrupted after line N, and the command exits 130. The first two
    requests are held by the sink, so the signal lands while the file is being read.
    (SIGTERM used to end the process where it was: no summary, and with workers the
    last line cut in the middle.)"""
    sink.inject(Fault(status=None, delay=1.5), Fault(status=None, delay=1.5))
    path = tmp_path / "in.jsonl"
    pad = {"pad": "x" * 40}
    line = json.dumps({"event": "Order Completed", "userId": "u", "customProperties": pad})
    path.write_text((line + "\n") * 80_000)
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    args = ["run", "segment.track", "-c", conn, "--batch", str(path), "--no-store"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", *args, "--workers", workers],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group: the signal reaches it alone
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()  # the first answer: the run is under way
    (os.killpg if group else os.kill)(proc.pid, signum)
    rest = proc.stdout.read()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 130, err
    output = first + rest
    assert output.endswith(b"\n")
    answered = [json.loads(x)["line"] for x in output.splitlines()]
    assert answered == list(range(1, len(answered) + 1))
    assert 0 < len(answered) < 80_000
    assert f"interrupted after line {len(answered):,}" in err, err
