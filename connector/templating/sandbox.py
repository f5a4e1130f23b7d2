"""The sandbox every template runs in: Jinja2's immutable sandbox, plus our limits.

Builders' mappings and integrators' manifests are untrusted. Jinja's
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` already refuses dunder access and
mutating calls; on top of it this module bounds what one template can *produce* (a cap
on strings and lists built by ``*``, ``+``, ``join``, ``replace``, the width-taking
``str`` methods, on integers, on ``range``), refuses ``str.format`` (its widths
allocate before any check could run), keeps a whitelist of filters, adds the engine's
own filters, and makes undefined names fail even inside containers. Each rule has a
test in ``tests/test_templates.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from connector.core.jsondata import loads_strict
from connector.core.types import format_datetime, parse_datetime, utc_now_iso
from connector.templating.functions import FUNCTIONS

__all__ = [
    "ALLOWED_BUILTIN_FILTERS",
    "CONCAT_GUARD",
    "EXTRA_FILTERS",
    "LOOP_GUARD",
    "MAX_INT_BITS",
    "MAX_OUTPUT",
    "MAX_RANGE",
    "MAX_RENDER_SECONDS",
    "MAX_RENDER_STEPS",
    "SIZE_GUARD",
    "bounded_concat",
    "environment",
    "materialise",
    "render_budget",
]

#: Largest string or collection one template may build, in characters/items.
MAX_OUTPUT = 1_000_000
#: Largest ``range()`` a template may iterate over.
MAX_RANGE = 10_000
#: Most ``{% for %}`` iterations and calls one render may run, all together: each loop
#: is bounded by its data or ``range``, but nested loops multiply (three nested
#: ``range(10000)`` would run for hours), and so do macros that call themselves.
MAX_RENDER_STEPS = 100_000
#: The global every ``{% for %}`` iterable is wrapped in (templates.py adds the call).
LOOP_GUARD = "_loop_guard"
#: The global every ``~`` is turned into (templates.py rewrites the node).
CONCAT_GUARD = "_concat"
#: The global every list, tuple and dict literal goes through.
SIZE_GUARD = "_sized"

#: Longest one render may run, checked at every loop iteration and call: the backstop
#: for loops whose every step is heavy but bounded (a 1 MB text uppercased 90,000 times).
MAX_RENDER_SECONDS = 2.0

#: The current render's [iterations left, deadline].
_BUDGET: ContextVar[list[float] | None] = ContextVar("connector_render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[None]:
    """One render's allowance of loop iterations and calls (see MAX_RENDER_STEPS),
    and of time (MAX_RENDER_SECONDS, checked at each of them)."""
    token = _BUDGET.set([MAX_RENDER_STEPS, time.monotonic() + MAX_RENDER_SECONDS])
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """A ``{% for %}`` iterable, each item spent from the render's budget."""
    for item in iterable:
        _spend()
        yield item


