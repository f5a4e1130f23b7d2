"""Dynamic options (Make's RPC): a field's choices loaded from the app's API.

A parameter with ``remote`` has no fixed options: a form asks for them with
``connector options MODULE FIELD`` (or :meth:`Engine.options`), which sends the
field's request with the connection and what the builder has filled in so far
(``parameters``, unchecked and lenient: a field not filled in reads as none), and
turns each of the answer's items (``iterate``) into ``{"label", "value"}``. The
request is checked like a module's (URL under the base URL, clean headers, auth and
app headers added); errors are Make's error types, as for a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.core.compose import compose_request, request_view
from connector.core.prepare import ENGINE_INFO, render_part
from connector.core.types import utc_now_iso
from connector.errors import DataError, RemoteRuntimeError
from connector.runs.trigger import lenient

if TYPE_CHECKING:
    from connector.core.engine import Engine

__all__ = ["load_options"]


def load_options(
    engine: Engine,
    module_id: str,
    field: str,
    connection: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The field's options, ``[{"label", "value"}, ...]``, as the API lists them now."""
    module = engine.registry.get(module_id)
    remote = module.remote.get(field)
    if remote is None:
        known = ", ".join(sorted(module.remote)) or "(none)"
        raise DataError(
            f"field {field!r} of {module_id} has no remote options, expected one of: {known}",
            field=field,
        )
    conn = engine.connection(module, connection)
    if parameters is not None and not isinstance(parameters, Mapping):
        raise DataError("parameters must be an object", field="parameters")
    scope: dict[str, Any] = {
        "parameters": lenient(dict(parameters or {})),
        "connection": conn.public,
        "run": {"id": "options", "timestamp": utc_now_iso()},
        "engine": ENGINE_INFO,
        "app": module.app.info,
    }
    parts: dict[str, Any] = {}
    for name in ("method", "url", "headers", "query", "body"):
        tree = remote.request.part(name)
        parts[name] = None if tree is None else render_part(module, "remote", tree, scope, conn)
    request = compose_request(module.id, conn, parts, field)
    response, _ = engine.send(module, request, conn)
    view = engine.response_view(response)
    scope = {
        **scope,
        "request": request_view(request, conn),
        "response": {**view, "body": lenient(view["body"])},
    }
    items = render_part(module, "remote", remote.iterate, scope, conn)
    if not isinstance(items, list):
        raise RemoteRuntimeError(
            f"{module_id}: the options of {field!r} must come as a list (remote.iterate), "
            f"got {type(items).__name__}"
        )
    options = []
    for item in items:
        item_scope = {**scope, "item": lenient(item)}
        value = render_part(module, "remote", remote.value, item_scope, conn)
        label = render_part(module, "remote", remote.label, item_scope, conn)
        options.append({"label": str(label if label is not None else value), "value": value})
    return [conn.redact.data(o) for o in options]
