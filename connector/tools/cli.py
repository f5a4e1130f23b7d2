"""The ``connector`` command: list, describe, validate and run modules; serve a sink.

Output contract (hosts script against it):

* ``run`` prints the output bundles as a JSON array on stdout and exits 0;
  ``run --dry-run`` prints the request that would be sent (auth redacted).
* On failure a command prints ``{"error": {"type", "message", "field"}}`` on stderr
  and exits non-zero: 1 for a failed run (the type is Make's: DataError,
  InvalidConfigurationError, InvalidAccessTokenError, RateLimitError, ConnectionError,
  RuntimeError), 2 for bad command-line input, 3 for a broken manifest.
* ``run --batch FILE`` prints one JSON line per input line instead, a summary line on
  stderr, and exits 1 when any line failed (:mod:`connector.tools.batch_file`).
* ``--connection``, ``--parameters`` and ``--context`` each take inline JSON or the
  path of a JSON file. ``-v`` may come anywhere on the line.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector._version import __version__
from connector.errors import (
    ConnectorError,
    ManifestError,
    RunError,
    UnknownModuleError,
)

if TYPE_CHECKING:
    from connector.core.engine import Engine
    from connector.core.registry import Registry
    from connector.runs.incomplete import IncompleteExecution, IncompleteStore
    from connector.tools.batch_file import BatchFileRun, _Tally

__all__ = ["entry", "main"]

EXIT_RUN_ERROR = 1
EXIT_USAGE = 2
EXIT_MANIFEST = 3
EXIT_INTERRUPTED = 130


class UsageError(ConnectorError):
    """Bad command-line input (not a module failure)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


