"""Errors over HTTP: Make's error types in the body, and one documented status mapping.

Every error response is ``{"error": {"type", "message", "field", "origin", ...}}``.
``type`` is Make's (DataError, InvalidConfigurationError, InvalidAccessTokenError,
RateLimitError, ConnectionError, RuntimeError). ``origin`` says who failed:

* ``"service"``: this service refused the request (its token, its limits, its input);
* ``"upstream"``: the module's remote API did, and ``status`` is the remote's status.

Upstream failures are never answered with the remote's own status: a remote 401 (the
write key was refused) is a 502 with type InvalidAccessTokenError and ``status: 401``,
so a host never mistakes it for its own token being refused (401, origin service).

=========================  ======  ===============================================
type                        HTTP    when
=========================  ======  ===============================================
DataError                   422     bad input: parameters, connection values, JSON
                                    (nothing was sent); a remote 400/413/422 too,
                                    then origin upstream and 502
DataError                   400     a webhook delivery that is malformed
DataError                   404     an unknown module, connection, hook, execution
DataError                   409     a conflict (a connection still used by hooks)
DataError                   413     a body over the size limit
InvalidConfigurationError   422     the connection or module cannot work as given
InvalidAccessTokenError     401     the API token (origin service), or a webhook
                                    delivery's signature (the sender's credential)
InvalidAccessTokenError     502     the remote refused the credentials (upstream)
RateLimitError              429     too many concurrent runs (origin service)
RateLimitError              502     the remote kept answering 429 (upstream)
ConnectionError             502     the remote was unreachable or timed out
ConnectionError             504     the request overran the service's time limit
RuntimeError                502     any other remote failure (upstream)
RuntimeError                500     a fault of the service itself (no details)
=========================  ======  ===============================================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from connector.errors import (
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    RunError,
    UnknownModuleError,
)
from connector.service.connections import UnknownConnectionError
from connector.service.hooks import UnknownHookError
from connector.service.respond import Json

__all__ = [
    "ServiceError",
    "error_body",
    "install_handlers",
    "run_error_response",
    "service_status",
]

_log = logging.getLogger("connector.service")

#: The status for a RunError the engine raised before sending anything.
_LOCAL_STATUS: dict[str, int] = {
    DataError.type: 422,
    InvalidConfigurationError.type: 422,
}
UPSTREAM_STATUS = 502


class ServiceError(Exception):
    """A refusal by the service itself, with its status and Make type."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type_
        self.message = message
        self.field = field
        self.headers = headers
        super().__init__(message)


def error_body(
    type_: str, message: str, field: str | None, origin: str, **extra: Any
) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, "field": field, "origin": origin, **extra}}


def service_status(exc: RunError) -> tuple[int, str]:
    """The HTTP status and origin for an engine error (see the table above)."""
    if exc.status is not None or exc.retryable or isinstance(exc, InvalidAccessTokenError):
        return UPSTREAM_STATUS, "upstream"  # the remote answered, or could not be reached
    return _LOCAL_STATUS.get(exc.type, 422), "service"


def run_error_response(exc: RunError) -> Response:
    status, origin = service_status(exc)
    detail = exc.to_dict()
    detail["origin"] = origin
    detail["retryable"] = exc.retryable
    return Json({"error": detail}, status_code=status)


def _validation_message(errors: list[Any]) -> tuple[str, str | None]:
    parts = []
    fields = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        name = ".".join(loc) or "body"
        fields.append(name)
        parts.append(f"{name}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request", (fields[0] if len(fields) == 1 else None)


def install_handlers(app: FastAPI) -> None:
    """Map every exception to the error shape; nothing escapes as a bare 500 page."""

    async def _service(request: Request, exc: ServiceError) -> Response:
        return Json(
            error_body(exc.type, exc.message, exc.field, "service"),
            status_code=exc.status,
            headers=exc.headers,
        )

    async def _run(request: Request, exc: RunError) -> Response:
        return run_error_response(exc)

    async def _unknown(request: Request, exc: UnknownModuleError) -> Response:
        return Json(error_body("DataError", str(exc), "module", "service"), status_code=404)

    async def _missing(request: Request, exc: LookupError) -> Response:
        field = "connection" if isinstance(exc, UnknownConnectionError) else "hook"
        return Json(error_body("DataError", str(exc), field, "service"), 404)

    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        message, field = _validation_message(list(exc.errors()))
        kind = request.headers.get("content-type", "")
        if field == "body" and "json" not in kind.lower():
            message = (
                f"the body must be JSON sent with Content-Type: application/json "
                f"(got {kind or 'no Content-Type'})"
            )
        return Json(error_body("DataError", message, field, "service"), status_code=422)

    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        status, message = exc.status_code, str(exc.detail)
        if status == 400:  # FastAPI could not read the body (not UTF-8, not JSON)
            status, message = 422, f"the request body is not valid JSON ({message.lower()})"
        kind = "InvalidAccessTokenError" if status == 401 else "DataError"
        field = "body" if status in (413, 422) else None
        return Json(
            error_body(kind, message, field, "service"),
            status_code=status,
            headers=getattr(exc, "headers", None),
        )

    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The message of an unexpected exception is not known to be secret-free.
        _log.error("unexpected %s in %s %s", type(exc).__name__, request.method, request.url.path)
        return Json(
            error_body(
                "RuntimeError", f"unexpected {type(exc).__name__} in the service", None, "service"
            ),
            status_code=500,
        )

    app.add_exception_handler(ServiceError, _service)  # type: ignore[arg-type]
    app.add_exception_handler(RunError, _run)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownModuleError, _unknown)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownConnectionError, _missing)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownHookError, _missing)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
