"""Polling triggers, dynamic options and connection checks: the seam for Make's other
module kinds (issue 12).

The routes are designed and documented here; each is mounted only when the engine has
the capability (``Engine.poll``, ``Engine.options``, ``Engine.verify``), so the
OpenAPI document never lists a route that cannot work. ``GET /v1`` tells hosts which
are on. What each route does:

* ``POST /v1/modules/{id}/poll`` ``{connection, parameters, trigger?, reset?}``: one
  poll of a polling trigger. The service keeps the state per trigger
  (:mod:`connector.service.pollstate`), hands it to the engine, and saves the new state
  only after the bundles are in the response it is about to send.
* ``POST /v1/modules/{id}/options/{field}`` ``{connection, parameters}``: a field's
  dynamic options, ``{"options": [{"label", "value"}]}``.
* ``POST /v1/apps/{app}/verify`` ``{connection}``: the app's verify request,
  ``{"ok": true}`` or the Make error.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends
from starlette.responses import Response

from connector.core.engine import Engine
from connector.errors import InvalidConfigurationError
from connector.service.models import OptionsIn, OptionsOut, PollIn, PollOut, VerifyIn, VerifyOut
from connector.service.pollstate import trigger_key
from connector.service.respond import Json
from connector.service.responses import errors
from connector.service.state import ServiceState, require_token, service

__all__ = ["capabilities", "router_for"]

State = Annotated[ServiceState, Depends(service)]


def capabilities(engine: Engine) -> list[str]:
    """Which of poll, options and verify this engine can do."""
    return [name for name in ("poll", "options", "verify") if callable(getattr(engine, name, None))]


def router_for(engine: Engine) -> APIRouter:
    """The routes for the capabilities ``engine`` has (none on an engine without them)."""
    router = APIRouter(tags=["module kinds"], dependencies=[Depends(require_token)])
    have = set(capabilities(engine))
    routes = (
        ("poll", "/v1/modules/{module_id}/poll", poll, PollOut),
        ("options", "/v1/modules/{module_id}/options/{field}", options, OptionsOut),
        ("verify", "/v1/apps/{app}/verify", verify, VerifyOut),
    )
    for name, path, endpoint, model in routes:
        if name in have:
            router.add_api_route(
                path,
                endpoint,
                methods=["POST"],
                response_model=model,
                responses=errors(404, 422, 429, 502),
            )
    return router


async def poll(module_id: str, body: PollIn, state: State) -> Response:
    """One poll of a polling trigger, its state kept by the service per trigger."""
    module = state.registry.get(module_id)
    values = state.resolve(module, body.connection)
    key = trigger_key(module_id, body.connection, body.parameters, body.trigger)
    if body.reset:
        await anyio.to_thread.run_sync(state.polls.reset, key)
    saved = await anyio.to_thread.run_sync(state.polls.get, key)
    engine: Any = state.engine
    async with state.run_gate():
        bundles, new_state = await anyio.to_thread.run_sync(
            engine.poll, module_id, values, body.parameters, saved
        )
    response = Json({"bundles": bundles})  # serialised before the state is saved
    await anyio.to_thread.run_sync(state.polls.put, key, module_id, new_state)
    return response


async def options(module_id: str, field: str, body: OptionsIn, state: State) -> Response:
    module = state.registry.get(module_id)
    values = state.resolve(module, body.connection)
    engine: Any = state.engine
    async with state.run_gate():
        found = await anyio.to_thread.run_sync(
            engine.options, module_id, field, values, body.parameters
        )
    return Json({"options": found})


async def verify(app: str, body: VerifyIn, state: State) -> Response:
    loaded = state.registry.apps.get(app)
    if loaded is None:
        known = ", ".join(sorted(state.registry.apps))
        raise InvalidConfigurationError(
            f"unknown app {app!r}, expected one of: {known}", field="app"
        )
    if isinstance(body.connection, str):
        stored = state.connections.get(body.connection)
        if stored.app != app:
            raise InvalidConfigurationError(
                f"connection {body.connection!r} is for the app {stored.app!r}", field="connection"
            )
        values = state.connections.values(body.connection)
    else:
        values = dict(body.connection)
    engine: Any = state.engine
    async with state.run_gate():
        result = await anyio.to_thread.run_sync(engine.verify, app, values)
    return Json({"ok": True, **(result if isinstance(result, dict) else {})})
