"""Errors inside a 2xx answer, mapped onto Make's error types (``response.valid``/``error``).

Some APIs answer 200 and say in the body that the request failed, wholly or in part
(CleverTap's ``unprocessed`` items). A module's ``response.valid``/``error`` renders ``valid``
over the answer; when it is falsy the run fails with the check's ``type`` and rendered
``message``, redacted, instead of handing over bundles of a failure. Searches and
polling triggers check every page; ``connection.verify`` has its own ``valid`` and ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.core.connection import Connection
from connector.core.registry import CompiledCheck
from connector.errors import ERROR_TYPES, InvalidConfigurationError, RunError
from connector.templating.templates import RENDER_FAILURES, describe_error

__all__ = ["check_response"]


def check_response(
    check: CompiledCheck, scope: Mapping[str, Any], conn: Connection, where: str
) -> None:
    """Raise the check's error when ``valid`` renders falsy for this answer."""
    try:
        ok = check.valid.render(scope)
    except RENDER_FAILURES as exc:
        raise InvalidConfigurationError(
            f"{where}: the response check's 'valid' template failed: "
            f"{conn.redact(describe_error(exc))}"
        ) from None
    if ok:
        return
    try:
        message = check.message.render(scope)
    except RENDER_FAILURES as exc:
        message = f"(the check's message failed: {describe_error(exc)})"
    if not isinstance(message, str):
        import json

        message = json.dumps(message, ensure_ascii=False, default=str)
    response = scope.get("response")
    status = response.get("status") if isinstance(response, Mapping) else None
    error: RunError = ERROR_TYPES[check.error_type](
        f"{where}: {conn.redact(message)}", status=status if isinstance(status, int) else None
    )
    raise error
