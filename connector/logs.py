"""Logging with redaction: every engine logger passes records through the live redactors.

The engine logs through the standard :mod:`logging` module (hosts route it where they
like; the library only adds a NullHandler). Its own messages carry no secrets, by
construction, but a log line may quote remote text or a mapped value; so each engine
logger has a filter that applies every live connection's :class:`Redactor` to the
final message before any handler sees it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

__all__ = ["RedactingFilter", "get_logger", "register_redactor"]

_REDACTORS: weakref.WeakSet[Callable[[str], str]] = weakref.WeakSet()


def register_redactor(redactor: Callable[[str], str]) -> None:
    """Make ``redactor`` apply to every engine log record while it is alive."""
    _REDACTORS.add(redactor)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every live redactor applied."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for redactor in list(_REDACTORS):
            message = redactor(message)
        record.msg, record.args = message, None
        return True


_FILTER = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """An engine logger with the redacting filter (filters are not inherited)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
