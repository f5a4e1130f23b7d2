"""A request from rendered parts, checked as a module's is: for the requests a module
sends besides its first (the next pages of a search or trigger, a field's remote
options, a connection check).

The same rules as :mod:`connector.core.prepare` apply (method, URL under the base URL,
clean headers that do not touch auth, the query, the body's encoding), and the app's
own headers and query are added; only the templates differ. Not on the action path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.core.connection import Connection
from connector.core.request import (
    ALLOWED_METHODS,
    PreparedRequest,
    check_headers,
    encode_body,
    join_url,
    normalize_query,
)
from connector.errors import DataError

__all__ = ["compose_request", "request_view"]

_PARTS = ("method", "url", "headers", "query", "body")


def compose_request(
    module_id: str, conn: Connection, parts: Mapping[str, Any], field: str | None = None
) -> PreparedRequest:
    """The checked request for these rendered parts (``method``, ``url``, ``headers``,
    ``query``, ``body``; an absent one is None), auth and app headers added."""
    method, url, headers, query, body = (parts.get(name) for name in _PARTS)
    verb = str(method or "").upper()
    if verb not in ALLOWED_METHODS:
        raise DataError(
            f"unknown method {verb!r}, expected one of: {', '.join(sorted(ALLOWED_METHODS))}",
            field=field,
        )
    full_url = join_url(conn.base_url, url, field)
    if headers is not None and not isinstance(headers, Mapping):
        raise DataError("headers must be an object of names and values", field=field)
    checked = check_headers(headers, conn.auth_headers, field) if headers else {}
    if conn.app_headers:
        own = {name.lower() for name in checked}
        checked = {
            **{k: v for k, v in conn.app_headers.items() if k.lower() not in own},
            **checked,
        }
    params = normalize_query(query, field) if query else {}
    if conn.app_query:
        params = {**conn.app_query, **params}
    content, json_body, _ = encode_body(body, checked, field)
    return PreparedRequest(
        verb,
        full_url,
        {**checked, **conn.auth_headers},
        params,
        content,
        json_body,
        module_id,
        None,
        conn.timeout,
    )


def request_view(request: PreparedRequest, conn: Connection) -> dict[str, Any]:
    """What templates see of a sent request: method, URL, query, headers without auth
    and the body."""
    return {
        "method": request.method,
        "url": request.url,
        "query": dict(request.query),
        "headers": conn.without_auth(request.headers),
        "body": request.json_body,
    }
