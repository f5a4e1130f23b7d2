"""Incomplete executions over HTTP: list, show, retry (one or all), discard.

The runs the service's engine kept after their retries ran out (write-ahead, in
``incomplete.sqlite`` in the data directory), as ``connector incomplete`` shows them.
Retrying needs the connection again, by id or inline: secrets are never stored with a
run.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends
from starlette.responses import Response

from connector.runs.incomplete import IncompleteStore
from connector.service.errors import ServiceError
from connector.service.models import DeletedOut, ExecutionsOut, RetryAllOut, RetryIn, RunOut
from connector.service.respond import Json
from connector.service.responses import errors
from connector.service.state import ServiceState, require_token, service

__all__ = ["router"]

router = APIRouter(
    prefix="/v1/incomplete", tags=["incomplete executions"], dependencies=[Depends(require_token)]
)
State = Annotated[ServiceState, Depends(service)]


def _store(state: ServiceState) -> IncompleteStore:
    if state.engine.incomplete is None:
        raise ServiceError(404, "DataError", "this service keeps no incomplete executions")
    return state.engine.incomplete


def _get(store: IncompleteStore, execution_id: str) -> Any:
    try:
        return store.get(execution_id)
    except KeyError:
        raise ServiceError(
            404, "DataError", f"no incomplete execution {execution_id!r}", field="id"
        ) from None


@router.get("", response_model=ExecutionsOut, responses=errors(404))
async def list_executions(state: State) -> Response:
    store = _store(state)
    rows = await anyio.to_thread.run_sync(store.executions)
    return Json({"executions": [e.summary() for e in rows]})


@router.get("/{execution_id}", response_model=dict[str, Any], responses=errors(404))
async def get_execution(execution_id: str, state: State) -> Response:
    """One execution: its request (without auth), parameters and public connection."""
    return Json(_get(_store(state), execution_id).to_dict())


@router.post("/{execution_id}/retry", response_model=RunOut, responses=errors(404, 422, 429, 502))
async def retry_execution(execution_id: str, body: RetryIn, state: State) -> Response:
    """Send the stored run again, unchanged; it is deleted once delivered."""
    store = _store(state)
    execution = _get(store, execution_id)
    module = state.registry.get(execution.module)
    values = state.resolve(module, body.connection)
    async with state.run_gate():
        bundles = await anyio.to_thread.run_sync(store.retry, state.engine, execution_id, values)
    return Json({"bundles": bundles})


@router.post("/retry-all", response_model=RetryAllOut, responses=errors(404, 422, 429))
async def retry_all(body: RetryIn, state: State) -> Response:
    """Retry every stored run that may still succeed; one outcome per run."""
    store = _store(state)
    values = body.connection if isinstance(body.connection, dict) else None
    if values is None:
        assert isinstance(body.connection, str)
        stored = state.connections.get_or_none(body.connection)
        if stored is None:
            raise ServiceError(
                404, "DataError", f"no connection {body.connection!r}", field="connection"
            )
        values = state.connections.values(body.connection)
    async with state.run_gate():
        outcomes = await anyio.to_thread.run_sync(store.retry_all, state.engine, values)
    return Json({"outcomes": outcomes})


@router.delete("/{execution_id}", response_model=DeletedOut, responses=errors(404))
async def discard_execution(execution_id: str, state: State) -> Response:
    store = _store(state)
    _get(store, execution_id)
    await anyio.to_thread.run_sync(store.discard, execution_id)
    return Json({"deleted": execution_id})
