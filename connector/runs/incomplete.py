"""Incomplete executions: runs that could not be delivered, kept to be replayed later.

As in Make, a run that still fails after its retries with a *retryable* error (a
network failure, a timeout, 429, 5xx) is not dropped: it is stored, and
``connector incomplete retry`` sends it again later, unchanged: same body, same
``messageId`` and ``timestamp``, so Segment deduplicates a message that did arrive.

Write-ahead, once per HTTP request: the request is stored *before* its first attempt
and deleted once it is answered with success (or with an error that retrying cannot
fix, which is raised to the caller instead). A single run is one row; a batch request
is one row too, holding the batch body once, from which each message (and its
``messageId``) is recovered. A process killed between the two leaves the row in state
``pending``; ``incomplete list`` shows it and ``retry`` delivers it. So a crash can
cause a duplicate send (deduplicated by messageId), never a lost one.

Claims: the writer holds a *lease* on its row while the request is out, and so does
``retry`` on the rows it sends, so two processes never send one row at once (two
``retry --all`` side by side share the rows instead of delivering each twice). A
lease expires by itself (:data:`LEASE_SECONDS`): rows of a process that died are
claimed by the next retry after that.

What is stored: the module, the request as rendered (method, URL path, query, headers
without auth) and its body, the parameters as checked (single runs), the connection's
non-secret fields, the last error and the attempts. Secrets are never stored: auth
headers are left out and every column passes the connection's redactor on its one way
in (``IncompleteStore._write``), so replaying needs the connection (the write key) again.

A replay is checked as a fresh run is: the method and URL path are the ones the module
can send, on the base URL of the connection given now, and the headers pass the same
header checks. The database file is opened only when it is this user's alone (owner,
mode, no symbolic or hard links), as the manifest cache is (:mod:`connector.core.cache`).

SQLite in WAL mode with ``synchronous=NORMAL``: durable against a process crash or
kill; a power cut may lose the last transactions. ``secure_delete=FAST``: a deleted
row's content is zeroed where that costs no extra write, and its freed pages hold it
until the next row reuses them (the write-ahead log keeps page images until it is
checkpointed anyway), in a file that is this user's alone.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from connector.core.redaction import redact_data
from connector.core.request import (
    ALLOWED_METHODS,
    PreparedRequest,
    check_headers,
    join_url,
    normalize_query,
)
from connector.core.types import iso_seconds
from connector.errors import (
    DataError,
    InvalidConfigurationError,
    RunError,
)

if TYPE_CHECKING:
    from connector.core.connection import Connection
    from connector.core.engine import Engine, Prepared
    from connector.core.registry import LoadedModule

__all__ = [
    "LEASE_SECONDS",
    "STATES",
    "IncompleteExecution",
    "IncompleteStore",
    "default_store_path",
]

#: How long a claim on a row holds: longer than a request with all its retries takes.
LEASE_SECONDS = 600.0
#: A row's states: being sent for the first time (or its sender died), failed after its
#: retries (to retry), or refused for good by the remote (kept to inspect).
STATES = ("pending", "failed", "rejected")

_COLUMNS = (
    ("id", "TEXT PRIMARY KEY"),
    ("module", "TEXT NOT NULL"),
    ("app", "TEXT NOT NULL"),
    ("state", "TEXT NOT NULL"),
    ("created", "REAL NOT NULL"),
    ("updated", "REAL NOT NULL"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("message_id", "TEXT"),
    ("error", "TEXT"),
    ("request", "TEXT NOT NULL"),
    ("parameters", "TEXT NOT NULL"),
    ("connection", "TEXT NOT NULL"),
    # Added with batch rows and claims (older stores get them on open).
    ("kind", "TEXT NOT NULL DEFAULT 'run'"),
    ("items", "INTEGER NOT NULL DEFAULT 1"),
    ("body", "BLOB"),
    ("lease_until", "REAL"),
    ("claimed_by", "TEXT"),
)
_NAMES = tuple(name for name, _ in _COLUMNS)
_SELECT = "SELECT " + ", ".join(_NAMES) + " FROM executions"
_INSERT = f"INSERT INTO executions ({', '.join(_NAMES)}) VALUES ({', '.join('?' * len(_NAMES))})"


def default_store_path() -> Path:
    """``$CONNECTOR_HOME/incomplete.sqlite``; ``CONNECTOR_HOME`` defaults to ~/.connector."""
    home = os.environ.get("CONNECTOR_HOME") or str(Path.home() / ".connector")
    return Path(home) / "incomplete.sqlite"


@dataclass(frozen=True)
class IncompleteExecution:
    """One stored request, as listed and shown (never with secrets): a single run
    (``kind`` ``run``) or a batch request of ``items`` messages (``batch``)."""

    id: str
    module: str
    app: str
    state: str
    created: float
    updated: float
    attempts: int
    message_id: str | None
    error: dict[str, Any] | None
    request: dict[str, Any]
    parameters: Any
    connection: dict[str, Any]
    kind: str = "run"
    items: int = 1
    body: bytes | None = None
    lease_until: float | None = None
    claimed_by: str | None = None

    @property
    def claimed(self) -> bool:
        """Whether a live process holds it: its lease has not expired, and its holder
        is not a process of this machine that has ended."""
        if self.lease_until is None or self.lease_until <= time.time():
            return False
        return _holder_alive(self.claimed_by)

    def message_ids(self) -> list[str | None]:
        """The messageId of each message it holds, in order."""
        if self.kind == "run":
            return [self.message_id]
        return [m.get("messageId") if isinstance(m, dict) else None for m in self.messages()]

    def messages(self) -> list[Any]:
        """A batch row's messages, recovered from its body."""
        if self.body is None:
            return []
        data = json.loads(self.body)
        key = self.request.get("itemsKey", "batch")
        items = data.get(key) if isinstance(data, dict) else None
        return items if isinstance(items, list) else []

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "module": self.module,
            "kind": self.kind,
            "state": self.state,
            "messages": self.items,
            "messageId": self.message_id,
            "attempts": self.attempts,
            "error": self.error,
            "created": iso_seconds(self.created),
            "updated": iso_seconds(self.updated),
            "claimedUntil": iso_seconds(self.lease_until)
            if self.claimed and self.lease_until
            else None,
        }

    def to_dict(self) -> dict[str, Any]:
        request = dict(self.request)
        if self.kind == "batch":
            request["body"] = {"messages": self.messages()}
        elif self.body is not None:
            request["body"] = _body_record(self.body)
        return {
            **self.summary(),
            "messageIds": self.message_ids(),
            "request": request,
            "parameters": self.parameters,
            "connection": self.connection,
        }