def _print_json(value: Any, stream: Any = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
    stream.flush()


def _quiet_stdout() -> None:
    """Point standard output at the null device, so that nothing left in its buffer is
    written to a pipe that has closed (which would raise again at exit)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())  # type: ignore[union-attr]
        os.close(devnull)


def _error(kind: str, message: str, field: str | None = None, **extra: Any) -> None:
    _print_json({"error": {"type": kind, "message": message, "field": field, **extra}}, sys.stderr)


def read_json_arg(value: str | None, option: str) -> Any:
    """Inline JSON, or the path of a JSON file."""
    if value is None:
        return None
    text = value
    stripped = value.lstrip()
    if not stripped.startswith(("{", "[")):
        path = Path(value)
        if not path.is_file():
            raise UsageError(f"{option}: {value!r} is neither JSON nor a file", field=option)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{option}: cannot read {value!r}: {exc}", field=option) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{option}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            field=option,
        ) from None
    except RecursionError:
        raise UsageError(f"{option}: JSON nested too deeply", field=option) from None


def _object_arg(value: str | None, option: str) -> dict[str, Any] | None:
    data = read_json_arg(value, option)
    if data is not None and not isinstance(data, dict):
        raise UsageError(f"{option} must be a JSON object", field=option)
    return data


def _registry(args: argparse.Namespace, module: str | None = None) -> Registry:
    """The apps the command loads: all of them, or with ``module``, only its app (a
    module id starts with its app's name) when that app has it; else all of them, so
    that an unknown id is reported against every module there is."""
    from connector.core.loader import load

    paths = args.manifests or []
    packaged = not args.no_packaged or not paths
    if module is not None and "." in module:
        registry = load(*paths, packaged=packaged, cache=True, apps={module.split(".", 1)[0]})
        if module in registry:
            return registry
    return load(*paths, packaged=packaged, cache=True)


def cmd_modules(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.json:
        _print_json(registry.list())
    else:
        for item in registry.list():
            print(f"{item['id']:<28} {item['kind']:<10} {item['label']}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    _print_json(_registry(args, args.module).describe(args.module))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or []
    from connector.core.loader import check_json_schema, load

    registry = load(*paths, packaged=not paths, cache=True)
    check_json_schema(registry)
    from connector.tools.fixtures import check_fixture, fixture_path, load_fixture

    examples = 0
    for module in registry:
        path = fixture_path(module)
        if path.is_file():
            # A broken example file, or one that does not fit its module, is a
            # ManifestError too.
            check_fixture(module, load_fixture(path), path)
            examples += 1
    apps = ", ".join(sorted(registry.apps))
    print(
        f"ok: {len(registry.apps)} app(s) ({apps}), {len(registry)} module(s), "
        f"{examples} example file(s)"
    )
    return 0


@functools.cache
def _prepare_transport() -> threading.Thread:
    """httpx and its TLS roots (:mod:`connector.core.tls`), made in a thread that
    starts as soon as the command line is read: loading the roots (~25 ms) releases
    the GIL, so it runs while the engine is imported and the manifests load. Joined
    before anything sends, and before the workers of ``run --batch`` fork (they share
    what it made). Started once a process. A failure is left to the first send, which
    reports it."""

    def make() -> None:
        with contextlib.suppress(Exception):
            from connector.core.tls import tls_context

            tls_context()

    thread = threading.Thread(target=make, name="connector-transport", daemon=True)
    thread.start()
    return thread


def _sends_batch(args: argparse.Namespace) -> bool:
    """``run --batch`` that sends: the command whose clients share one TLS context."""
    return getattr(args, "func", None) is cmd_run and bool(args.batch) and not args.dry_run


def cmd_run(args: argparse.Namespace) -> int:
    transport = _prepare_transport() if _sends_batch(args) else None
    registry = _registry(args, args.module)
    connection = _object_arg(args.connection, "--connection")
    parameters = _object_arg(args.parameters, "--parameters")
    context = _object_arg(args.context, "--context")
    if args.batch and args.parameters:
        raise UsageError("--batch reads the parameters from its file", field="--parameters")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be 1 or more", field="--workers")
    if args.batch and not args.dry_run and _workers(args) > 1 and not _typed(args):
        assert transport is not None
        return _run_batch_in_workers(registry, args, connection, context, transport)
    store = None if args.no_store or args.dry_run else _store(args)
    if transport is not None:
        transport.join()
    with _engine(registry, store, batch=transport is not None) as engine:
        # The program's process: the loaded manifests live as long as it does, so they
        # are frozen and the collector never walks them, during a long batch say. A
        # host's own process (main called in it) is left as it is.
        _started()
        if args.batch:
            return _run_batch(engine, args, connection, context)
        if args.dry_run:
            _print_json(engine.dry_run(args.module, connection, parameters, context))
        else:
            _print_json(engine.run(args.module, connection, parameters, context))
    return 0


@contextlib.contextmanager
def _engine(registry: Registry, store: IncompleteStore | None, *, batch: bool) -> Iterator[Engine]:
    """An engine over ``registry`` that closes ``store`` when it is done. With ``batch``
    (a batch run that sends, in this process or a worker) its client shares the
    process's TLS context (:mod:`connector.core.tls`); else it makes its own."""
    from connector.core.engine import Engine

    client = None
    try:
        if batch:
            from connector.core.tls import batch_client

            client = batch_client()
        with Engine(registry, incomplete=store, client=client) as engine:
            yield engine
    finally:
        if client is not None:
            client.close()
        if store is not None:
            store.close()


def _workers(args: argparse.Namespace) -> int:
    from connector.tools.batch_workers import default_workers

    return int(args.workers) if args.workers is not None else default_workers()


def _typed(args: argparse.Namespace) -> bool:
    """``--batch -`` typed on a terminal: one process reads it (a person types slower
    than one process runs, and Ctrl-C must stop the reading at once)."""
    return bool(args.batch == "-" and sys.stdin.isatty())


def _batch_path(args: argparse.Namespace) -> str:
    """``--batch``'s file (``-``: stdin), refused as a usage error before anything runs
    when there is no such file."""
    path: str = args.batch
    if path != "-" and not Path(path).is_file():
        raise UsageError(f"--batch: no such file {path!r}", field="--batch")
    return path


def _run_batch_in_workers(
    registry: Registry,
    args: argparse.Namespace,
    connection: dict[str, Any] | None,
    context: dict[str, Any] | None,
    transport: threading.Thread,
) -> int:
    """``run --batch`` over forked workers (:mod:`connector.tools.batch_workers`); what
    can fail once for all (module, connection, store, file) is checked here first."""
    from connector.core.engine import Engine
    from connector.runs.batch import BatchPlan
    from connector.tools.batch_file import open_batch, summary_line, whole_writes
    from connector.tools.batch_workers import run_in_workers

    path = _batch_path(args)
    with Engine(registry) as checking:  # no client is made: nothing is sent
        BatchPlan(checking, args.module, connection, store=None)
    store_path = None
    if not args.no_store:
        opened = _store(args)
        store_path = opened.path
        opened.close()

    def make_engine() -> contextlib.AbstractContextManager[Engine]:
        """A worker's engine, made after the fork: its own store connection, and a
        client over the TLS context made before it."""
        from connector.runs.incomplete import IncompleteStore

        store = IncompleteStore(store_path) if store_path is not None else None
        return _engine(registry, store, batch=True)

    transport.join()  # httpx and its TLS roots: made once, shared by the workers
    _started()  # the program: frozen before the fork, the manifests stay shared, unwalked
    progress = not args.no_progress and sys.stderr.isatty()
    sys.stdout.flush()
    with open_batch(path) as stream:
        tally = run_in_workers(
            _workers(args),
            make_engine,
            args.module,
            connection,
            context,
            stream,
            whole_writes(sys.stdout.buffer),
            sys.stderr,
            progress=progress,
        )
    sys.stderr.write(summary_line(tally) + "\n")
    sys.stderr.flush()
    return _batch_exit(tally)


def _store(args: argparse.Namespace) -> IncompleteStore:
    import sqlite3

    from connector.runs.incomplete import IncompleteStore, default_store_path

    try:
        return IncompleteStore(args.store)
    except (OSError, sqlite3.Error) as exc:
        where = args.store or str(default_store_path())
        raise UsageError(
            f"--store: cannot open the incomplete executions database {where!r}: {exc}; "
            "give another --store, set CONNECTOR_HOME, or use --no-store",
            field="--store",
        ) from None


def _run_batch(
    engine: Engine,
    args: argparse.Namespace,
    connection: dict[str, Any] | None,
    context: dict[str, Any] | None,
) -> int:
    """One JSON line per input line on stdout, in order; progress (on a terminal) and a
    summary on stderr. See :mod:`connector.tools.batch_file`."""
    from connector.tools.batch_file import (
        BatchFileRun,
        numbered_blocks,
        one_process_interrupts,
        open_batch,
        whole_writes,
    )

    path = _batch_path(args)
    engine.registry.get(args.module)  # an unknown module is a usage error, before reading
    progress = not args.no_progress and sys.stderr.isatty()
    with open_batch(path) as stream:
        # Typed on a terminal, Ctrl-C stops at once: the reading waits for a line.
        stop = one_process_interrupts(at_once=stream.isatty())
        run = BatchFileRun(
            numbered_blocks(stream),
            whole_writes(sys.stdout.buffer),
            sys.stderr,
            progress=progress,
            interrupts=stop,
        )
        try:
            with stop.handled():
                if args.dry_run:
                    run.dry_run(engine, args.module, connection, context)
                else:
                    run.run(engine, args.module, connection, context)
        except BrokenPipeError:
            raise  # the output is gone (_main says so): a summary would count only what it got
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                run.tally.interrupted = run.tally.at_once = True
            _summary(run, args.dry_run)
            raise
        _summary(run, args.dry_run)
    return _batch_exit(run.tally)


def _batch_exit(tally: _Tally) -> int:
    """A batch run's exit code: interrupted, a line failed, or every line went through."""
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_RUN_ERROR if tally.failed else 0


def _summary(run: BatchFileRun, dry_run: bool) -> None:
    sys.stderr.write(run.finish(dry_run=dry_run) + "\n")
    sys.stderr.flush()


def cmd_incomplete(args: argparse.Namespace) -> int:
    from connector.core.engine import Engine

    if args.action == "show" and not args.id:
        raise UsageError("show takes the ID of an incomplete execution", field="id")
    if args.action in ("retry", "discard") and not args.id and not args.all:
        raise UsageError(f"{args.action} takes an ID or --all", field="id")
    if args.id and args.all:
        raise UsageError(f"{args.action} takes an ID or --all, not both", field="--all")
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 or more", field="--limit")
    store = _store(args)
    try:
        if args.action == "list":
            executions = store.executions(
                limit=args.limit, module=args.module, state=args.state, bodies=False
            )
            count = store.count(module=args.module, state=args.state)
            _print_json(
                {
                    "count": count,
                    "shown": len(executions),
                    "executions": [e.summary() for e in executions],
                }
            )
        elif args.action == "show":
            _print_json(_get_execution(store, args.id).to_dict())
        elif args.action == "discard":
            if args.all:
                _print_json({"discarded": store.discard_all(module=args.module, state=args.state)})
            else:
                _get_execution(store, args.id)
                store.discard(args.id)
                _print_json({"discarded": 1, "id": args.id})
        else:  # retry: one outcome per stored row, for an ID as for --all
            connection = _object_arg(args.connection, "--connection")
            with Engine(_registry(args)) as engine:
                if args.all:
                    outcomes = store.retry_all(engine, connection)
                else:
                    _get_execution(store, args.id)
                    outcomes = store.retry(engine, args.id, connection)
            _print_json(outcomes)
            return EXIT_RUN_ERROR if any(not o["delivered"] for o in outcomes) else 0
    finally:
        store.close()
    return 0


def _get_execution(store: IncompleteStore, execution_id: str | None) -> IncompleteExecution:
    try:
        return store.get(execution_id or "")
    except KeyError:
        raise UsageError(f"no incomplete execution {execution_id!r}", field="id") from None


def cmd_sink(args: argparse.Namespace) -> int:
    import errno

    from connector.testing import sink

    if args.show:
        sink.show_cli(args.store or args.show)
        return 0
    try:
        sink.serve_forever_cli(args.host, args.port, args.store)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise UsageError(
            f"port {args.port} on {args.host} is busy (another sink or program listens "
            "there): give another with --port N, or --port 0 for any free port",
            field="--port",
        ) from None
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from connector.format.manifest import app_schema, module_schema
    from connector.tools.fixtures import fixture_schema

    schemas = {
        "app.schema.json": app_schema(),
        "module.schema.json": module_schema(),
        "fixture.schema.json": fixture_schema(),
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / name).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
            print(out / name)
    else:
        _print_json(schemas)
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from connector.tools.docs import write_docs

    # The format reference documents the engine: written with the shipped apps only.
    reference = not (args.no_packaged and args.manifests)
    stale = write_docs(_registry(args), Path(args.out), check=args.check, reference=reference)
    if args.check and stale:
        _error(
            "InvalidConfigurationError",
            "docs are stale: " + ", ".join(stale) + "; run the same command without --check",
        )
        return EXIT_MANIFEST
    for path in stale:
        print(f"wrote {path}")
    if not stale:
        print("docs are up to date")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from connector.tools.scaffold import ScaffoldError, new_app, new_module

    root = Path(args.dir)
    try:
        if args.module:
            done = new_module(root, args.app, args.module, Path(args.docs), args.kind, args.auth)
        else:
            done = new_app(root, args.app, args.auth)
    except ScaffoldError as exc:
        raise UsageError(exc.message, field=exc.field) from None
    for path in done.created:
        print(f"created {path}")
    for path in done.updated:
        print(f"updated {path}")
    folder = root / args.app
    if args.module:
        print(
            f"next: edit {folder / (args.module + '.json')} and its cases in "
            f"{folder / 'tests' / (args.module + '.json')}, then run\n"
            f"  connector validate {folder}\n"
            f"  connector test {args.app} --manifests {root}{_no_packaged_hint(args.app, root)}"
        )
    else:
        print(f"next: connector new {args.app} MODULE --dir {root}")
    return 0


def _no_packaged_hint(app: str, root: Path) -> str:
    """`` --no-packaged`` when a shipped app of that name would clash with this one."""
    from connector.core.loader import packaged_manifests_dir

    shipped = packaged_manifests_dir()
    same_folder = shipped.resolve() == root.resolve()
    return " --no-packaged" if (shipped / app).is_dir() and not same_folder else ""


def cmd_test(args: argparse.Namespace) -> int:
    from connector.tools.fixtures import run_fixtures

    try:
        results = run_fixtures(_registry(args), args.target)
    except LookupError as exc:
        raise UsageError(str(exc.args[0]), field="target") from None
    failed = [r for r in results if not r.ok]
    for result in results:
        if result.ok and args.quiet:
            continue
        print(f"{'ok  ' if result.ok else 'FAIL'}  {result.module}: {result.case}")
        for problem in result.problems:
            print(f"        {problem}")
    modules = len({r.module for r in results})
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed ({modules} module(s))")
    return EXIT_RUN_ERROR if failed else 0


def cmd_webhook(args: argparse.Namespace) -> int:
    from connector.core.engine import Engine
    from connector.runs.trigger import sign

    registry = _registry(args, args.module)
    connection = _object_arg(args.connection, "--connection") or {}
    parameters = _object_arg(args.parameters, "--parameters")
    if args.body == "-":
        body = sys.stdin.buffer.read()
    else:
        try:
            body = Path(args.body).read_bytes()
        except OSError as exc:
            message = f"--body: cannot read {args.body!r}: {exc.strerror}"
            raise UsageError(message, field="--body") from None
    headers: list[tuple[str, str]] = []
    for item in args.header or []:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header {item!r} must be 'Name: value'", field="--header")
        headers.append((name.strip(), value.strip()))
    if args.sign:
        module = registry.get(args.module)
        webhook = module.manifest.webhook
        if webhook is None or webhook.signature is None:
            raise UsageError(f"--sign: {args.module} checks no signature", field="--sign")
        secret = connection.get(webhook.signature.secret)
        if not isinstance(secret, str) or not secret:
            raise UsageError(
                f"--sign needs the connection field {webhook.signature.secret!r}",
                field="--connection",
            )
        headers.append((webhook.signature.header, sign(webhook.signature, secret, body)))
    with Engine(registry) as engine:
        _print_json(engine.handle_webhook(args.module, connection, parameters, headers, body))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector", description="Run declarative, Make-style connector modules."
    )
    parser.add_argument("--version", action="version", version=f"connector {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries to stderr")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--manifests",
        action="append",
        metavar="PATH",
        help="an app folder, app.json or folder of apps to load (repeatable)",
    )
    common.add_argument(
        "--no-packaged", action="store_true", help="with --manifests, skip the shipped apps"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("modules", parents=[common], help="list the loaded modules")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_modules)

    p = sub.add_parser("describe", parents=[common], help="describe a module as JSON")
    p.add_argument("module")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("validate", help="load and check manifests")
    p.add_argument("paths", nargs="*", help="app folders (default: the shipped apps)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", parents=[common], help="run a module")
    p.add_argument("module")
    p.add_argument("--connection", "-c", help="JSON or a JSON file")
    p.add_argument("--parameters", "-p", help="JSON or a JSON file")
    p.add_argument("--context", "-x", help="earlier bundles by name: JSON or a JSON file")
    p.add_argument("--dry-run", action="store_true", help="print the request; send nothing")
    p.add_argument(
        "--batch",
        metavar="FILE.jsonl",
        help="run one parameters object a line (- for stdin) through the app's batch "
        "endpoint; prints one JSON line per input",
    )
    p.add_argument(
        "--store",
        help="incomplete executions database (default: "
        "$CONNECTOR_HOME/incomplete.sqlite, CONNECTOR_HOME=~/.connector)",
    )
    p.add_argument(
        "--no-store", action="store_true", help="do not keep failed runs as incomplete executions"
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="with --batch: processes that prepare and send lines side by side (default: "
        "one per core, at most 4; 1 runs in this process)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="with --batch: no progress line on stderr (shown only on a terminal anyway)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "incomplete", parents=[common], help="list, show, retry or discard incomplete executions"
    )
    p.add_argument("action", choices=["list", "show", "retry", "discard"])
    p.add_argument("id", nargs="?", help="an incomplete execution id")
    p.add_argument(
        "--all", action="store_true", help="with retry or discard: every stored run (filtered)"
    )
    p.add_argument("--limit", type=int, help="with list: show at most N (the count is of all)")
    p.add_argument("--module", help="with list or discard --all: only this module's runs")
    p.add_argument(
        "--state",
        choices=["pending", "failed", "rejected"],
        help="with list or discard --all: only runs in this state",
    )
    p.add_argument(
        "--connection", "-c", help="the connection (JSON or file): secrets are never stored"
    )
    p.add_argument("--store", help="the database (default as for run)")
    p.set_defaults(func=cmd_incomplete)

    p = sub.add_parser("sink", help="a local Segment-compatible receiver")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--store", help="append what arrives to this JSONL file")
    p.add_argument("--show", metavar="STORE", help="print what a sink stored, then exit")
    p.set_defaults(func=cmd_sink)

    p = sub.add_parser("schema", help="print or write the manifest JSON Schemas")
    p.add_argument("--out", help="write app.schema.json and module.schema.json here")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("docs", parents=[common], help="generate docs/modules/*.md")
    p.add_argument("--out", default="docs/modules")
    p.add_argument("--check", action="store_true", help="fail when the docs are stale")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("new", help="scaffold an app, or a module with fixtures and a doc page")
    p.add_argument("app", help="the app name, e.g. acme")
    p.add_argument("module", nargs="?", help="a module name, e.g. send_event")
    p.add_argument("--dir", default="manifests", help="the folder of apps (default: manifests)")
    p.add_argument("--docs", default="docs/modules", help="where the module's doc page goes")
    p.add_argument(
        "--kind",
        default="action",
        help="action (default), search, trigger, instant_trigger or universal",
    )
    p.add_argument(
        "--auth",
        default="bearer",
        help="for a new app: bearer (default), basic, header or none",
    )
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("test", parents=[common], help="run the modules' fixture cases")
    p.add_argument("target", nargs="?", help="an app or module id (default: all)")
    p.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("webhook", parents=[common], help="hand a delivery to a trigger")
    p.add_argument("module")
    p.add_argument("--connection", "-c", help="JSON or a JSON file")
    p.add_argument("--parameters", "-p", help="JSON or a JSON file")
    p.add_argument("--body", required=True, help="the raw body: a file, or - for stdin")
    p.add_argument("--header", "-H", action="append", help="'Name: value' (repeatable)")
    p.add_argument(
        "--sign", action="store_true", help="sign the body with the connection's shared secret"
    )
    p.set_defaults(func=cmd_webhook)

    from connector.tools.cli_kinds import add_parsers

    add_parsers(sub, common)  # poll, options, verify

    from connector.service.command import add_parser as add_serve_parser

    add_serve_parser(sub, common)
    _verbose_anywhere(sub)  # after every subcommand is added
    return parser


