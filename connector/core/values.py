"""Values: the parameters as templates read them, where an absent key reads as None.

A leaf module: every layer that builds or reads parameters (mapping, validation,
prepare, triggers, the fast path) imports it from here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Values"]


class Values(dict[str, Any]):
    """A dict in which a missing key reads as ``None`` (for templates)."""

    def __missing__(self, key: str) -> None:
        return None