#: Who claims rows from this process: host, process id, and a token of its own.
_HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_alive(holder: str | None) -> bool:
    """Whether the process that claimed a row may still be running. Only a process of
    this machine can be seen to have ended; any other holder counts as alive until its
    lease expires."""
    if not holder:
        return True
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return True
    if int(pid_text) == os.getpid():
        return True
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _body_record(content: bytes) -> dict[str, str]:
    try:
        return {"text": content.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(content).decode("ascii")}


def _check_private_file(path: Path) -> None:
    """Refuse a store another user could have written or pointed elsewhere: its folder
    and its files (the database and SQLite's ``-wal``/``-shm``) must be this user's,
    writable by no one else, and no symbolic or hard links. Raises PermissionError."""
    folder = path.parent
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        raise PermissionError(f"{folder} is a symbolic link")
    if not _private(info, stat.S_ISDIR):
        raise PermissionError(f"{folder} is not a folder of yours alone")
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        candidate = folder / name
        try:
            info = os.lstat(candidate)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise PermissionError(f"{candidate} is a symbolic link")
        if not _private(info, stat.S_ISREG) or info.st_nlink != 1:
            raise PermissionError(
                f"{candidate} must be a regular file of yours alone (owner, mode, one link)"
            )


def _private(info: os.stat_result, kind: Callable[[int], bool]) -> bool:
    """Of the right kind, owned by this user, and writable by no one else."""
    return bool(
        kind(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def _create_private(path: Path) -> None:
    """Create the database file, mode 0600, refusing to follow a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, flags, 0o600))


class IncompleteStore:
    """A durable store of incomplete executions (thread-safe)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_private_file(self.path)
        _create_private(self.path)
        _check_private_file(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        # Some builds (Debian's) zero every deleted page: a delivered batch's ~500 KB
        # written a second time, and the store's CPU nearly doubled. FAST zeroes what
        # costs no extra write; freed pages are reused by the next request's row.
        self._db.execute("PRAGMA secure_delete=FAST")
        columns = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS[:12])
        self._db.execute(f"CREATE TABLE IF NOT EXISTS executions ({columns})")
        have = {row[1] for row in self._db.execute("PRAGMA table_info(executions)")}
        for name, kind in _COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE executions ADD COLUMN {name} {kind}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> IncompleteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the write-ahead protocol ---------------------------------------------------------

    def begin(self, prepared: Prepared) -> str:
        """Store a single run before its first attempt (claimed by this store); its id."""
        conn, request = prepared.connection, prepared.request
        return self._write(
            prepared.module,
            conn,
            _head_record(request, conn),
            request.content,
            "run",
            1,
            request.message_id,
            prepared.parameters,
        )

    def begin_batch(
        self,
        module: LoadedModule,
        conn: Connection,
        request: PreparedRequest,
        items: int,
        items_key: str,
    ) -> str:
        """Store a batch request of ``items`` messages before it is sent: one row,
        holding the body once (claimed by this store); its id."""
        head = {**_head_record(request, conn), "itemsKey": items_key}
        return self._write(module, conn, head, request.content or b"", "batch", items, None, None)

    def _write(
        self,
        module: LoadedModule,
        conn: Connection,
        head: dict[str, Any],
        body: bytes | None,
        kind: str,
        items: int,
        message_id: str | None,
        parameters: Any,
    ) -> str:
        """Insert a row. Every column passes the connection's redactor here, the one way
        into the store: text string by string (every escaped form, at any depth, so the
        stored JSON stays valid), the body as bytes. A request that held a secret (a
        builder mapped the write key into the data or the URL) is stored redacted and
        marked: a changed request must not be sent as if it were the original."""
        execution_id = str(uuid.uuid4())
        redact = conn.redact
        safe_head = redact.data(head)
        if safe_head != head:
            safe_head["redacted"] = True
        if body is not None and not redact.clean_bytes(body):
            body = redact(body.decode("utf-8", "replace")).encode()
            safe_head["redacted"] = True
        now = time.time()
        row = (
            execution_id,
            module.id,
            module.app.name,
            "pending",
            now,
            now,
            0,
            redact(message_id) if message_id else None,
            None,
            json.dumps(safe_head),
            json.dumps(redact.data(parameters), default=str),
            json.dumps(redact.data(dict(conn.public)), default=str),
            kind,
            items,
            body,
            now + LEASE_SECONDS,
            _HOLDER,
        )
        with self._lock:
            self._db.execute(_INSERT, row)
        return execution_id

    def succeeded(self, execution_id: str) -> None:
        """Delivered (or refused for good): the row is no longer incomplete."""
        with self._lock:
            self._db.execute("DELETE FROM executions WHERE id = ?", (execution_id,))

    def settle_failure(self, execution_id: str, error: RunError) -> None:
        """A first run failed after its retries. A retryable error keeps the run (and
        the error says so, with the id to retry); any other deletes it, as retrying
        cannot fix it and the error is raised to the caller."""
        if not error.retryable:
            self.succeeded(execution_id)
            return
        from connector.runs.batch import mark_stored

        self.failed(execution_id, error)
        mark_stored(error, execution_id)

    def keep_only(self, execution_id: str, body: bytes, items: int, error: RunError) -> None:
        """A batch request whose messages were partly delivered: the row keeps only the
        ``items`` that failed with a retryable ``error`` (``body`` is their batch)."""
        with self._lock:
            self._db.execute(
                "UPDATE executions SET body = ?, items = ? WHERE id = ?",
                (body, items, execution_id),
            )
        self.failed(execution_id, error)

    def failed(self, execution_id: str, error: RunError) -> None:
        """Retries ran out: keep the run, and release its claim. A retryable error leaves
        it ``failed`` (to be retried); any other (say, a replay answered 400) marks it
        ``rejected``: kept for inspection, skipped by ``retry --all``, removed with
        ``discard``."""
        record = json.dumps(redact_data(error.to_dict()))
        state = "failed" if error.retryable else "rejected"
        with self._lock:
            self._db.execute(
                "UPDATE executions SET state = ?, updated = ?, lease_until = NULL, "
                "attempts = attempts + ?, error = ? WHERE id = ?",
                (state, time.time(), error.attempts or 1, record, execution_id),
            )

    # -- claims ---------------------------------------------------------------------------

    def _claim(self, execution_ids: list[str]) -> list[str]:
        """Claim the rows no live process holds; the ids claimed."""
        now = time.time()
        claimed: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for execution_id in execution_ids:
                    row = self._db.execute(
                        "SELECT lease_until, claimed_by FROM executions WHERE id = ?",
                        (execution_id,),
                    ).fetchone()
                    if row is None:
                        continue
                    lease, holder = row
                    if lease is not None and lease > now and _holder_alive(holder):
                        continue
                    self._db.execute(
                        "UPDATE executions SET lease_until = ?, claimed_by = ? WHERE id = ?",
                        (now + LEASE_SECONDS, _HOLDER, execution_id),
                    )
                    claimed.append(execution_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return claimed

    def _release(self, execution_ids: list[str]) -> None:
        with self._lock:
            self._db.executemany(
                "UPDATE executions SET lease_until = NULL WHERE id = ?",
                [(i,) for i in execution_ids],
            )

    # -- reading ------------------------------------------------------------------------

    def _where(self, module: str | None, state: str | None) -> tuple[str, tuple[Any, ...]]:
        clauses, values = [], []
        if module is not None:
            clauses.append("module = ?")
            values.append(module)
        if state is not None:
            clauses.append("state = ?")
            values.append(state)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(values)

    def executions(
        self,
        *,
        limit: int | None = None,
        module: str | None = None,
        state: str | None = None,
        bodies: bool = True,
    ) -> list[IncompleteExecution]:
        """Stored rows, oldest first; ``module`` and ``state`` filter, ``limit`` cuts.
        Without ``bodies`` the request bodies are not read (a listing needs none, and
        a batch row's is ~500 KB)."""
        where, values = self._where(module, state)
        select = _SELECT if bodies else _SELECT.replace(", body,", ", NULL,")
        sql = select + where + " ORDER BY created, id"
        if limit is not None:
            sql += " LIMIT ?"
            values = (*values, limit)
        with self._lock:
            rows = self._db.execute(sql, values).fetchall()
        return [_execution(row) for row in rows]

    def count(self, *, module: str | None = None, state: str | None = None) -> int:
        """How many rows (``module`` and ``state`` filter)."""
        where, values = self._where(module, state)
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM executions" + where, values
            ).fetchone()
        return int(count)

    def __len__(self) -> int:
        return self.count()

    def get(self, execution_id: str) -> IncompleteExecution:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE id = ?", (execution_id,)).fetchone()
        if row is None:
            raise KeyError(f"no incomplete execution {execution_id!r}")
        return _execution(row)

    def discard(self, execution_id: str) -> None:
        self.get(execution_id)
        self.succeeded(execution_id)

    def discard_all(self, *, module: str | None = None, state: str | None = None) -> int:
        """Discard every row no live process holds (``module``, ``state`` filter); how many."""
        found = self.executions(module=module, state=state, bodies=False)
        rows = [e.id for e in found if not e.claimed]
        with self._lock:
            self._db.executemany("DELETE FROM executions WHERE id = ?", [(i,) for i in rows])
        return len(rows)

    # -- replay -------------------------------------------------------------------------

    def retry(
        self, engine: Engine, execution_id: str, connection: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Send one stored row again, unchanged; one outcome (see :func:`_outcome`)."""
        execution = self.get(execution_id)
        _need_connection(connection)
        if not self._claim([execution_id]):
            until = iso_seconds(execution.lease_until or 0)
            raise InvalidConfigurationError(
                f"incomplete execution {execution_id} is being sent by another process "
                f"(its claim holds until {until}); retry it later"
            )
        return [self._replay_claimed(engine, [self.get(execution_id)], connection)[0]]

    def retry_all(
        self, engine: Engine, connection: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Retry every stored row no other process holds, except ``rejected`` ones; one
        outcome per row. Single runs of message endpoints are packed into the app's
        batch endpoint, as a batch run packs them."""
        _need_connection(connection)
        started = time.time()
        outcomes: list[dict[str, Any]] = []
        for group in self._groups(engine, started):
            claimed = set(self._claim([e.id for e in group]))
            rows = [self.get(e.id) for e in group if e.id in claimed]
            if rows:
                outcomes += self._replay_claimed(engine, rows, connection)
        return outcomes

    def _groups(self, engine: Engine, started: float) -> Iterator[list[_Candidate]]:
        """Rows to send together: single runs of a batchable module, packed by app and
        base URL up to the app's batch limits; any other row alone. Rows written or
        touched after ``started`` (by this retry, or another process) are left out.
        Only what the grouping needs is read here: bodies are read once claimed."""
        open_groups: dict[tuple[str, str], tuple[list[_Candidate], int]] = {}
        with self._lock:
            rows = self._db.execute(
                "SELECT id, module, app, kind, request, lease_until, claimed_by, "
                "length(body) FROM executions WHERE state != 'rejected' AND updated < ? "
                "ORDER BY created, id",
                (started,),
            ).fetchall()
        for row in rows:
            execution_id, module, app, kind, request, lease, holder, size = row
            candidate = _Candidate(
                execution_id, module, app, kind, json.loads(request), lease, holder, size or 0
            )
            if lease is not None and lease > time.time() and _holder_alive(holder):
                continue
            spec = _batch_spec(engine, candidate.module)
            if spec is None or candidate.kind != "run" or candidate.request.get("redacted"):
                yield [candidate]
                continue
            key = (candidate.app, str(candidate.request.get("baseUrl")))
            size = candidate.size + 1  # and a comma
            group, total = open_groups.get(key, ([], 0))
            if group and (len(group) >= spec.max_items or total + size > spec.max_bytes - 1024):
                yield group
                group, total = [], 0
            group.append(candidate)
            open_groups[key] = (group, total + size)
        for group, _ in open_groups.values():
            if group:
                yield group

    def _replay_claimed(
        self,
        engine: Engine,
        rows: list[IncompleteExecution],
        connection: Mapping[str, Any] | None,
    ) -> list[dict[str, Any]]:
        """Send claimed rows: one row as it was stored, or several single runs packed
        into one batch; settle each row and give its outcome."""
        try:
            if len(rows) > 1 or rows[0].kind == "batch":
                return self._replay_batch(engine, rows, connection)
            return [self._replay_one(engine, rows[0], connection)]
        except BaseException:
            self._release([row.id for row in rows])
            raise

    def _replay_one(
        self, engine: Engine, execution: IncompleteExecution, connection: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        channel = engine.channel(execution.module, connection)
        module, conn = channel.module, channel.connection
        try:
            request = _rebuild(execution, module, conn)
        except RunError as exc:
            self._release([execution.id])
            return _outcome(execution, None, exc)
        try:
            response, attempts = channel.send(request)
        except RunError as exc:
            self.failed(execution.id, exc)
            return _outcome(execution, None, exc)
        self.succeeded(execution.id)
        return _outcome(execution, (response.status_code, attempts), None)

    def _replay_batch(
        self,
        engine: Engine,
        rows: list[IncompleteExecution],
        connection: Mapping[str, Any] | None,
    ) -> list[dict[str, Any]]:
        """Rows through the app's batch endpoint: a stored batch as it was, or single
        runs packed into one. A batch the remote refuses (400, 413, 422) is split until
        the refused messages are alone, as a batch run does (:func:`deliver`)."""
        from connector.runs.batch import BatchPlan, deliver

        plan = BatchPlan(engine, rows[0].module, connection, store=None)
        outcomes: list[dict[str, Any]] = []
        contents: list[bytes] = []
        mine: dict[str, list[int]] = {}
        sent: list[IncompleteExecution] = []
        for row in rows:
            try:
                items = _row_items(row, engine, plan)
            except RunError as exc:
                self._release([row.id])
                outcomes.append(_outcome(row, None, exc))
                continue
            mine[row.id] = list(range(len(contents), len(contents) + len(items)))
            contents += items
            sent.append(row)
        if not contents:
            return outcomes
        # A stored batch is first sent as its own body: unchanged, byte for byte.
        whole = rows[0].body if len(rows) == 1 and rows[0].kind == "batch" else None

        def send(part: list[bytes], first: bool) -> tuple[Any, int]:
            body = whole if first and whole is not None else None
            return plan.channel.send(plan.request(part, body=body))

        errors: list[RunError | None] = [None] * len(contents)
        answers: list[tuple[int, int] | None] = [None] * len(contents)
        for lo, hi, response, error, attempts in deliver(send, contents):
            for index in range(lo, hi):
                errors[index] = error
                answers[index] = (response.status_code, attempts) if response else None
        for row in sent:
            indices = mine[row.id]
            failed = [i for i in indices if errors[i] is not None]
            answered = next((answers[i] for i in indices if answers[i]), None)
            if not failed:
                self.succeeded(row.id)
                outcomes.append(_outcome(row, answered, None))
                continue
            found = [errors[i] for i in failed]
            worst = next((e for e in found if e and e.retryable), found[0])
            assert worst is not None
            if row.kind == "batch" and len(failed) < len(indices):
                # Partly delivered: the row keeps only the messages still undelivered.
                body = plan.request([contents[i] for i in failed]).content or b""
                self.keep_only(row.id, body, len(failed), worst)
            else:
                self.failed(row.id, worst)
            outcomes.append(_outcome(row, answered, worst, failed_messages=len(failed)))
        return outcomes


def _row_items(row: IncompleteExecution, engine: Engine, plan: Any) -> list[bytes]:
    """The messages a claimed row holds, each as the bytes a batch carries, after the
    checks a fresh run passes (method, path on the base URL of the connection given)."""
    module = engine.registry.get(row.module)
    if row.kind == "run":
        content = _rebuild(row, module, plan.connection).content
        return [content or b"null"]
    _check_replayable(row, plan.connection)
    method, path = row.request.get("method"), row.request.get("path")
    if method != plan.spec.method or join_url(plan.connection.base_url, path, "url") != plan.url:
        raise DataError(
            f"incomplete execution {row.id}: stored request {method!r} {path!r} is not "
            f"the app's batch endpoint; discard it",
            field="url",
        )
    from connector.core.jsondata import dumps

    return [dumps(message) for message in row.messages()]


def _need_connection(connection: Mapping[str, Any] | None) -> None:
    if not connection:
        raise InvalidConfigurationError(
            "retrying needs the connection (its secrets are never stored)",
            field="connection",
        )


def _outcome(
    execution: IncompleteExecution,
    answered: tuple[int, int] | None,
    error: RunError | None,
    failed_messages: int | None = None,
) -> dict[str, Any]:
    """What ``retry`` and ``retry --all`` report for one row: the same shape for both."""
    return {
        "id": execution.id,
        "module": execution.module,
        "kind": execution.kind,
        "messages": execution.items,
        "delivered": error is None,
        "failedMessages": 0 if error is None else failed_messages or execution.items,
        "statusCode": answered[0] if answered else (error.status if error else None),
        "attempts": answered[1] if answered else (error.attempts if error else None),
        "error": error.to_dict() if error is not None else None,
    }


class _Candidate(NamedTuple):
    """What grouping rows for ``retry --all`` reads of a row (never its body)."""

    id: str
    module: str
    app: str
    kind: str
    request: dict[str, Any]
    lease_until: float | None
    claimed_by: str | None
    size: int


def _batch_spec(engine: Engine, module_id: str) -> Any:
    """The app's batch spec when this module's runs can be packed into it, else None."""
    try:
        module = engine.registry.get(module_id)
    except LookupError:
        return None
    spec = module.app.manifest.batch
    if spec is None or not module.manifest.batchable or module.is_trigger:
        return None
    return spec


def _head_record(request: PreparedRequest, connection: Connection) -> dict[str, Any]:
    base = connection.base_url
    path = request.url[len(base) :] if request.url.startswith(base) else request.url
    return {
        "baseUrl": base,
        "method": request.method,
        "path": path,
        "query": request.query,
        "headers": connection.without_auth(request.headers),
    }


def _stored_body(execution: IncompleteExecution) -> bytes | None:
    if execution.body is not None:
        return execution.body
    body = execution.request.get("body")  # rows written before bodies had a column
    if not isinstance(body, dict):
        return None
    return body["text"].encode("utf-8") if "text" in body else base64.b64decode(body["base64"])


def _check_replayable(execution: IncompleteExecution, conn: Connection) -> None:
    if execution.request.get("redacted"):
        raise DataError(
            f"incomplete execution {execution.id} had a secret in its data, which was "
            "not stored in clear text; it cannot be replayed unchanged: discard it "
            "and run it again",
        )
    # Only the connection given now is used: a stored host never receives a key
    # that was not sent to it in the first place.
    stored_base = execution.request.get("baseUrl")
    if stored_base is not None and stored_base != conn.base_url:
        raise InvalidConfigurationError(
            f"incomplete execution {execution.id} was for {stored_base}, but the "
            f"connection given points at {conn.base_url}; give the same connection "
            "(host/region) or discard it",
            field="host",
        )


def _rebuild(
    execution: IncompleteExecution, module: LoadedModule, conn: Connection
) -> PreparedRequest:
    """The stored single run as a request, checked as a fresh run's is: the stored row
    is data from disk, not trusted to choose the method, the host or the headers."""
    _check_replayable(execution, conn)
    record = execution.request
    method = record.get("method")
    declared = module.manifest.request.method if module.manifest.request else None
    fixed = isinstance(declared, str) and "{{" not in declared
    if (
        not isinstance(method, str)
        or method not in ALLOWED_METHODS
        or (fixed and method != str(declared).upper())
    ):
        raise DataError(
            f"incomplete execution {execution.id}: stored method {method!r} is not one "
            f"{module.id} sends; discard it",
            field="method",
        )
    declared_url = module.manifest.request.url if module.manifest.request else None
    path = record.get("path")
    if (
        isinstance(declared_url, str)
        and "{{" not in declared_url
        and not declared_url.startswith(("http://", "https://"))
        and path != declared_url
    ):
        raise DataError(
            f"incomplete execution {execution.id}: stored path {path!r} is not the one "
            f"{module.id} sends to; discard it",
            field="url",
        )
    url = join_url(conn.base_url, path, "url")
    stored_headers = record.get("headers") or {}
    if not isinstance(stored_headers, dict):
        raise DataError(f"incomplete execution {execution.id}: stored headers are not an object")
    headers = check_headers(stored_headers, conn.auth_headers, "headers")
    query = normalize_query(record.get("query") or {}, "query")
    return PreparedRequest(
        method=method,
        url=url,
        headers={**headers, **conn.auth_headers},
        query=query,
        content=_stored_body(execution),
        json_body=None,
        module_id=execution.module,
        message_id=execution.message_id,
        timeout=conn.timeout,
    )


def _execution(row: tuple[Any, ...]) -> IncompleteExecution:
    error = json.loads(row[8]) if row[8] else None
    return IncompleteExecution(
        id=row[0],
        module=row[1],
        app=row[2],
        state=row[3],
        created=row[4],
        updated=row[5],
        attempts=row[6],
        message_id=row[7],
        error=error,
        request=json.loads(row[9]),
        parameters=json.loads(row[10]),
        connection=json.loads(row[11]),
        kind=row[12],
        items=row[13],
        body=row[14],
        lease_until=row[15],
        claimed_by=row[16],
    )
