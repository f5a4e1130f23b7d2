"""The ``connector`` command as a host scripts it: real processes, a real sink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connector.testing.sink import Sink
from tests.conftest import WRITE_KEY, run_cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args)


def error_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    payload = json.loads(done.stderr)
    assert set(payload) == {"error"}
    error: dict[str, Any] = payload["error"]
    return error


def test_run_prints_bundles_and_exits_zero(sink: Sink, tmp_path: Path) -> None:
    conn = tmp_path / "conn.json"
    conn.write_text(json.dumps({"writeKey": WRITE_KEY, "host": sink.url}))
    done = cli(
        "run",
        "segment.track",
        "--connection",
        str(conn),
        "--parameters",
        str(EXAMPLES / "track.json"),
        "--context",
        str(EXAMPLES / "context.json"),
    )
    assert done.returncode == 0, done.stderr
    bundles = json.loads(done.stdout)
    assert isinstance(bundles, list) and len(bundles) == 1
    assert bundles[0]["event"] == "Order Completed"
    assert bundles[0]["properties"]["revenue"] == 19.99
    [record] = sink.received()
    assert record["path"] == "/v1/track"
    assert record["body"]["messageId"] == bundles[0]["messageId"]
    assert WRITE_KEY not in done.stdout + done.stderr


def test_run_with_inline_json_and_context_mapping(sink: Sink) -> None:
    done = cli(
        "run",
        "segment.identify",
        "-c",
        json.dumps({"writeKey": WRITE_KEY, "host": sink.url}),
        "-p",
        json.dumps({"userId": "{{ webhook.email }}"}),
        "-x",
        json.dumps({"webhook": {"email": "ada@example.com"}}),
    )
    assert done.returncode == 0, done.stderr
    assert sink.received()[0]["body"]["userId"] == "ada@example.com"


def test_dry_run_sends_nothing_and_redacts(sink: Sink) -> None:
    done = cli(
        "run",
        "segment.track",
        "--dry-run",
        "-c",
        json.dumps({"writeKey": WRITE_KEY, "host": sink.url}),
        "-p",
        json.dumps({"event": "E", "userId": "u"}),
    )
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    assert request["method"] == "POST"
    assert request["url"] == f"{sink.url}/v1/track"
    assert request["headers"]["Authorization"] == "[REDACTED]"
    assert request["body"]["event"] == "E"
    assert WRITE_KEY not in done.stdout
    assert sink.requests_count == 0


@pytest.mark.parametrize(
    ("args", "code", "kind", "field"),
    [
        (["-p", '{"event": "E"}'], 1, "DataError", "userId"),
        (["-p", '{"event": "E", "userId": "u", "revenue": "abc"}'], 1, "DataError", "revenue"),
        (["-p", "{not json"], 2, "DataError", "--parameters"),
        (["-p", "no-such-file.json"], 2, "DataError", "--parameters"),
        (["-p", "[1, 2]"], 2, "DataError", "--parameters"),
    ],
)
def test_run_errors_are_json_on_stderr(
    sink: Sink, args: list[str], code: int, kind: str, field: str
) -> None:
    done = cli(
        "run", "segment.track", "-c", json.dumps({"writeKey": WRITE_KEY, "host": sink.url}), *args
    )
    assert done.returncode == code
    assert done.stdout == ""
    error = error_of(done)
    assert error["type"] == kind
    assert error["field"] == field
    assert sink.requests_count == 0


def test_remote_failure_exit_code_and_type(sink: Sink) -> None:
    from connector.testing.sink import Fault

    sink.inject(Fault(status=403))
    done = cli(
        "run",
        "segment.track",
        "-c",
        json.dumps({"writeKey": WRITE_KEY, "host": sink.url}),
        "-p",
        '{"event": "E", "userId": "u"}',
    )
    assert done.returncode == 1
    error = error_of(done)
    assert error["type"] == "InvalidAccessTokenError"
    assert error["status"] == 403
    assert WRITE_KEY not in done.stderr


def test_unknown_module() -> None:
    done = cli("run", "segment.nope", "-p", "{}")
    assert done.returncode == 2
    error = error_of(done)
    assert "unknown module 'segment.nope'" in error["message"]
    assert "segment.track" in error["message"]


def test_modules_and_validate() -> None:
    done = cli("modules")
    assert done.returncode == 0
    listed = [line.split()[0] for line in done.stdout.splitlines()]
    assert listed == sorted(listed)
    assert {"segment.api_call", "segment.identify", "segment.track"} <= set(listed)
    done = cli("validate")
    assert done.returncode == 0
    assert f"{len(listed)} module(s)" in done.stdout


def test_validate_reports_file_and_path(tmp_path: Path) -> None:
    app = json.loads((ROOT / "manifests/segment/app.json").read_text())
    app["modules"] = ["bad.json"]
    (tmp_path / "app.json").write_text(json.dumps(app))
    module = json.loads((ROOT / "manifests/segment/track.json").read_text())
    module["parameters"][0]["type"] = "txt"
    (tmp_path / "bad.json").write_text(json.dumps(module))
    done = cli("validate", str(tmp_path))
    assert done.returncode == 3
    error = error_of(done)
    assert error["source"].endswith("bad.json")
    assert error["path"] == "$.parameters[0].type"


def test_external_manifests_are_loaded_beside_the_packaged_ones(tmp_path: Path) -> None:
    app = {
        "name": "echo",
        "label": "Echo",
        "baseUrl": "http://127.0.0.1:1",
        "connection": {"auth": {"type": "none"}},
        "modules": ["ping.json"],
    }
    module = {"id": "echo.ping", "label": "Ping", "description": "d", "request": {"url": "/p"}}
    (tmp_path / "app.json").write_text(json.dumps(app))
    (tmp_path / "ping.json").write_text(json.dumps(module))
    done = cli("modules", "--manifests", str(tmp_path))
    assert "echo.ping" in done.stdout and "segment.track" in done.stdout
    done = cli("modules", "--manifests", str(tmp_path), "--no-packaged")
    assert done.stdout.split()[0] == "echo.ping" and "segment" not in done.stdout


def test_sink_command_serves_and_shows(tmp_path: Path) -> None:
    store = tmp_path / "sink.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "sink", "--port", "0", "--store", str(store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("connector sink listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[-1]
        done = cli(
            "run",
            "segment.track",
            "-c",
            json.dumps({"writeKey": WRITE_KEY, "host": url}),
            "-p",
            '{"event": "Shown", "userId": "u"}',
        )
        assert done.returncode == 0, done.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    shown = cli("sink", "--show", str(store))
    records = json.loads(shown.stdout)
    assert [r["body"]["event"] for r in records] == ["Shown"]
    assert WRITE_KEY not in store.read_text()


def test_demo_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "the sink received 3 request(s)" in done.stdout
    for path in ("POST /v1/identify", "POST /v1/track", "POST /v1/group"):
        assert path in done.stdout
    # The CleverTap -> Segment flow: two events on the first poll, the one added
    # after it on the second, each a track at the sink.
    assert "poll 1: 2 new Charged event(s)" in done.stdout
    assert "poll 2: 1 new Charged event(s)" in done.stdout
    assert "the sink received 3 track(s) from CleverTap" in done.stdout
    assert "POST /v1/track: Charged by cy@example.com" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["-v", "run", "segment.track"],
        ["run", "-v", "segment.track"],
        ["run", "segment.track", "-v"],
        ["run", "segment.track", "--verbose"],
    ],
)
def test_verbose_works_anywhere_on_the_command_line(sink: Sink, args: list[str]) -> None:
    from connector.testing.sink import Fault

    sink.inject(Fault(status=500))
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    params = json.dumps({"event": "E", "userId": "u"})
    done = cli(*args, "-c", conn, "-p", params, "--no-store")
    assert done.returncode == 0, done.stderr
    assert "retrying" in done.stderr  # the retry was logged: -v took effect
    assert WRITE_KEY not in done.stderr


def test_verbose_is_off_by_default(sink: Sink) -> None:
    from connector.testing.sink import Fault

    sink.inject(Fault(status=500))
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    done = cli("run", "segment.track", "-c", conn, "-p", '{"event":"E","userId":"u"}', "--no-store")
    assert done.returncode == 0 and done.stderr == ""


def test_sink_on_a_busy_port_says_so() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("sink", "--port", str(port))
    assert done.returncode == 2
    error = error_of(done)
    assert error["field"] == "--port"
    assert f"port {port} on 127.0.0.1 is busy" in error["message"]
    assert "--port 0" in error["message"]


@pytest.mark.parametrize(
    ("sent", "failed", "kept", "blank", "expected"),
    [
        (
            50_000,
            [17, 902, 40_001],
            0,
            0,
            "50,000 sent, 3 failed (lines 17, 902, 40,001), 0 kept for retry",
        ),
        (3, [], 0, 0, "3 sent, 0 failed, 0 kept for retry"),
        (0, [2], 1, 0, "0 sent, 1 failed (line 2), 1 kept for retry"),
        (1, [], 0, 2, "1 sent, 0 failed, 0 kept for retry, 2 blank lines"),
        (
            0,
            list(range(1, 13)),
            12,
            0,
            "0 sent, 12 failed (lines 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more), 12 kept for retry",
        ),
    ],
)
def test_batch_summary_line(
    sent: int, failed: list[int], kept: int, blank: int, expected: str
) -> None:
    from connector.tools.batch_file import _Tally, summary_line

    assert summary_line(_Tally(sent=sent, failed=failed, kept=kept, blank=blank)) == expected


def test_exit_codes_are_documented() -> None:
    """The codes the README and `connector --help`-level docs promise, as the CLI uses them."""
    from connector.tools import cli as module

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| Exit code |") :]
    for code in (0, 1, 2, 3, 130):
        assert f"| `{code}` |" in table, code
    assert (module.EXIT_RUN_ERROR, module.EXIT_USAGE, module.EXIT_MANIFEST) == (1, 2, 3)


def _probe(code: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_run_loads_neither_the_service_nor_other_apps(sink: Sink, tmp_path: Path) -> None:
    """``connector run`` starts without FastAPI (the ``serve`` subcommand's parser is
    registered, its service is not imported), asyncio (a synchronous run needs none) or
    httpx's own CLI (click, rich, pygments,
    installed here by the dev extra), and loads only its module's app; an unknown
    module is still reported against every module there is."""
    probe = (
        "import sys, connector.core.loader as loader\n"
        "from connector.tools.cli import main\n"
        "seen = []\n"
        "real = loader._load_app_modules\n"
        "loader._load_app_modules = lambda p, s, m, c: seen.append(m.name) or real(p, s, m, c)\n"
        "code = main(['run', 'segment.track', '-c', sys.argv[1], '-p', sys.argv[2]])\n"
        "assert 'httpx' in sys.modules\n"
        "heavy = ('fastapi', 'uvicorn', 'click', 'rich', 'pygments', 'asyncio')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "print(seen)\n"
        "sys.exit(code)\n"
    )
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    params = json.dumps({"event": "E", "userId": "u"})
    env = {**os.environ, "CONNECTOR_HOME": str(tmp_path)}
    lines = _probe(probe, conn, params, env=env)
    assert lines[-2:] == ["[]", "['segment']"]
    assert len(sink.messages()) == 1
    unknown = error_of(cli("run", "segment.nope", "-c", conn))
    assert "livelike.track_event" in unknown["message"]
    assert "clevertap.upload_events" in unknown["message"]


def test_importing_the_package_imports_none_of_the_engine() -> None:
    """``import connector`` is cheap (the command reads its arguments first); each public
    name is imported on first use, and every name of ``__all__`` resolves."""
    lines = _probe(
        "import sys, connector\n"
        "heavy = ('pydantic', 'jinja2', 'httpx', 'sqlite3')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "print(all(getattr(connector, name) is not None for name in connector.__all__))\n"
        "print(set(connector.__all__) <= set(dir(connector)))\n"
        "from connector import Engine, load\n"
        "from connector.core.engine import Engine as E\n"
        "print(Engine is E and load is connector.load)\n"
    )
    assert lines == ["[]", "True", "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import connector

        connector.nope  # noqa: B018


def test_type_checkers_see_the_packages_names_and_no_others(tmp_path: Path) -> None:
    """The lazy package's ``__getattr__`` is for the interpreter only: a type checker
    that saw it would type every name of ``connector`` as what it returns, so a
    misspelt ``from connector import Enginee`` would pass ``mypy --strict``."""
    user = tmp_path / "user.py"
    user.write_text(
        "import connector\n"
        "from connector import Engine, Enginee\n"
        "registry: connector.Registry = connector.load()\n"
        "connector.Registryy\n"
    )
    # In a process of its own: mypy raises the interpreter's recursion limit for good.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            str(user),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    report = done.stdout
    assert done.returncode == 1, report + done.stderr
    assert 'Module "connector" has no attribute "Enginee"' in report
    assert 'Module has no attribute "Registryy"' in report
    assert report.count("error:") == 2, report


def test_a_batch_run_makes_its_tls_context_before_it_imports_the_engine(
    sink: Sink, tmp_path: Path
) -> None:
    """``run --batch`` starts the thread that loads the TLS roots as soon as its command
    line is read, while the engine is still to be imported (loading the roots releases
    the GIL); the run joins it before it forks, and uses that context."""
    probe = (
        "import sys, json\n"
        "from connector.tools import cli\n"
        "seen = []\n"
        "real = cli._prepare_transport\n"
        "def spy():\n"
        "    seen.append('connector.core.engine' in sys.modules or 'pydantic' in sys.modules)\n"
        "    return real()\n"
        "cli._prepare_transport = spy\n"
        "code = cli.main(sys.argv[1:])\n"
        "from connector.core.tls import tls_context\n"
        "print(json.dumps([code, seen, tls_context.cache_info().currsize]))\n"
    )
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"event": "E", "userId": "u"}) + "\n")
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    env = {**os.environ, "CONNECTOR_HOME": str(tmp_path)}
    args = ["run", "segment.track", "-c", conn, "--batch", str(path), "--workers", "1"]
    lines = _probe(probe, *args, env=env)
    code, seen, made = json.loads(lines[-1])
    assert code == 0 and made == 1
    assert seen[0] is False  # the first call: before the engine, before pydantic
    assert len(sink.messages()) == 1
    # A dry run sends nothing: no thread, no context.
    lines = _probe(probe, *args, "--dry-run", env=env)
    assert json.loads(lines[-1]) == [0, [], 0]


def test_the_program_exits_with_mains_code_and_everything_printed(tmp_path: Path) -> None:
    """``python -m connector`` (and the ``connector`` script) end the process without
    tearing the interpreter down, after flushing what was printed: the exit code is
    main's, and a long output arrives whole through a pipe."""
    path = tmp_path / "in.jsonl"
    path.write_text("\n" * 20_000)
    done = cli("run", "segment.track", "--dry-run", "--batch", str(path))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 20_000
    assert done.stderr.startswith("0 checked, 0 failed, nothing sent, 20,000 blank lines")
    assert cli("run", "segment.nope", "-c", "{}").returncode == 2
    assert cli("run", "--workers").returncode == 2  # argparse's own exit
    from connector.tools import cli as module

    script = ROOT / "pyproject.toml"
    assert 'connector = "connector._program:main"' in script.read_text()
    assert module.entry.__module__ == "connector.tools.cli"


