"""Modules over HTTP: list, describe, run, dry-run, and a streamed NDJSON batch."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query
from starlette.responses import Response

from connector.errors import DataError, InvalidConfigurationError
from connector.service.batchstream import BatchStream
from connector.service.models import DryRunOut, ModulesOut, RunIn, RunOut
from connector.service.respond import Json
from connector.service.responses import errors
from connector.service.state import ServiceState, require_token, service

__all__ = ["router"]

router = APIRouter(prefix="/v1/modules", tags=["modules"], dependencies=[Depends(require_token)])

State = Annotated[ServiceState, Depends(service)]
ModuleId = Annotated[str, "module id"]


@router.get("", response_model=ModulesOut, responses=errors())
async def list_modules(state: State) -> Response:
    """Every loaded module: id, label, kind, app, description."""
    return Json({"modules": state.registry.list()})


@router.get("/{module_id}", response_model=dict[str, Any], responses=errors(404))
async def describe_module(module_id: str, state: State) -> Response:
    """A module's fields as JSON Schema plus labels and help, its connection and output."""
    return Json(state.registry.describe(module_id))


@router.post("/{module_id}/run", response_model=RunOut, responses=errors(404, 422, 429, 502))
async def run_module(module_id: str, body: RunIn, state: State) -> Response:
    """Run a module; its output bundles. A run that fails after its retries with a
    retryable error is kept as an incomplete execution (``incompleteId``)."""
    module = state.registry.get(module_id)
    values = state.resolve(module, body.connection)
    async with state.run_gate():
        bundles = await state.engine.arun(module_id, values, body.parameters, body.context)
    return Json({"bundles": bundles})


@router.post("/{module_id}/dry-run", response_model=DryRunOut, responses=errors(404, 422))
async def dry_run_module(module_id: str, body: RunIn, state: State) -> Response:
    """What a run would send, auth redacted. Nothing is sent."""
    module = state.registry.get(module_id)
    values = state.resolve(module, body.connection)
    request = state.engine.dry_run(module_id, values, body.parameters, body.context)
    return Json({"request": request})


_NDJSON = "application/x-ndjson"


@router.post(
    "/{module_id}/batch",
    responses={
        200: {
            "description": 'One JSON line per input line, in order: {"bundles": [...]} or '
            '{"error": {...}}.',
            "content": {_NDJSON: {"schema": {"type": "string"}}},
        },
        **errors(404, 422, 429),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One parameters object per line (NDJSON); blank lines are skipped.",
            "content": {_NDJSON: {"schema": {"type": "string"}}},
        }
    },
)
async def batch_module(
    module_id: str,
    state: State,
    connection: Annotated[
        str | None, Query(max_length=200, description="A stored connection's id.")
    ] = None,
    connection_json: Annotated[
        str | None,
        Header(
            alias="Connector-Connection",
            description="The connection's values as inline JSON, instead of ?connection=.",
        ),
    ] = None,
    context_json: Annotated[
        str | None,
        Header(alias="Connector-Context", description="Earlier bundles by name, as JSON."),
    ] = None,
) -> Response:
    """Many parameter sets through the app's batch endpoint (``run_batch``), streamed:
    NDJSON in, NDJSON out, one line out per line in, in order. Read the response while
    sending: output flows as input is read."""
    module = state.registry.get(module_id)
    if module.app.manifest.batch is None or not module.manifest.batchable or module.is_trigger:
        raise InvalidConfigurationError(
            f"module {module_id} cannot run in a batch: it is not batchable, or its app "
            "declares no batch endpoint",
            field="module",
        )
    if (connection is None) == (connection_json is None):
        raise DataError(
            "give the connection either as ?connection=ID or as the Connector-Connection "
            "header (inline JSON), not both or neither",
            field="connection",
        )
    ref: str | dict[str, Any] = (
        connection
        if connection is not None
        else _json_object(connection_json, "Connector-Connection")
    )
    values = state.resolve(module, ref)
    context = _json_object(context_json, "Connector-Context") if context_json else None
    state.engine.connection(module, values)  # a bad connection: 422 before streaming
    return BatchStream(state, module_id, values, context)


def _json_object(text: str | None, name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "")
    except orjson.JSONDecodeError:
        raise DataError(f"the {name} header is not valid JSON", field=name) from None
    if not isinstance(value, dict):
        raise DataError(f"the {name} header must be a JSON object", field=name)
    return value
