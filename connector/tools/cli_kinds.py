"""The ``connector`` subcommands of the module kinds: ``poll``, ``options``, ``verify``.

Kept beside :mod:`connector.tools.cli` (which adds them with :func:`add_parsers`), with
the same output contract: JSON on stdout and exit 0; ``{"error": ...}`` on stderr and
exit 1 (a failed run, Make's error type), 2 (bad command-line input) or 3 (a broken
manifest).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["add_parsers", "lock_path", "read_state", "state_lock", "write_state"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``poll``, ``options`` and ``verify`` to the command's subparsers."""
    p = sub.add_parser(
        "poll", parents=[common], help="poll a polling trigger, keeping its state in a file"
    )
    p.add_argument("module")
    p.add_argument("--connection", "-c", help="JSON or a JSON file")
    p.add_argument("--parameters", "-p", help="JSON or a JSON file")
    p.add_argument(
        "--state",
        required=True,
        help="the trigger's state file: created when missing, written (atomically) only "
        "after the bundles are printed; a poll holds STATE.lock throughout, and a second "
        "poll of the same file meanwhile fails at once, sending nothing",
    )
    p.set_defaults(func=cmd_poll)

    p = sub.add_parser("options", parents=[common], help="a field's options from the API")
    p.add_argument("module")
    p.add_argument("field")
    p.add_argument("--connection", "-c", help="JSON or a JSON file")
    p.add_argument("--parameters", "-p", help="what is filled in so far: JSON or a JSON file")
    p.set_defaults(func=cmd_options)

    p = sub.add_parser("verify", parents=[common], help="check that a connection works")
    p.add_argument("app")
    p.add_argument("--connection", "-c", help="JSON or a JSON file")
    p.set_defaults(func=cmd_verify)


def _inputs(args: argparse.Namespace, *names: str) -> list[dict[str, Any] | None]:
    from connector.tools.cli import _object_arg

    return [_object_arg(getattr(args, name), f"--{name}") for name in names]


def cmd_poll(args: argparse.Namespace) -> int:
    from connector.core.engine import Engine
    from connector.tools.cli import _print_json, _registry

    registry = _registry(args, args.module)
    connection, parameters = _inputs(args, "connection", "parameters")
    path = Path(args.state)
    # One poll at a time per state file, from reading the state to writing the new one:
    # two polls reading the same state would hand over the same items twice.
    with state_lock(path):
        state = read_state(path)
        with Engine(registry) as engine:
            result = engine.poll(args.module, connection, parameters, state)
        # Handed over first: a failure to print (a closed pipe) leaves the old state, so
        # the next poll repeats these items instead of losing them.
        _print_json(result.bundles)
        write_state(path, result.state)
    return 0


def lock_path(path: Path) -> Path:
    """The lock file beside a state file: ``STATE.lock``."""
    return path.with_name(path.name + ".lock")


@contextmanager
def state_lock(path: Path) -> Iterator[None]:
    """Hold the state file's lock (an exclusive ``flock`` on ``STATE.lock``) or fail at
    once. Failing rather than waiting: a poll that waited would only start after the
    other, from its state, which the next scheduled poll does anyway, and waiters could
    pile up behind a slow one. The lock file is left in place (removing it would let a
    third poll lock a new file while the second holds the old); the OS releases the lock
    when the process ends, however it ends."""
    from connector.errors import RunError
    from connector.tools.cli import UsageError

    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UsageError(
            f"--state: cannot open the lock file {str(lock)!r}: {exc.strerror}", field="--state"
        ) from None
    try:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = RunError(
                    f"--state: another poll is using {str(path)!r} (it holds "
                    f"{str(lock)!r}); this poll stopped before sending anything: poll "
                    "again once that one has finished",
                    field="--state",
                )
                error.retryable = True
                raise error from None
        yield
    finally:
        os.close(descriptor)


def cmd_options(args: argparse.Namespace) -> int:
    from connector.core.engine import Engine
    from connector.tools.cli import _print_json, _registry

    registry = _registry(args, args.module)
    connection, parameters = _inputs(args, "connection", "parameters")
    with Engine(registry) as engine:
        _print_json(engine.options(args.module, args.field, connection, parameters))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from connector.core.engine import Engine
    from connector.tools.cli import UsageError, _print_json, _registry

    registry = _registry(args)
    if args.app not in registry.apps:
        raise UsageError(
            f"unknown app {args.app!r}, expected one of: {', '.join(sorted(registry.apps))}",
            field="app",
        )
    (connection,) = _inputs(args, "connection")
    with Engine(registry) as engine:
        _print_json(engine.verify(args.app, connection))
    return 0


def read_state(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when the file does not exist yet (the first poll)."""
    from connector.tools.cli import UsageError

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--state: cannot read {str(path)!r}: {exc}", field="--state") from None
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--state: {str(path)!r} is not JSON: {exc.msg}", field="--state"
        ) from None
    except (ValueError, RecursionError) as exc:
        # Valid JSON Python will not read: an integer of over 4,300 digits (its
        # int-from-text limit), or nesting deeper than the recursion limit.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise UsageError(
            f"--state: {str(path)!r} cannot be read: {reason}", field="--state"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"--state: {str(path)!r} must hold a JSON object", field="--state")
    return data


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Write the state atomically: a temporary file in the same folder, flushed to disk,
    then renamed over the old one, so a crash leaves the old state or the new, whole."""
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(state, file, ensure_ascii=False)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if sys.platform != "win32":
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