def _spend() -> None:
    """One loop iteration or call of the current render (nothing outside a render)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget[0] -= 1
    if budget[0] < 0:
        raise OverflowError(f"the template ran over {MAX_RENDER_STEPS:,} loop iterations and calls")
    if time.monotonic() > budget[1]:
        raise OverflowError(f"the template ran over {MAX_RENDER_SECONDS:g} seconds")


def _base64(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode("ascii")


def _merge(*objects: Any) -> dict[str, Any]:
    """Shallow-merge mappings left to right; ``None`` arguments are skipped."""
    out: dict[str, Any] = {}
    for obj in objects:
        if obj is None:
            continue
        if not isinstance(obj, (dict, Mapping)):
            raise TypeError(f"merge expects objects, got {type(obj).__name__}")
        out.update(obj)
    return out


_SCALARS = frozenset({str, int, float, bool})


def _compact(value: Any) -> Any:
    """Drop ``None``, empty text and empty objects/lists, recursively."""
    if isinstance(value, (dict, Mapping)):
        out = {}
        for k, v in value.items():
            kind = type(v)
            if kind in _SCALARS:  # the common case, inlined: no call per value
                if v != "":
                    out[k] = v
                continue
            if v is None:
                continue
            v = _compact(v)
            if not _is_blank(v):
                out[k] = v
        return out
    if isinstance(value, list):
        return [v for v in (_compact(v) for v in value) if not _is_blank(v)]
    return value


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, dict | list) and not value)


def _tojson(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _fromjson(value: Any) -> Any:
    return loads_strict(str(value))


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_s, new_s = str(value), str(old), str(new)
    hits = text.count(old_s) if old_s else len(text) + 1
    if count is not None:
        hits = min(hits, max(count, 0))
    if len(text) + hits * (len(new_s) - len(old_s)) > MAX_OUTPUT:
        raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
    return text.replace(old_s, new_s, -1 if count is None else count)


#: Largest integer a template may build, in bits (a 30,000-digit number).
MAX_INT_BITS = 100_000


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise OverflowError("number too large")


def _sha256(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def _iso(value: Any) -> str:
    return format_datetime(parse_datetime(value))


#: Filters added to Jinja's built-ins. Each is pure and cheap.
EXTRA_FILTERS: dict[str, Callable[..., Any]] = {
    "base64": _base64,
    "merge": _merge,
    "compact": _compact,
    "tojson": _tojson,
    "fromjson": _fromjson,
    "sha256": _sha256,
    "iso8601": _iso,
    "replace": _replace,
}
#: Jinja's own filters that stay available; the rest (e.g. ``attr``, ``xmlattr``,
#: ``indent``-style formatting with huge widths) are removed.
ALLOWED_BUILTIN_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "default",
        "d",
        "dictsort",
        "escape",
        "e",
        "first",
        "float",
        "int",
        "join",
        "last",
        "length",
        "count",
        "list",
        "lower",
        "map",
        "max",
        "min",
        "reject",
        "rejectattr",
        "replace",
        "reverse",
        "round",
        "select",
        "selectattr",
        "sort",
        "string",
        "sum",
        "title",
        "trim",
        "truncate",
        "unique",
        "upper",
        "urlencode",
        "items",
    }
)


def _bounded_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise OverflowError(f"range of {len(r)} items exceeds the limit of {MAX_RANGE}")
    return r


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with bounded ``*`` and ``**``, and JSON-first attribute lookup."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Bundles are JSON: ``order.items`` must be the "items" key, not dict.items.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise OverflowError("exponent too large")
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(abs(left).bit_length() * max(right, 0))
            return left**right
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(n, int)
                if sized and _size(seq) * n > MAX_OUTPUT:
                    raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(abs(left).bit_length() + abs(right).bit_length())
            return left * right
        if operator == "+":
            sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
            if sized and _size(left) + _size(right) > MAX_OUTPUT:
                raise OverflowError(f"result would exceed {MAX_OUTPUT} items")
            return left + right
        if operator == "%" and isinstance(left, str):
            # printf-style widths ('%2000000s') allocate before any check could run.
            raise OverflowError("string % formatting is not available in templates")
        return super().call_binop(context, operator, left, right)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # Every call of a render counts against its loop budget too: a macro that calls
        # itself twice runs 2^depth times without a single loop.
        _spend()
        # Text methods that grow their result from a small call ('a'.ljust(10**9)) are
        # checked before they allocate (format is refused in wrap_str_format).
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _WIDTH_METHODS:
                width = args[0] if args else kwargs.get("width", 0)
                if isinstance(width, int) and width > MAX_OUTPUT:
                    raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
            elif name == "expandtabs":
                size = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(size, int) and owner.count("\t") * size > MAX_OUTPUT:
                    raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
            elif name == "replace" and len(args) >= 2:
                return _replace(owner, *args[:3])
            elif name == "join" and args:
                return _join(args[0], owner)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # The sandbox wraps str.format/format_map on access; their widths ('{:>9999999}')
        # allocate before any check could run, so formatting is refused outright.
        if super().wrap_str_format(value) is None:
            return None

        def refuse(*args: Any, **kwargs: Any) -> str:
            raise OverflowError("str.format is not available in templates; use ~")

        return refuse


_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})


def _size(value: Any) -> int:
    """What a string, list or tuple stands for: its characters, or its items plus all
    that nested lists, tuples, dicts and strings hold. A shared nested list counts
    every time it appears (``[[0] * 10**6] * 10**6`` is 10^12, though it takes 16 MB):
    that is what ``==``, ``string``, ``map`` and the rest would walk. Stops counting
    past the output limit."""
    return _weight(value, {}, MAX_OUTPUT + 1)


def _weight(value: Any, seen: dict[int, int], cap: int) -> int:
    if isinstance(value, str | range):
        return len(value)
    if not isinstance(value, list | tuple | dict):
        return 1
    known = seen.get(id(value))
    if known is not None:
        return known
    items = value.values() if isinstance(value, dict) else value
    total = len(value)
    for item in items:
        if isinstance(item, list | tuple | dict | str | range):
            total += _weight(item, seen, cap)
            if total > cap:
                break
    seen[id(value)] = total
    return total


def _sized(value: Any) -> Any:
    """A list, tuple or dict literal, if what it stands for is within the limit."""
    if _size(value) > MAX_OUTPUT:
        raise OverflowError(f"result would exceed {MAX_OUTPUT} items")
    return value


def bounded_concat(*parts: Any) -> str:
    """``a ~ b``: the text of each part, joined only if the result stays within the
    output limit (doubling a text with ``~`` a few times would reach gigabytes)."""
    texts = [str(part) for part in parts]
    if sum(map(len, texts)) > MAX_OUTPUT:
        raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
    return "".join(texts)


def _join(value: Any, d: Any = "") -> str:
    """The ``join`` filter, bounded: refuses before building an oversized string."""
    sep = str(d)
    parts: list[str] = []
    size = 0
    for item in value:
        text = str(item)
        size += len(text) + (len(sep) if parts else 0)
        if size > MAX_OUTPUT:
            raise OverflowError(f"result would exceed {MAX_OUTPUT} characters")
        parts.append(text)
    return sep.join(parts)


def _sum(value: Any, attribute: Any = None, start: Any = 0) -> Any:
    """The ``sum`` filter, for numbers only: summing lists would concatenate them."""
    items = list(value)
    if attribute is not None or not isinstance(start, int | float):
        raise TypeError("sum adds numbers only")
    for item in items:
        if not isinstance(item, int | float) or isinstance(item, bool):
            raise TypeError("sum adds numbers only")
    return sum(items, start)


# Bounded replacements of Jinja's own join and sum (defined after the sandbox class).
EXTRA_FILTERS.update({"join": _join, "sum": _sum})
# Make's IML functions (dates, hashes, encodings, lists): connector/templating/functions.py.
EXTRA_FILTERS.update(FUNCTIONS)


class _StrictUndefined(StrictUndefined):
    """Also fails when printed inside a container (``{{ [nope] }}``), not only alone."""

    __slots__ = ()
    __repr__ = StrictUndefined._fail_with_undefined_error


def materialise(value: Any) -> Any:
    """A native result as plain data: iterators become lists, undefined values fail."""
    if isinstance(value, str):
        if len(value) > MAX_OUTPUT:
            raise OverflowError(f"result exceeds {MAX_OUTPUT} characters")
        return value
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, StrictUndefined):
        str(value)  # raises UndefinedError with Jinja's message
    if isinstance(value, dict):
        return {k: materialise(v) for k, v in value.items()} if _needs_walk(value) else value
    if isinstance(value, list | tuple):
        return [materialise(v) for v in value] if _needs_walk(value) else value
    if isinstance(value, Iterator):
        items = []
        for item in value:
            items.append(materialise(item))
            if len(items) > MAX_OUTPUT:
                raise OverflowError(f"result would exceed {MAX_OUTPUT} items")
        return items
    return value


def _needs_walk(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return any(not (isinstance(v, str | int | float | bool) or v is None) for v in items)


def _build_environment() -> _Environment:
    env = _Environment(undefined=_StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters = {k: v for k, v in env.filters.items() if k in ALLOWED_BUILTIN_FILTERS}
    env.filters.update(EXTRA_FILTERS)
    env.tests.pop("sameas", None)
    env.globals = {
        "range": _bounded_range,
        "dict": dict,
        "now": utc_now_iso,
        LOOP_GUARD: _loop_guard,
        CONCAT_GUARD: bounded_concat,
        SIZE_GUARD: _sized,
    }
    return env


_ENV = _build_environment()


def environment() -> _Environment:
    """The shared sandboxed environment (exposed for tests and docs)."""
    return _ENV
