"""Hooks: a public URL per instant trigger and connection, and the outbox of its bundles.

The lifecycle (docs/serve.md has it with curl):

1. a host creates a hook for a trigger module, a stored connection (which holds the
   shared secret) and the trigger's parameters; it gets the hook's public URL;
2. the sender posts deliveries to that URL. Each is checked as the trigger checks it
   (:func:`connector.runs.trigger.receive`: size, signature, JSON, required keys), its
   bundles written in one committed transaction, and only then answered 200. A refused
   delivery stores nothing;
3. the host reads bundles with a long poll, oldest first, and acknowledges them by id.
   A bundle is returned by every read until it is acknowledged (at-least-once); an
   acknowledged one is deleted. A restart or a kill loses nothing that was answered 200.

The hook id is the URL's only secret-like part, and it is not a credential: the URL
accepts only deliveries signed with the connection's shared secret.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson

from connector.service.db import Database

__all__ = ["Hook", "HookStore", "StoredBundle", "UnknownHookError"]


class UnknownHookError(LookupError):
    def __init__(self, hook_id: str) -> None:
        self.hook_id = hook_id
        super().__init__(f"no hook {hook_id!r}: create one with POST /v1/hooks")


@dataclass(frozen=True)
class Hook:
    id: str
    module: str
    connection_id: str
    parameters: dict[str, Any]
    created: float


@dataclass(frozen=True)
class StoredBundle:
    id: int
    delivery_id: str
    bundle: Any
    received: float


class HookStore:
    """Hooks and their pending bundles, in the service database."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._signals: dict[str, asyncio.Event] = {}

    # -- hooks ------------------------------------------------------------------------

    def create(self, module: str, connection_id: str, parameters: Mapping[str, Any]) -> Hook:
        hook = Hook(
            id="hook_" + secrets.token_urlsafe(24),
            module=module,
            connection_id=connection_id,
            parameters=orjson.loads(orjson.dumps(dict(parameters))),
            created=time.time(),
        )
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO hooks VALUES (?,?,?,?,?)",
                (
                    hook.id,
                    module,
                    connection_id,
                    orjson.dumps(hook.parameters).decode(),
                    hook.created,
                ),
            )
        return hook

    def get(self, hook_id: str) -> Hook:
        rows = self._db.read("SELECT * FROM hooks WHERE id = ?", (hook_id,))
        if not rows:
            raise UnknownHookError(hook_id)
        return _hook(rows[0])

    def all(self) -> list[Hook]:
        return [_hook(r) for r in self._db.read("SELECT * FROM hooks ORDER BY created, id")]

    def using(self, connection_id: str) -> list[str]:
        rows = self._db.read("SELECT id FROM hooks WHERE connection_id = ?", (connection_id,))
        return [cast(str, r[0]) for r in rows]

    def delete(self, hook_id: str) -> None:
        """Remove the hook and its pending bundles (the host said it wants no more)."""
        self.get(hook_id)
        with self._db.transaction() as db:
            db.execute("DELETE FROM bundles WHERE hook_id = ?", (hook_id,))
            db.execute("DELETE FROM hooks WHERE id = ?", (hook_id,))
        self.notify(hook_id)

    # -- the outbox ---------------------------------------------------------------------

    def store(self, hook_id: str, bundles: Iterable[Any]) -> tuple[str, list[int]]:
        """Write one delivery's bundles in one committed transaction (fsynced)."""
        delivery_id = "dlv_" + secrets.token_urlsafe(12)
        now = time.time()
        ids: list[int] = []
        with self._db.transaction() as db:
            for bundle in bundles:
                cursor = db.execute(
                    "INSERT INTO bundles (hook_id, delivery_id, bundle, received) VALUES (?,?,?,?)",
                    (hook_id, delivery_id, orjson.dumps(bundle).decode(), now),
                )
                ids.append(cast(int, cursor.lastrowid))
        return delivery_id, ids

    def pending(self, hook_id: str, limit: int) -> list[StoredBundle]:
        rows = self._db.read(
            "SELECT seq, delivery_id, bundle, received FROM bundles WHERE hook_id = ? "
            "ORDER BY seq LIMIT ?",
            (hook_id, limit),
        )
        return [
            StoredBundle(
                id=cast(int, r[0]),
                delivery_id=cast(str, r[1]),
                bundle=orjson.loads(cast(str, r[2])),
                received=cast(float, r[3]),
            )
            for r in rows
        ]

    def ack(self, hook_id: str, ids: Iterable[int]) -> int:
        """Delete these bundles of this hook; the number deleted (unknown ids: none)."""
        wanted = [(hook_id, int(i)) for i in ids]
        with self._db.transaction() as db:
            before = db.total_changes
            db.executemany("DELETE FROM bundles WHERE hook_id = ? AND seq = ?", wanted)
            return db.total_changes - before

    # -- long poll ------------------------------------------------------------------------

    def notify(self, hook_id: str) -> None:
        """Wake the readers of this hook (call from the event loop)."""
        signal = self._signals.get(hook_id)
        if signal is not None:
            signal.set()

    async def wait_pending(self, hook_id: str, limit: int, wait: float) -> list[StoredBundle]:
        """Pending bundles; when there are none, wait up to ``wait`` seconds for some."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            signal = self._signals.setdefault(hook_id, asyncio.Event())
            signal.clear()
            found = await asyncio.to_thread(self.pending, hook_id, limit)
            remaining = deadline - asyncio.get_running_loop().time()
            if found or remaining <= 0:
                return found
            try:
                await asyncio.wait_for(signal.wait(), remaining)
            except TimeoutError:
                return await asyncio.to_thread(self.pending, hook_id, limit)


def _hook(row: tuple[object, ...]) -> Hook:
    return Hook(
        id=cast(str, row[0]),
        module=cast(str, row[1]),
        connection_id=cast(str, row[2]),
        parameters=orjson.loads(cast(str, row[3])),
        created=cast(float, row[4]),
    )
