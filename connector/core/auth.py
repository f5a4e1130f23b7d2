"""Auth types: how a connection's secrets become request headers.

A registry (``{"basic": ..., "bearer": ..., "header": ..., "headers": ..., "none":
...}``) rather than branches in the
request builder, so an integrator picks one by name in ``app.json`` and a new scheme is
one function. Auth templates are the only templates that see secret connection fields;
their result is computed once per connection and reused for every request.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from connector.format.manifest import AuthSpec
from connector.templating.templates import compile_template

__all__ = ["AUTH_REQUIRED", "AUTH_TYPES", "AuthHeaders", "build_auth_headers"]

AuthHeaders = dict[str, str]
AuthBuilder = Callable[[AuthSpec, Mapping[str, Any]], AuthHeaders]


def _render(source: str | None, scope: Mapping[str, Any]) -> str:
    if source is None:
        return ""
    value = compile_template(source).render(scope)
    return "" if value is None else str(value)


def _basic(spec: AuthSpec, scope: Mapping[str, Any]) -> AuthHeaders:
    user = _render(spec.username, scope)
    password = _render(spec.password, scope)
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


def _header(spec: AuthSpec, scope: Mapping[str, Any]) -> AuthHeaders:
    return {spec.header or "Authorization": _render(spec.value, scope)}


def _bearer(spec: AuthSpec, scope: Mapping[str, Any]) -> AuthHeaders:
    return {"Authorization": f"Bearer {_render(spec.value, scope)}"}


def _headers(spec: AuthSpec, scope: Mapping[str, Any]) -> AuthHeaders:
    """Several headers, each from the connection's secrets (an account id and a
    passcode, say): all are auth, so all are redacted and none may be overridden."""
    return {name: _render(value, scope) for name, value in (spec.headers or {}).items()}


def _none(spec: AuthSpec, scope: Mapping[str, Any]) -> AuthHeaders:
    return {}


#: Auth schemes by the name used in ``app.json``'s ``connection.auth.type``.
AUTH_TYPES: dict[str, AuthBuilder] = {
    "basic": _basic,
    "bearer": _bearer,
    "header": _header,
    "headers": _headers,
    "none": _none,
}
#: Which AuthSpec keys each scheme needs.
AUTH_REQUIRED: dict[str, tuple[str, ...]] = {
    "basic": ("username",),
    "bearer": ("value",),
    "header": ("header", "value"),
    "headers": ("headers",),
    "none": (),
}


def build_auth_headers(spec: AuthSpec, connection: Mapping[str, Any]) -> AuthHeaders:
    """Headers for every request of this connection (secrets included: handle with care)."""
    return AUTH_TYPES[spec.type](spec, {"connection": connection})