_COLLECTOR_PROBE = """
import gc, json, sys
from connector import _program
from connector.core.engine import Engine
from connector.tools import batch_workers, cli

def record(tag):
    print(json.dumps([tag, gc.isenabled()]), flush=True)

def spy(tag, real):
    def wrapper(*args, **kwargs):
        record(tag)
        return real(*args, **kwargs)
    return wrapper

cli._registry = spy("load", cli._registry)
cli.cmd_modules = spy("modules", cli.cmd_modules)
Engine.run = spy("run", Engine.run)
batch_workers.run_in_workers = spy("fork", batch_workers.run_in_workers)
cli._run_batch = spy("batch", cli._run_batch)
sys.argv = ["connector", *sys.argv[1:]]
_program.main()
"""


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["modules"], [["modules", True], ["load", True]]),
        (
            ["run", "segment.track", "-p", '{"event": "E", "userId": "u"}'],
            [["load", False], ["run", True]],
        ),
        (
            ["run", "segment.track", "--batch", "IN", "--workers", "1"],
            [["load", False], ["batch", True]],
        ),
        (
            ["run", "segment.track", "--batch", "IN", "--workers", "2"],
            [["load", False], ["fork", True]],
        ),
    ],
)
def test_the_program_starts_with_the_collector_off_and_turns_it_on(
    sink: Sink, tmp_path: Path, args: list[str], expected: list[list[Any]]
) -> None:
    """Start-up (imports, the manifests' load) runs without the cyclic collector; each
    command turns it on before its work: another command at once, ``run`` once it has
    loaded its module (before a batch's workers fork, so they have it on too)."""
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"event": "E", "userId": "u"}) + "\n")
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    argv = [str(path) if a == "IN" else a for a in args]
    if argv[0] == "run":
        argv += ["-c", conn]
    env = {**os.environ, "CONNECTOR_HOME": str(tmp_path)}
    lines = _probe(_COLLECTOR_PROBE, *argv, env=env)
    assert [json.loads(line) for line in lines if line.startswith('["')] == expected


