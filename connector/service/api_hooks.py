"""Instant triggers over HTTP: hooks with public URLs, deliveries, long poll and ack.

Two routers: ``router`` (the API, behind the token) manages hooks and reads their
bundles; ``public`` is the URL senders post to, open to anyone but accepting only
deliveries signed with the hook's connection's shared secret. The lifecycle is in
:mod:`connector.service.hooks`.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from connector.core.prepare import check_parameters
from connector.core.types import iso_seconds
from connector.errors import (
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    RunError,
)
from connector.service.errors import ServiceError, error_body
from connector.service.hooks import Hook, UnknownHookError
from connector.service.models import (
    AckIn,
    AckOut,
    BundlesOut,
    DeletedOut,
    DeliveryOut,
    ErrorOut,
    HookIn,
    HookOut,
    HooksOut,
)
from connector.service.respond import Json
from connector.service.responses import errors
from connector.service.state import ServiceState, require_token, service

__all__ = ["public", "router"]

router = APIRouter(prefix="/v1/hooks", tags=["hooks"], dependencies=[Depends(require_token)])
public = APIRouter(tags=["webhook deliveries"])
State = Annotated[ServiceState, Depends(service)]


def _describe(hook: Hook, state: ServiceState, request: Request) -> dict[str, Any]:
    base = state.public_url or str(request.base_url).rstrip("/")
    return {
        "id": hook.id,
        "module": hook.module,
        "connection": hook.connection_id,
        "parameters": hook.parameters,
        "url": f"{base}/hooks/{hook.id}",
        "created": iso_seconds(hook.created),
    }


def _hook(state: ServiceState, hook_id: str) -> Hook:
    try:
        return state.hooks.get(hook_id)
    except UnknownHookError as exc:
        raise ServiceError(404, "DataError", str(exc), field="hook") from None


@router.post("", status_code=201, response_model=HookOut, responses=errors(404, 422))
async def create_hook(body: HookIn, state: State, request: Request) -> Response:
    """A hook for an instant trigger and a stored connection: its public URL."""
    module = state.registry.get(body.module)
    webhook = module.manifest.webhook
    if webhook is None:
        raise InvalidConfigurationError(
            f"module {module.id} is an {module.manifest.kind} module, not an instant trigger: "
            "only instant triggers get hook URLs",
            field="module",
        )
    values = state.resolve(module, body.connection)
    check_parameters(module, state.engine.connection(module, values), body.parameters)
    if webhook.signature is not None:
        secret = values.get(webhook.signature.secret)
        if not isinstance(secret, str) or not secret.strip():
            raise InvalidConfigurationError(
                f"connection {body.connection!r} has no {webhook.signature.secret!r}, the "
                "shared secret deliveries are signed with: create a connection with it",
                field=webhook.signature.secret,
            )
    hook = await anyio.to_thread.run_sync(
        state.hooks.create, module.id, body.connection, body.parameters
    )
    return Json(_describe(hook, state, request), status_code=201)


@router.get("", response_model=HooksOut, responses=errors())
async def list_hooks(state: State, request: Request) -> Response:
    return Json({"hooks": [_describe(h, state, request) for h in state.hooks.all()]})


@router.get("/{hook_id}", response_model=HookOut, responses=errors(404))
async def get_hook(hook_id: str, state: State, request: Request) -> Response:
    return Json(_describe(_hook(state, hook_id), state, request))


@router.delete("/{hook_id}", response_model=DeletedOut, responses=errors(404))
async def delete_hook(hook_id: str, state: State) -> Response:
    """Delete the hook and its unacknowledged bundles; its URL then answers 404."""
    _hook(state, hook_id)
    await anyio.to_thread.run_sync(state.hooks.delete, hook_id)
    return Json({"deleted": hook_id})


@router.get("/{hook_id}/bundles", response_model=BundlesOut, responses=errors(404, 422))
async def read_bundles(
    hook_id: str,
    state: State,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many bundles.")] = 100,
    wait: Annotated[
        float,
        Query(ge=0, description="Seconds to wait for bundles when none are pending (long poll)."),
    ] = 0,
) -> Response:
    """Pending bundles, oldest first. Each is returned by every read until acknowledged."""
    _hook(state, hook_id)
    if wait > state.limits.max_wait:
        raise DataError(
            f"wait must be at most {state.limits.max_wait:g} seconds (the service's limit)",
            field="wait",
        )
    found = await state.hooks.wait_pending(hook_id, limit, wait)
    return Json(
        {
            "bundles": [
                {
                    "id": b.id,
                    "deliveryId": b.delivery_id,
                    "bundle": b.bundle,
                    "received": iso_seconds(b.received),
                }
                for b in found
            ]
        }
    )


@router.post("/{hook_id}/ack", response_model=AckOut, responses=errors(404, 422))
async def ack_bundles(hook_id: str, body: AckIn, state: State) -> Response:
    """Acknowledge bundles by id: they are deleted and never returned again."""
    _hook(state, hook_id)
    acked = await anyio.to_thread.run_sync(state.hooks.ack, hook_id, body.ids)
    return Json({"acked": acked})


_DELIVERY_ERRORS = {
    400: "Malformed: not JSON, not events, a required key missing (DataError). Nothing stored.",
    401: "Not signed, or signed with another secret (InvalidAccessTokenError). Nothing stored.",
    404: "No such hook (deleted, or never made).",
    413: "Over the size limit (DataError). Nothing stored.",
    422: "The hook's connection can no longer check deliveries (InvalidConfigurationError).",
}


@public.post(
    "/hooks/{hook_id}",
    response_model=DeliveryOut,
    responses={
        code: {"model": ErrorOut, "description": why} for code, why in _DELIVERY_ERRORS.items()
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The delivery as the sender posts it; signed (e.g. X-Signature).",
            "content": {"application/json": {"schema": {}}},
        }
    },
)
async def deliver(hook_id: str, request: Request, state: State) -> Response:
    """A sender's delivery: verified as the trigger verifies it, turned into bundles,
    written durably, and only then answered 200. A refused delivery stores nothing."""
    try:
        hook = state.hooks.get(hook_id)
    except UnknownHookError:
        return Json(error_body("DataError", "no such hook", None, "service"), status_code=404)
    module = state.registry.get(hook.module)
    webhook = module.manifest.webhook
    assert webhook is not None
    body = await request.body()
    if len(body) > webhook.max_body_bytes:
        message = f"the delivery is over the trigger's limit of {webhook.max_body_bytes:,} bytes"
        return Json(error_body("DataError", message, "body", "service"), 413)
    values = state.connections.values(hook.connection_id)
    headers = request.headers.items()

    def receive_and_store() -> tuple[str, int]:
        bundles = state.engine.handle_webhook(hook.module, values, hook.parameters, headers, body)
        delivery_id, ids = state.hooks.store(hook.id, bundles)
        return delivery_id, len(ids)

    try:
        delivery_id, count = await anyio.to_thread.run_sync(receive_and_store)
    except RunError as exc:
        status = (
            401
            if isinstance(exc, InvalidAccessTokenError)
            else 400
            if isinstance(exc, DataError)
            else 422
        )
        return Json(error_body(exc.type, exc.message, exc.field, "service"), status_code=status)
    state.hooks.notify(hook.id)
    return Json({"deliveryId": delivery_id, "bundles": count})
