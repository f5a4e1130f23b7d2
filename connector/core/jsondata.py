"""JSON the engine reads and writes, strictly.

Every piece of JSON from outside (manifests, mapped values, request bodies, webhook
deliveries) is read with :func:`loads_strict` and bounded in depth with
:func:`too_deep`, and every message is written with :func:`dumps`: ``NaN``,
``Infinity`` and numbers a float cannot hold are errors, never values that silently
change on the way (the standard library writes NaN, orjson writes it as ``null``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "dumps", "encode", "find_null", "loads_strict", "too_deep"]

#: Deepest nesting the engine accepts in any JSON it reads (manifests, mapped values,
#: webhook deliveries); real data stays under 20, and the engine's recursive steps
#: (rendering, compiling, serialising) must never meet a hostile depth.
MAX_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def loads_strict(text: str | bytes) -> Any:
    """JSON as the standard has it: ``NaN``, ``Infinity`` and numbers too large for a
    float (``1e999``) raise ValueError instead of becoming values no host can send on.
    Nesting too deep for the parser raises ValueError too."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


#: ``b"null" in out``, 1.6x faster (re's literal search beats bytes.find): every message
#: and every chunk of output bundles is checked for it.
find_null = re.compile(b"null").search


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, strictly: see :func:`encode`."""
    return encode(value)[0]


def encode(value: Any) -> tuple[bytes, bool]:
    """Compact UTF-8 JSON, strictly, and whether orjson wrote it.

    NaN and Infinity are errors (ValueError). Keys must be text; a key that is a number,
    a boolean or None is written as the text JSON gives it (``1`` as ``"1"``, ``None``
    as ``"null"``), as the standard library does, and any other key is an error
    (TypeError).

    orjson is ~10x faster than the standard library here (0.4 µs against 5.5 µs for a
    track message), but it writes NaN as ``null`` and refuses integers over 64 bits.
    So any output containing ``null`` (rare in messages), and anything orjson refuses,
    is redone by the standard library, which raises on NaN and handles big integers:
    the result never changes data silently.

    The flag says which wrote it. JSON orjson wrote never holds ``null``, and orjson
    reads it back as the redacting copy would copy the value (batch runs rely on this,
    see :mod:`connector.runs.batch_items`); the standard library's may not read back so (an
    integer over 64 bits becomes a float).
    """
    try:
        out = orjson.dumps(value)
    except TypeError:
        out = None
    if out is None or find_null(out):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode(), False
    return out, True
