"""What every route needs: the registry, the engine, the stores and the limits.

One :class:`ServiceState` per app, built by :meth:`ServiceState.open` from a data
directory (or handed in by tests with their own engine). Routes get it with the
``service`` dependency, and every API route is behind ``require_token``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from connector.core.engine import Engine
from connector.core.registry import LoadedModule, Registry
from connector.errors import InvalidConfigurationError
from connector.runs.incomplete import IncompleteStore
from connector.service.connections import ConnectionStore, UnknownConnectionError
from connector.service.db import Database
from connector.service.errors import ServiceError
from connector.service.hooks import HookStore
from connector.service.limits import Limits, RunGate
from connector.service.pollstate import PollStateStore
from connector.service.secretbox import SecretBox
from connector.service.token import ApiToken

__all__ = ["DATABASE", "INCOMPLETE", "ServiceState", "require_token", "service"]

DATABASE = "service.sqlite"
INCOMPLETE = "incomplete.sqlite"


@dataclass
class ServiceState:
    registry: Registry
    engine: Engine
    db: Database
    connections: ConnectionStore
    hooks: HookStore
    polls: PollStateStore
    token: ApiToken
    limits: Limits = field(default_factory=Limits)
    #: The base of hook URLs as senders reach them; None: the request's own base URL.
    public_url: str | None = None
    gate: RunGate | None = None

    @classmethod
    def open(
        cls,
        data_dir: Path,
        registry: Registry,
        *,
        limits: Limits | None = None,
        public_url: str | None = None,
        key_file: Path | None = None,
        engine: Engine | None = None,
        environ: dict[str, str] | None = None,
    ) -> ServiceState:
        """The state over ``data_dir``: its database, key, token and incomplete store."""
        data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(data_dir / DATABASE)
        box = SecretBox.load(data_dir, key_file, environ)
        if engine is None:
            engine = Engine(registry, incomplete=IncompleteStore(data_dir / INCOMPLETE))
        return cls(
            registry=registry,
            engine=engine,
            db=db,
            connections=ConnectionStore(db, box, registry),
            hooks=HookStore(db),
            polls=PollStateStore(db),
            token=ApiToken.load(data_dir, environ),
            limits=limits or Limits(),
            public_url=public_url.rstrip("/") if public_url else None,
        )

    def run_gate(self) -> RunGate:
        """Made in the event loop that serves (asyncio primitives belong to one loop)."""
        if self.gate is None:
            self.gate = RunGate(self.limits)
        return self.gate

    def resolve(self, module: LoadedModule, ref: str | Mapping[str, Any]) -> dict[str, Any]:
        """The connection values for a run: a stored connection's (of the module's app),
        or the inline ones as given."""
        if not isinstance(ref, str):
            return dict(ref)
        try:
            stored = self.connections.get(ref)
        except UnknownConnectionError as exc:
            raise ServiceError(404, "DataError", str(exc), field="connection") from None
        if stored.app != module.app.name:
            raise InvalidConfigurationError(
                f"connection {ref!r} is for the app {stored.app!r}, but {module.id} belongs "
                f"to {module.app.name!r}",
                field="connection",
            )
        return self.connections.values(ref)

    def close(self) -> None:
        if self.engine.incomplete is not None:
            self.engine.incomplete.close()
        self.engine.close()
        self.db.close()


# Dependencies are async on purpose: FastAPI runs a plain ``def`` dependency in a
# worker thread, two thread hops per request for what is a dictionary lookup.
async def service(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


_bearer = HTTPBearer(auto_error=False, description="The service's API token.")


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Every API route: ``Authorization: Bearer <token>``, compared in constant time."""
    state: ServiceState = request.app.state.service
    if credentials is None or not state.token.check(credentials.credentials):
        raise ServiceError(
            401,
            "InvalidAccessTokenError",
            "this service's API token is missing or wrong: send 'Authorization: Bearer "
            "<token>' (the token printed on the service's first start, or "
            "CONNECTOR_API_TOKEN)",
            field="Authorization",
            headers={"WWW-Authenticate": "Bearer"},
        )
