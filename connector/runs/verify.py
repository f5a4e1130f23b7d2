"""Checking a connection works: the app's ``connection.verify`` request.

``connector verify APP -c CONN`` (or :meth:`Engine.verify`) checks the connection's
fields, builds its auth and base URL, sends the verify request (auth, app headers and
the signer added) and answers ``{"ok": true}``. A refusal is Make's error type for the
status (401/403: InvalidAccessTokenError), or the verify ``check``'s for a 2xx body
that says no. Without a verify request, only the fields are checked, and the answer
says so (``"checked": "fields only: ..."``), so no one takes it for a remote check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.core.compose import compose_request, request_view
from connector.core.connection import Connection
from connector.core.ids import new_id
from connector.core.prepare import ENGINE_INFO
from connector.core.response_check import check_response
from connector.core.types import utc_now_iso
from connector.errors import InvalidConfigurationError
from connector.templating.templates import RENDER_FAILURES, describe_error

if TYPE_CHECKING:
    from connector.core.engine import Engine

__all__ = ["verify_connection"]


def verify_connection(
    engine: Engine, app_name: str, connection: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``{"ok": True}``, or a RunError subclass naming what failed."""
    app = engine.registry.apps.get(app_name)
    if app is None:
        raise InvalidConfigurationError(
            f"unknown app {app_name!r}, expected one of: {', '.join(sorted(engine.registry.apps))}"
        )
    conn = Connection(app, connection)
    if app.verify is None:
        return {"ok": True, "checked": "fields only: the app declares no verify request"}
    scope: dict[str, Any] = {
        "connection": conn.public,
        "engine": ENGINE_INFO,
        "app": app.info,
        "run": {"id": new_id(), "timestamp": utc_now_iso()},
    }
    parts: dict[str, Any] = {}
    for name in ("method", "url", "headers", "query", "body"):
        tree = app.verify.part(name)
        try:
            parts[name] = tree.render(scope) if tree is not None else None
        except RENDER_FAILURES as exc:
            raise InvalidConfigurationError(
                f"app {app_name}: the verify request's {name} template failed: "
                f"{conn.redact(describe_error(exc))}"
            ) from None
    request = compose_request(f"{app_name}.verify", conn, parts)
    response, _ = engine.send_for_app(app, request, conn)
    if app.verify_check is not None:
        view = engine.response_view(response)
        from connector.runs.trigger import lenient

        check_scope = {
            **scope,
            "request": request_view(request, conn),
            "response": {**view, "body": lenient(view["body"])},
        }
        check_response(app.verify_check, check_scope, conn, f"{app_name} verify")
    return {"ok": True}
