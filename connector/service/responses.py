"""The error responses each route documents in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from connector.service.models import ErrorOut

__all__ = ["errors"]

_WHY = {
    400: "A malformed webhook delivery (DataError); nothing stored.",
    401: "The API token is missing or wrong (origin service), or a delivery's signature.",
    404: "An unknown module, connection, hook or execution (DataError).",
    409: "A conflict, such as a connection still used by hooks (DataError).",
    413: "The body is over the size limit (DataError).",
    422: "Bad input: parameters, connection values, JSON (DataError or "
    "InvalidConfigurationError); nothing was sent.",
    429: "Too many concurrent runs (RateLimitError, origin service); see Retry-After.",
    502: "The module's remote API failed (origin upstream; the remote's status in 'status').",
    504: "The request overran the service's time limit (ConnectionError, origin service).",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the given statuses, plus 401 and 413 (every API route
    checks the token and the body size) and 504 (every route has a time limit)."""
    wanted = sorted({401, 413, 504, *codes})
    return {code: {"model": ErrorOut, "description": _WHY[code]} for code in wanted}
