"""Stored connections: create, list, show, delete. Secrets go in and never come out."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends
from starlette.responses import Response

from connector.service.connections import UnknownConnectionError
from connector.service.errors import ServiceError
from connector.service.models import ConnectionIn, ConnectionOut, ConnectionsOut, DeletedOut
from connector.service.respond import Json
from connector.service.responses import errors
from connector.service.state import ServiceState, require_token, service

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/connections", tags=["connections"], dependencies=[Depends(require_token)]
)
State = Annotated[ServiceState, Depends(service)]


def _not_found(exc: UnknownConnectionError) -> ServiceError:
    return ServiceError(404, "DataError", str(exc), field="connection")


@router.post("", status_code=201, response_model=ConnectionOut, responses=errors(422))
async def create_connection(body: ConnectionIn, state: State) -> Response:
    """Check the values as a run would, store them (secrets sealed), return the id."""
    stored = await anyio.to_thread.run_sync(
        state.connections.create, body.app, body.values, body.label
    )
    return Json(stored.describe(), status_code=201)


@router.get("", response_model=ConnectionsOut, responses=errors())
async def list_connections(state: State) -> Response:
    return Json({"connections": [c.describe() for c in state.connections.all()]})


@router.get("/{connection_id}", response_model=ConnectionOut, responses=errors(404))
async def get_connection(connection_id: str, state: State) -> Response:
    try:
        return Json(state.connections.get(connection_id).describe())
    except UnknownConnectionError as exc:
        raise _not_found(exc) from None


@router.delete("/{connection_id}", response_model=DeletedOut, responses=errors(404, 409))
async def delete_connection(connection_id: str, state: State) -> Response:
    """Delete a connection that no hook uses (delete its hooks first)."""
    try:
        state.connections.get(connection_id)
    except UnknownConnectionError as exc:
        raise _not_found(exc) from None
    using = state.hooks.using(connection_id)
    if using:
        raise ServiceError(
            409,
            "DataError",
            f"connection {connection_id!r} is used by hook(s) {', '.join(using)}: delete "
            "them first",
            field="connection",
        )
    await anyio.to_thread.run_sync(state.connections.delete, connection_id)
    return Json({"deleted": connection_id})
