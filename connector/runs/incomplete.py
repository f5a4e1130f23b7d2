"""Incomplete executions: runs that could not be delivered, kept to be replayed later.

As in Make, a run that still fails after its retries with a *retryable* error (a
network failure, a timeout, 429, 5xx) is not dropped: it is stored, and
``connector incomplete retry`` sends it again later, unchanged: same body, same
``messageId`` and ``timestamp``, so Segment deduplicates a message that did arrive.

Write-ahead: the request is stored *before* the first attempt and deleted once it is
answered with success (or with an error that retrying cannot fix, which is raised to
the caller instead). A process killed between the two leaves the row in state
``pending``; ``incomplete list`` shows it and ``retry`` delivers it. So a crash can
cause a duplicate send (deduplicated by messageId), never a lost one.

What is stored: the module, the request as rendered (method, URL, query, headers
without auth, body), the parameters as checked, the connection's non-secret fields,
the last error and the attempts. Secrets are never stored: auth headers are left out
and every stored text passes through the connection's redactor, so replaying needs
the connection (the write key) again.

SQLite in WAL mode with ``synchronous=NORMAL``: durable against a process crash or
kill; a power cut may lose the last transactions.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connector.core.redaction import redact_data
from connector.core.request import PreparedRequest, join_url
from connector.errors import (
    DataError,
    InvalidConfigurationError,
    RunError,
)

if TYPE_CHECKING:
    from connector.core.connection import Connection
    from connector.core.engine import Engine, Prepared

__all__ = ["IncompleteExecution", "IncompleteStore", "default_store_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    module TEXT NOT NULL,
    app TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    message_id TEXT,
    error TEXT,
    request TEXT NOT NULL,
    parameters TEXT NOT NULL,
    connection TEXT NOT NULL
)
"""


def default_store_path() -> Path:
    """``$CONNECTOR_HOME/incomplete.sqlite``; ``CONNECTOR_HOME`` defaults to ~/.connector."""
    import os

    home = os.environ.get("CONNECTOR_HOME") or str(Path.home() / ".connector")
    return Path(home) / "incomplete.sqlite"