def _verbose_anywhere(sub: Any) -> None:
    """``-v`` after the command too (``connector run ... -v``), not only before it."""
    for command in sub.choices.values():
        command.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="log retries to stderr",
        )


def _skip_httpx_cli() -> None:
    """httpx 0.28 imports its own command-line client (click, rich, pygments: ~45 ms)
    whenever those are installed, as they are next to the ``serve`` extra. This process
    never runs httpx's CLI, so it is marked absent before httpx is imported; library
    hosts, whose processes are their own, are left alone."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    from connector.core.redaction import RedactingWriter, pin_redactors

    _skip_httpx_cli()
    # Every line this process prints passes the redaction chokepoint, and the secrets
    # of the connections it used are kept until it ends (errors print after the engine
    # closed). See connector.core.redaction.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingWriter(stdout), RedactingWriter(stderr)
    try:
        with pin_redactors():
            return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


#: Whether this process started with the collector off, for the command to turn it on
#: once it has loaded what it runs (see connector._program).
_collector_deferred = False


def _started() -> None:
    """The command has imported and loaded what it runs: what start-up made is frozen
    (it lives as long as the process) and the collector is on again, if the program
    turned it off (:mod:`connector._program`); else nothing changes."""
    global _collector_deferred
    if _collector_deferred:
        _collector_deferred = False
        gc.freeze()
        gc.enable()


def entry(*, collector_off: bool = False) -> None:
    """The ``connector`` command as a program (:mod:`connector._program`): :func:`main`,
    then the process ends without tearing the interpreter down (~10-45 ms of freeing
    modules that a command never uses again). Everything it opened is closed by then,
    and what it printed is flushed here; where flushing fails, the interpreter's own
    exit reports it as usual. ``collector_off``: the program started with the garbage
    collector off, for the command to turn on once started (:func:`_started`)."""
    global _collector_deferred
    _collector_deferred = collector_off and not gc.isenabled()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        sys.exit(code)
    os._exit(code)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is not cmd_run:
        _started()  # any other command: its work starts here (run: once loaded)
    if _sends_batch(args):
        _prepare_transport()  # before the engine is imported: see its docstring
    if args.verbose:
        from connector.core.logs import redacting_filter

        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )
        for handler in logging.getLogger().handlers:
            handler.addFilter(redacting_filter())  # records of any logger, httpx's too
    try:
        code: int = args.func(args)
        return code
    except RunError as exc:
        _print_json({"error": exc.to_dict()}, sys.stderr)
        return EXIT_RUN_ERROR
    except ManifestError as exc:
        _error("InvalidConfigurationError", str(exc), None, source=exc.source, path=exc.path)
        return EXIT_MANIFEST
    except UnknownModuleError as exc:
        _error("InvalidConfigurationError", str(exc), "module")
        return EXIT_USAGE
    except UsageError as exc:
        _error("DataError", exc.message, exc.field)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read the output went away (``| head``, say): the answers not written
        # are lost to it, and it is told once, on stderr, without a traceback.
        _quiet_stdout()
        _error(
            "RuntimeError",
            "the output was closed before every answer was written: the answers after "
            "that point are lost (what was sent is delivered; what failed with a "
            "retryable error is kept: connector incomplete list)",
        )
        return EXIT_RUN_ERROR
    except Exception as exc:
        if args.verbose:
            logging.getLogger("connector").exception("unexpected error")
        # The message of an unexpected exception is not known to be secret-free.
        _error("RuntimeError", f"unexpected {type(exc).__name__}; run with -v for details")
        return EXIT_RUN_ERROR


if __name__ == "__main__":
    sys.exit(main())
