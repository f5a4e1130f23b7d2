"""Logging with redaction: every engine logger passes records through the live redactors.

The engine logs through the standard :mod:`logging` module (hosts route it where they
like; the library only adds a NullHandler). Its own messages carry no secrets, by
construction, but a log line may quote remote text or a mapped value; so each engine
logger has a filter that applies every live connection's :class:`Redactor` to the
final message before any handler sees it.

:mod:`logging` itself is imported on first use (the first send), not when the package
is imported: it costs ~13 ms of a cold start that a host which only loads and describes
modules should not pay.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

__all__ = ["get_logger", "redacting_filter", "register_redactor"]

_REDACTORS: weakref.WeakSet[Callable[[str], str]] = weakref.WeakSet()
_FILTER: list[Any] = []


def register_redactor(redactor: Callable[[str], str]) -> None:
    """Make ``redactor`` apply to every engine log record while it is alive."""
    _REDACTORS.add(redactor)


def redact_message(message: str) -> str:
    """``message`` with every live redactor applied."""
    while True:
        try:
            redactors = list(_REDACTORS)
            break
        except RuntimeError:  # another thread added a connection meanwhile: read again
            continue
    for redactor in redactors:
        message = redactor(message)
    return message


def redacting_filter() -> logging.Filter:
    """The one filter every engine logger carries (created on first use)."""
    if not _FILTER:
        import logging

        class RedactingFilter(logging.Filter):
            """Rewrites a record's message with every live redactor applied."""

            def filter(self, record: logging.LogRecord) -> bool:
                record.msg, record.args = redact_message(record.getMessage()), None
                return True

        _FILTER.append(RedactingFilter())
        # A library logs; the host decides where logs go (the CLI's -v: stderr).
        logging.getLogger("connector").addHandler(logging.NullHandler())
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
