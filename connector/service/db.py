"""The service's one SQLite database: connections, hooks, their bundles, poll state.

WAL with ``synchronous=FULL``: a transaction is on disk when its commit returns, so a
delivery answered 200 survives a kill of the process and a power cut alike (a
delivery's commit is its only fsync). One connection shared under a lock: the
service's writes are small, and SQLite serialises writers anyway.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Database"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    label TEXT,
    public TEXT NOT NULL,
    sealed BLOB NOT NULL,
    secret_names TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS hooks (
    id TEXT PRIMARY KEY,
    module TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    parameters TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS bundles (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    bundle TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bundles_by_hook ON bundles (hook_id, seq);
CREATE TABLE IF NOT EXISTS poll_state (
    key TEXT PRIMARY KEY,
    module TEXT NOT NULL,
    state TEXT NOT NULL,
    updated REAL NOT NULL
);
"""


class Database:
    """A thread-safe SQLite connection; ``transaction()`` for writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        self.conn.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self.lock:
            return self.conn.execute(sql, args).fetchall()

    def close(self) -> None:
        with self.lock:
            self.conn.close()
