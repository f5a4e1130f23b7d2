"""Where a polling trigger's state lives between polls: one row per trigger.

A polling trigger (``connector poll``) returns only items newer than its saved state,
and the state is saved only after the bundles are handed over. Over HTTP the service
keeps that state, per *trigger*: the module, the stored connection and the parameters
(their canonical JSON), or a key the host names. A host that polls the same trigger
again gets what is new since its last poll; ``reset`` forgets the state.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any, cast

import orjson

from connector.service.db import Database

__all__ = ["PollStateStore", "trigger_key"]


def trigger_key(
    module: str, connection_id: str, parameters: Mapping[str, Any], name: str | None = None
) -> str:
    """The state's key: the host's name for the trigger, or what identifies it."""
    if name:
        return f"{module}|{connection_id}|name:{name}"
    canonical = orjson.dumps(dict(parameters), option=orjson.OPT_SORT_KEYS)
    return f"{module}|{connection_id}|{hashlib.sha256(canonical).hexdigest()}"


class PollStateStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str) -> Any:
        rows = self._db.read("SELECT state FROM poll_state WHERE key = ?", (key,))
        return orjson.loads(cast(str, rows[0][0])) if rows else None

    def put(self, key: str, module: str, state: Any) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO poll_state VALUES (?,?,?,?) ON CONFLICT(key) DO UPDATE SET "
                "state = excluded.state, updated = excluded.updated",
                (key, module, orjson.dumps(state).decode(), time.time()),
            )

    def reset(self, key: str) -> bool:
        with self._db.transaction() as db:
            return db.execute("DELETE FROM poll_state WHERE key = ?", (key,)).rowcount > 0