@dataclass(frozen=True)
class IncompleteExecution:
    """One stored run, as listed and shown (never with secrets)."""

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
    parameters: dict[str, Any]
    connection: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "module": self.module,
            "state": self.state,
            "messageId": self.message_id,
            "attempts": self.attempts,
            "error": self.error,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "request": self.request,
            "parameters": self.parameters,
            "connection": self.connection,
        }


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class IncompleteStore:
    """A durable store of incomplete executions (thread-safe)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> IncompleteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the write-ahead protocol ---------------------------------------------------------

    def begin(self, prepared: Prepared) -> str:
        """Store a run before its first attempt; returns its id."""
        with self._lock:
            return self._insert(prepared)

    def _insert(self, prepared: Prepared) -> str:
        execution_id = str(uuid.uuid4())
        redact = prepared.connection.redact
        request = _request_record(prepared.request, prepared.connection)
        # Redacted string by string (every escaped form, at any depth), so the stored
        # JSON stays valid however the key was escaped inside the body text.
        safe = redact.data(request)
        if safe != request:
            # The request itself holds a secret (a builder mapped the write key into the
            # data or the URL). It is never stored in clear, and a changed request must
            # not be sent as if it were the original: kept, marked, never replayed.
            request = safe
            request["redacted"] = True
        text = json.dumps(request)
        now = time.time()
        row = (
            execution_id,
            prepared.module.id,
            prepared.module.app.name,
            "pending",
            now,
            now,
            0,
            redact(prepared.request.message_id) if prepared.request.message_id else None,
            None,
            text,
            json.dumps(redact.data(prepared.parameters), default=str),
            json.dumps(redact.data(dict(prepared.connection.public)), default=str),
        )
        self._db.execute("INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
        return execution_id

    def begin_many(self, prepared: list[Prepared]) -> list[str]:
        """:meth:`begin` for a whole batch, in one transaction."""
        ids = []
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for item in prepared:
                    ids.append(self._insert(item))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return ids

    def succeeded_many(self, execution_ids: list[str]) -> None:
        with self._lock:
            self._db.executemany(
                "DELETE FROM executions WHERE id = ?", [(i,) for i in execution_ids]
            )

    def succeeded(self, execution_id: str) -> None:
        """Delivered (or refused for good): the run is no longer incomplete."""
        with self._lock:
            self._db.execute("DELETE FROM executions WHERE id = ?", (execution_id,))

    def settle_failure(self, execution_id: str, error: RunError) -> None:
        """A first run failed after its retries. A retryable error keeps the run (and
        the error says so, with the id to retry); any other deletes it, as retrying
        cannot fix it and the error is raised to the caller."""
        if not error.retryable:
            self.succeeded(execution_id)
            return
        self.failed(execution_id, error)
        error.incomplete_id = execution_id
        error.message += f" (stored as incomplete execution {execution_id})"
        error.args = (error.message,)

    def failed(self, execution_id: str, error: RunError) -> None:
        """Retries ran out: keep the run. A retryable error leaves it ``failed`` (to be
        retried); any other (say, a replay answered 400) marks it ``rejected``: kept for
        inspection, skipped by ``retry --all``, removed with ``discard``."""
        record = json.dumps(redact_data(error.to_dict()))
        state = "failed" if error.retryable else "rejected"
        with self._lock:
            self._db.execute(
                "UPDATE executions SET state = ?, updated = ?, "
                "attempts = attempts + ?, error = ? WHERE id = ?",
                (state, time.time(), error.attempts or 1, record, execution_id),
            )

    # -- reading ------------------------------------------------------------------------

    def executions(self) -> list[IncompleteExecution]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM executions ORDER BY created, id").fetchall()
        return [_execution(row) for row in rows]

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM executions").fetchone()
        return int(count)

    def get(self, execution_id: str) -> IncompleteExecution:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM executions WHERE id = ?", (execution_id,)
            ).fetchone()
        if row is None:
            raise KeyError(f"no incomplete execution {execution_id!r}")
        return _execution(row)

    def discard(self, execution_id: str) -> None:
        self.get(execution_id)
        self.succeeded(execution_id)

    # -- replay -------------------------------------------------------------------------

    def retry(
        self, engine: Engine, execution_id: str, connection: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Send a stored run again, unchanged; deletes it on success, else records the
        new error and raises it."""
        return self._replay(engine, self.get(execution_id), connection)

    def _replay(
        self, engine: Engine, execution: IncompleteExecution, connection: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        execution_id = execution.id
        module = engine.registry.get(execution.module)
        if not connection:
            raise InvalidConfigurationError(
                "retrying needs the connection (its secrets are never stored)",
                field="connection",
            )
        if execution.request.get("redacted"):
            raise DataError(
                f"incomplete execution {execution_id} had a secret in its data, which was "
                "not stored in clear text; it cannot be replayed unchanged: discard it "
                "and run it again",
            )
        # Only the connection given now is used: a stored host never receives a key
        # that was not sent to it in the first place.
        conn = engine.connection(module, connection)
        stored_base = execution.request.get("baseUrl")
        if stored_base is not None and stored_base != conn.base_url:
            raise InvalidConfigurationError(
                f"incomplete execution {execution_id} was for {stored_base}, but the "
                f"connection given points at {conn.base_url}; give the same connection "
                "(host/region) or discard it",
                field="host",
            )
        request = _rebuild(execution, conn)
        try:
            response, attempts = engine.send(module, request, conn)
        except RunError as exc:
            self.failed(execution_id, exc)
            raise
        self.succeeded(execution_id)
        view = engine.response_view(response)
        bundle = {
            "id": execution.id,
            "messageId": execution.message_id,
            "statusCode": view["status"],
            "body": view["body"],
            "attempts": attempts,
        }
        result: dict[str, Any] = conn.redact.data(bundle)
        return [result]

    def retry_all(
        self, engine: Engine, connection: Mapping[str, Any] | None
    ) -> list[dict[str, Any]]:
        """Retry every stored run; one outcome per run (delivered or its error)."""
        outcomes: list[dict[str, Any]] = []
        for execution in self.executions():
            if execution.state == "rejected":
                continue  # refused for good by the remote: retrying cannot help
            try:
                self._replay(engine, execution, connection)  # the row just read
            except RunError as exc:
                outcomes.append({"id": execution.id, "delivered": False, "error": exc.to_dict()})
            else:
                outcomes.append(
                    {"id": execution.id, "delivered": True, "messageId": execution.message_id}
                )
        return outcomes


def _request_record(request: PreparedRequest, connection: Connection) -> dict[str, Any]:
    base = connection.base_url
    path = request.url[len(base) :] if request.url.startswith(base) else request.url
    content = request.content
    body: dict[str, Any] | None = None
    if content is not None:
        try:
            body = {"text": content.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"base64": base64.b64encode(content).decode("ascii")}
    return {
        "baseUrl": base,
        "method": request.method,
        "path": path,
        "query": request.query,
        "headers": connection.without_auth(request.headers),
        "body": body,
    }


def _rebuild(execution: IncompleteExecution, conn: Connection) -> PreparedRequest:
    record = execution.request
    body = record.get("body")
    content: bytes | None = None
    if body is not None:
        content = (
            body["text"].encode("utf-8") if "text" in body else base64.b64decode(body["base64"])
        )
    headers = {**record.get("headers", {}), **conn.auth_headers}
    return PreparedRequest(
        method=record["method"],
        url=join_url(conn.base_url, record["path"], None),
        headers=headers,
        query=record.get("query") or {},
        content=content,
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
    )
