"""Stored connections: created once, referred to by id, secrets sealed at rest.

A connection is checked by the engine when it is created (the same
:class:`~connector.core.connection.Connection` a run builds), then split: the public
fields are stored as JSON, the secret fields (the app's ``secret`` connection fields)
sealed by the :class:`~connector.service.secretbox.SecretBox`. What the API returns is
the public fields and the *names* of the secrets that are set, never their values.

Opened values are cached in memory by id, so a run does not decrypt every time.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import orjson

from connector.core.connection import Connection
from connector.core.registry import Registry
from connector.core.types import iso_seconds
from connector.errors import InvalidConfigurationError
from connector.service.db import Database
from connector.service.secretbox import SecretBox

__all__ = ["ConnectionStore", "StoredConnection", "UnknownConnectionError"]


class UnknownConnectionError(LookupError):
    """No stored connection has this id."""

    def __init__(self, connection_id: str) -> None:
        self.connection_id = connection_id
        super().__init__(f"no connection {connection_id!r}: create it with POST /v1/connections")


@dataclass(frozen=True)
class StoredConnection:
    id: str
    app: str
    label: str | None
    public: dict[str, Any]
    secret_names: list[str]
    created: float

    def describe(self) -> dict[str, Any]:
        """What the API shows: never a secret value."""
        return {
            "id": self.id,
            "app": self.app,
            "label": self.label,
            "fields": self.public,
            "secrets": self.secret_names,
            "created": iso_seconds(self.created),
        }


class ConnectionStore:
    def __init__(self, db: Database, box: SecretBox, registry: Registry) -> None:
        self._db = db
        self._box = box
        self._registry = registry
        self._values: dict[str, dict[str, Any]] = {}
        self._stored: dict[str, StoredConnection] = {}
        self._lock = threading.Lock()

    def create(
        self, app_name: str, values: Mapping[str, Any], label: str | None = None
    ) -> StoredConnection:
        """Check ``values`` as the engine would, then store them; the new connection."""
        app = self._registry.apps.get(app_name)
        if app is None:
            known = ", ".join(sorted(self._registry.apps))
            raise InvalidConfigurationError(
                f"unknown app {app_name!r}, expected one of: {known}", field="app"
            )
        Connection(app, values)  # raises InvalidConfigurationError naming the field
        public = {k: v for k, v in values.items() if k not in app.secret_fields}
        secret = {k: v for k, v in values.items() if k in app.secret_fields}
        stored = StoredConnection(
            id="conn_" + secrets.token_urlsafe(12),
            app=app_name,
            label=label,
            public=orjson.loads(orjson.dumps(public)),
            secret_names=sorted(secret),
            created=time.time(),
        )
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO connections VALUES (?,?,?,?,?,?,?)",
                (
                    stored.id,
                    app_name,
                    label,
                    orjson.dumps(stored.public).decode(),
                    self._box.seal(secret),
                    orjson.dumps(stored.secret_names).decode(),
                    stored.created,
                ),
            )
        with self._lock:
            self._values[stored.id] = dict(values)
            self._stored[stored.id] = stored
        return stored

    def get(self, connection_id: str) -> StoredConnection:
        cached = self._stored.get(connection_id)
        if cached is not None:  # every run asks: no database read each time
            return cached
        rows = self._db.read(
            "SELECT id, app, label, public, secret_names, created FROM connections WHERE id = ?",
            (connection_id,),
        )
        if not rows:
            raise UnknownConnectionError(connection_id)
        stored = _stored(rows[0])
        with self._lock:
            self._stored[connection_id] = stored
        return stored

    def get_or_none(self, connection_id: str) -> StoredConnection | None:
        try:
            return self.get(connection_id)
        except UnknownConnectionError:
            return None

    def all(self) -> list[StoredConnection]:
        rows = self._db.read(
            "SELECT id, app, label, public, secret_names, created FROM connections "
            "ORDER BY created, id"
        )
        return [_stored(row) for row in rows]

    def values(self, connection_id: str) -> dict[str, Any]:
        """The full values, secrets opened: only for the engine, never for a response."""
        cached = self._values.get(connection_id)
        if cached is not None:
            return cached
        rows = self._db.read(
            "SELECT public, sealed FROM connections WHERE id = ?", (connection_id,)
        )
        if not rows:
            raise UnknownConnectionError(connection_id)
        public, sealed = rows[0]
        values = {**orjson.loads(cast(str, public)), **self._box.open(cast(bytes, sealed))}
        with self._lock:
            self._values[connection_id] = values
        return values

    def delete(self, connection_id: str) -> None:
        self.get(connection_id)
        with self._db.transaction() as db:
            db.execute("DELETE FROM connections WHERE id = ?", (connection_id,))
        with self._lock:
            self._values.pop(connection_id, None)
            self._stored.pop(connection_id, None)


def _stored(row: tuple[object, ...]) -> StoredConnection:
    return StoredConnection(
        id=cast(str, row[0]),
        app=cast(str, row[1]),
        label=cast("str | None", row[2]),
        public=orjson.loads(cast(str, row[3])),
        secret_names=orjson.loads(cast(str, row[4])),
        created=cast(float, row[5]),
    )