def test_main_in_a_hosts_process_leaves_its_collector_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the program defers the collector: ``main()`` called by a host neither
    turns it on where the host turned it off nor off where it is on."""
    import gc

    from connector.tools import cli as module

    was = gc.isenabled()
    try:
        for enabled in (False, True):
            (gc.enable if enabled else gc.disable)()
            assert module.main(["modules"]) == 0
            assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
    assert "segment.track" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args", [["--dry-run"], ["--workers", "1"], ["--workers", "2"]], ids=["dry", "one", "workers"]
)
def test_main_in_a_hosts_process_freezes_none_of_its_objects(
    sink: Sink, tmp_path: Path, args: list[str], capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """``run --batch`` called as ``cli.main`` in a host's own process: the host's
    objects are not frozen (a frozen object is never collected again, garbage cycles of
    the host's included). Freezing what start-up made is the program's (see
    connector._program), not a library call's."""
    import gc

    from connector.tools import cli as module

    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"event": "E", "userId": "u"}) + "\n")
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    argv = ["run", "segment.track", "-c", conn, "--batch", str(path), "--no-store", *args]
    frozen = gc.get_freeze_count()
    try:
        assert module.main(argv) == 0
        assert gc.get_freeze_count() == frozen
    finally:
        if gc.get_freeze_count() != frozen:
            gc.unfreeze()  # leave the test process as it was
    assert capsysbinary.readouterr().out.count(b'{"line":1,') == 1


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_closed_output_is_reported_once_without_a_traceback(
    sink: Sink, tmp_path: Path, workers: str
) -> None:
    """``connector run --batch ... | head -1``: the reader goes away; the command says
    on stderr, once and as JSON, that the answers after that point are lost, and exits
    1 (no traceback, no 'Exception ignored' at exit)."""
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"event": "E", "userId": f"u{i}"}) + "\n" for i in range(30_000))
    )
    conn = json.dumps({"writeKey": WRITE_KEY, "host": sink.url})
    env = {**os.environ, "CONNECTOR_HOME": str(tmp_path)}
    args = ["run", "segment.track", "-c", conn, "--batch", str(path), "--workers", workers]
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["line"] == 1
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1
    error = json.loads(err)["error"]
    assert error["type"] == "RuntimeError"
    assert error["message"].startswith("the output was closed before every answer was written")
