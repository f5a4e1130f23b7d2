"""Logging with redaction: every record the engine's requests can produce is redacted.

The engine logs through the standard :mod:`logging` module (hosts route it where they
like; the library only adds a NullHandler). Its own messages carry no secrets by
construction, but a log line may quote remote text or a mapped value, and the HTTP
client logs too: httpx writes each request's URL (query included) at INFO, httpcore its
connection steps at DEBUG. So the engine's loggers, httpx's and each of httpcore's carry
one filter that rewrites a record with :func:`~connector.core.redaction.redact_text`
(every live connection's secrets, in every escaped form) before any handler sees it:
the formatted message, a traceback and a stack. Filters attach to a logger, not to its
children, hence the explicit list of the HTTP client's logger names. A host that logs
other libraries' records which may quote secrets adds :func:`redacting_filter` to its
handlers (the CLI does, for ``-v``).

:mod:`logging` itself is imported on first use (the first send), not when the package
is imported: it costs ~13 ms of a cold start that a host which only loads and describes
modules should not pay.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING, Any

from connector.core.redaction import redact_text

if TYPE_CHECKING:
    import logging

__all__ = ["HTTP_CLIENT_LOGGERS", "get_logger", "redact_message", "redacting_filter"]

#: The HTTP client's loggers (httpx and httpcore name one per module; hpack and h2 are
#: HTTP/2's).
HTTP_CLIENT_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    # HTTP/2, when a host brings a client with it on: hpack logs header values.
    "hpack",
    "hpack.hpack",
    "hpack.table",
    "h2",
)

_FILTER: list[Any] = []

#: The chokepoint's text function, under the name this module has always exported.
redact_message = redact_text


def redacting_filter() -> logging.Filter:
    """The one filter every engine logger carries (created on first use, when it is
    also put on the HTTP client's loggers)."""
    if not _FILTER:
        import logging

        class RedactingFilter(logging.Filter):
            """Rewrites a record's message, traceback and stack, redacted."""

            def filter(self, record: logging.LogRecord) -> bool:
                record.msg, record.args = redact_text(record.getMessage()), None
                if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
                    text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
                    record.exc_text = text
                if record.exc_text:
                    record.exc_text = redact_text(record.exc_text)
                if record.stack_info:
                    record.stack_info = redact_text(record.stack_info)
                return True

        log_filter = RedactingFilter()
        _FILTER.append(log_filter)
        # A library logs; the host decides where logs go (the CLI's -v: stderr).
        logging.getLogger("connector").addHandler(logging.NullHandler())
        for name in HTTP_CLIENT_LOGGERS:
            client_logger = logging.getLogger(name)
            if log_filter not in client_logger.filters:
                client_logger.addFilter(log_filter)
    result: logging.Filter = _FILTER[0]
    return result


def get_logger(name: str) -> logging.Logger:
    """An engine logger with the redacting filter (filters are not inherited)."""
    import logging

    logger = logging.getLogger(name)
    log_filter = redacting_filter()
    if log_filter not in logger.filters:
        logger.addFilter(log_filter)
    return logger
