"""The fixture app's custom filter."""

from __future__ import annotations

from typing import Any


def shout(value: Any) -> str:
    """Upper case with an exclamation mark: what no built-in filter does in one step."""
    return str(value).upper() + "!"
