"""The ASGI app: routes, token, limits and error mapping, put together.

``create_app(state)`` is the one factory: ``connector serve`` calls it over a data
directory, tests call it with their own state (an engine with a local transport, small
limits). ``GET /openapi.json`` is FastAPI's document, generated from the routes and the
pydantic models in :mod:`connector.service.models`; ``GET /health`` and the hook URLs
are the only routes without the token.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from starlette.responses import Response

from connector._version import __version__
from connector.service import api_connections, api_hooks, api_incomplete, api_modules
from connector.service.api_kinds import capabilities, router_for
from connector.service.errors import install_handlers
from connector.service.limits import LimitsMiddleware
from connector.service.respond import Json
from connector.service.responses import errors
from connector.service.state import ServiceState, require_token

__all__ = ["create_app"]


def create_app(state: ServiceState) -> FastAPI:
    app = FastAPI(
        title="connector",
        version=__version__,
        summary="Make-style connector modules over HTTP, and webhook URLs for instant triggers.",
        description="Every /v1 route needs 'Authorization: Bearer <token>'. Errors are "
        '{"error": {"type", "message", "field", "origin"}} with Make\'s error types; '
        "see docs/serve.md for the status mapping.",
        docs_url=None,
        redoc_url=None,
        default_response_class=Json,
    )
    app.state.service = state
    install_handlers(app)
    app.add_middleware(LimitsMiddleware, limits=state.limits)

    @app.get("/health", tags=["service"], responses=errors())
    async def health() -> dict[str, bool]:
        """Liveness, without the token (for process managers and start-up waits)."""
        return {"ok": True}

    @app.get(
        "/v1",
        tags=["service"],
        dependencies=[Depends(require_token)],
        response_model=dict[str, Any],
        responses=errors(),
    )
    async def info() -> Response:
        """The service's version, limits and capabilities (poll, options, verify when the
        engine has them)."""
        limits = state.limits
        return Json(
            {
                "version": __version__,
                "capabilities": capabilities(state.engine),
                "limits": {
                    "maxBody": limits.max_body,
                    "maxBatchBody": limits.max_batch_body,
                    "maxDelivery": limits.max_delivery,
                    "requestTimeout": limits.request_timeout,
                    "maxWait": limits.max_wait,
                    "maxRuns": limits.max_runs,
                },
            }
        )

    app.include_router(api_modules.router)
    app.include_router(router_for(state.engine))
    app.include_router(api_connections.router)
    app.include_router(api_incomplete.router)
    app.include_router(api_hooks.router)
    app.include_router(api_hooks.public)
    _document_module_ids(app, state)
    return app


def _document_module_ids(app: FastAPI, state: ServiceState) -> None:
    """The document lists the loaded modules as the values of ``module_id`` (the routes
    take any text, and answer 404 naming the known ones)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            ids = state.registry.module_ids()
            for item in document.get("paths", {}).values():
                for operation in item.values():
                    for parameter in operation.get("parameters", []):
                        if parameter.get("name") == "module_id":
                            parameter["schema"]["enum"] = ids
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
