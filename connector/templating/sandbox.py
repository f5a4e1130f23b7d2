"""The sandbox every template runs in: Jinja2's immutable sandbox, plus our limits.

Builders' mappings and integrators' manifests are untrusted. Jinja's
:class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` already refuses dunder access and
mutating calls; on top of it this module keeps a whitelist of filters, adds the
engine's own filters, makes undefined names fail even inside containers, and bounds
every operation a template can run:

- every filter and test is wrapped (:func:`_guard_filter`): its arguments are checked
  and its cost charged to the render's budget before it runs, and the value it
  produced is checked after (:mod:`connector.templating.limits`);
- every method call, operator and slice goes through the environment's ``call``,
  ``call_binop`` and ``getitem``, which do the same; ``str.format`` and ``%``
  formatting are refused (their widths allocate before any check could run);
- every text a block captures (``{% set %}...{% endset %}``, macros, filter blocks) is
  joined by :func:`_bounded_capture`, which refuses an oversized result before
  joining;
- templates.py adds, to every compiled template, the loop guard, the bounded ``~``,
  the size check of list/tuple/dict literals, and the output and comparison guards.

Each rule has a test in ``tests/test_templates.py`` or ``tests/test_template_bounds.py``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from time import monotonic
from typing import Any, cast

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import FilterArgumentError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

from connector.core.jsondata import loads_strict
from connector.core.types import format_datetime, parse_datetime, utc_now_iso
from connector.templating.budget import (
    HEAVY,
    MAX_RENDER_STEPS,
    MAX_RENDER_WORK,
    charge,
    charge_in,
    current,
    overrun,
    spend,
)
from connector.templating.functions import FUNCTIONS
from connector.templating.limits import (
    MAX_OUTPUT,
    bounded_join,
    bounded_replace,
    check_bits,
    check_method_call,
    check_value,
    filter_check,
    filter_cost,
    size,
)

__all__ = [
    "ALLOWED_BUILTIN_FILTERS",
    "COMPARE_GUARD",
    "CONCAT_GUARD",
    "EXTRA_FILTERS",
    "FILTER_FAILURES",
    "LOOP_GUARD",
    "MAX_RANGE",
    "OUTPUT_GUARD",
    "SIZE_GUARD",
    "UNBUDGETED_UNITS",
    "bounded_concat",
    "compacted_in",
    "environment",
    "guard_filter",
    "materialise",
    "merged_in",
    "sized",
    "sized_in",
    "unguarded_in",
]

#: Largest ``range()`` a template may iterate over.
MAX_RANGE = 10_000
#: The global every ``{% for %}`` iterable is wrapped in (templates.py adds the call).
LOOP_GUARD = "_loop_guard"
#: The global every ``~`` is turned into (templates.py rewrites the node).
CONCAT_GUARD = "_concat"
#: The global every list, tuple and dict literal goes through.
SIZE_GUARD = "_sized"
#: The filter every ``{{ ... }}`` of a text template goes through: its text is charged
#: to the budget before it joins the output (or a block's capture).
OUTPUT_GUARD = "_output"
#: The filter every comparison goes through: ``==`` and ``in`` walk whole values, and
#: nothing else of the sandbox sees them, so the deadline is checked there.
COMPARE_GUARD = "_compared"


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """A ``{% for %}`` iterable, each item spent from the render's budget."""
    for item in iterable:
        spend()
        yield item


def _output(value: Any) -> str:
    """The text one ``{{ ... }}`` writes, charged to the render's budget."""
    text = str(value)
    charge(len(text) + 1)
    return check_value(text)  # type: ignore[no-any-return]


def _compared(value: Any) -> Any:
    charge(1)
    return value


def _bounded_capture(pieces: Any) -> str:
    """What a ``{% set %}`` block, a macro or a filter block captured, joined only if
    the result stays within the output limit (Jinja's ``concat``; the pieces were
    charged as they were written)."""
    pieces = pieces if isinstance(pieces, list) else list(pieces)
    if sum(map(len, pieces)) > MAX_OUTPUT:
        raise OverflowError(f"a captured block would exceed {MAX_OUTPUT:,} characters")
    return "".join(pieces)


def _base64(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode("ascii")


def merged_in(budget: list[float] | None, *objects: Any) -> dict[str, Any]:
    """The ``merge`` filter within ``budget`` (the current render's, or None): mappings
    shallow-merged left to right, ``None`` skipped. Each one's items are charged before
    it is merged (a merge of a hundred large objects runs out of work, or reads the
    clock, before it spends seconds), and neither one nor the result may pass the output
    limit. The fast path passes the budget it armed, as for :func:`sized_in`."""
    out: dict[str, Any] = {}
    total = 0  # the operands' items so far: the result has at most as many
    for obj in objects:
        if obj is None:
            continue
        if type(obj) is not dict and not isinstance(obj, Mapping):
            raise TypeError(f"merge expects objects, got {type(obj).__name__}")
        units = len(obj)
        if units > MAX_OUTPUT:
            raise OverflowError(f"result would exceed {MAX_OUTPUT:,} items")
        if budget is not None:
            charge_in(budget, units)
        out.update(obj)
        total += units
        if total > MAX_OUTPUT and len(out) > MAX_OUTPUT:
            raise OverflowError(f"result would exceed {MAX_OUTPUT:,} items")
    return out


def _merge(*objects: Any) -> dict[str, Any]:
    """Shallow-merge mappings left to right; ``None`` arguments are skipped."""
    return merged_in(current(), *objects)


_SCALARS = frozenset({str, int, float, bool})


def compacted_in(budget: list[float] | None, value: Any) -> Any:
    """The ``compact`` filter within ``budget`` (as :func:`merged_in`): ``value`` without
    ``None``, empty texts and empty objects and lists, recursively. It walks at most the
    output limit's worth of items (past it, refused: what it would build could be as
    large), and charges what it walked."""
    left = [MAX_OUTPUT]
    out = _compact(value, left)
    if budget is not None:
        charge_in(budget, MAX_OUTPUT - left[0])
    return out


def _compact_filter(value: Any) -> Any:
    """Drop ``None``, empty text and empty objects/lists, recursively."""
    return compacted_in(current(), value)


def _compact(value: Any, left: list[int]) -> Any:
    """:func:`compacted_in`'s walk; ``left``: the items it may still walk."""
    if isinstance(value, (dict, Mapping)):
        left[0] -= len(value)
        if left[0] < 0:
            raise OverflowError(f"compact: the value exceeds {MAX_OUTPUT:,} items")
        out = {}
        for k, v in value.items():
            kind = type(v)
            if kind in _SCALARS:  # the common case, inlined: no call per value
                if v != "":
                    out[k] = v
                continue
            if v is None:
                continue
            v = _compact(v, left)
            if not _is_blank(v):
                out[k] = v
        return out
    if isinstance(value, list):
        left[0] -= len(value)
        if left[0] < 0:
            raise OverflowError(f"compact: the value exceeds {MAX_OUTPUT:,} items")
        return [v for v in (_compact(v, left) for v in value) if not _is_blank(v)]
    return value


def _is_blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, (dict, list)) and not value)


def _tojson(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _fromjson(value: Any) -> Any:
    return loads_strict(str(value))


def _sha256(value: Any) -> str:
    return hashlib.sha256(str(value).encode()).hexdigest()


def _iso(value: Any) -> str:
    return format_datetime(parse_datetime(value))


#: Filters added to Jinja's built-ins. Each is pure and cheap.
EXTRA_FILTERS: dict[str, Callable[..., Any]] = {
    "base64": _base64,
    "merge": _merge,
    "compact": _compact_filter,
    "tojson": _tojson,
    "fromjson": _fromjson,
    "sha256": _sha256,
    "iso8601": _iso,
    "replace": bounded_replace,
    "join": bounded_join,
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
    """The sandbox with every operator, method call and slice bounded, block captures
    bounded, and JSON-first attribute lookup."""

    # Every binary operator: each is charged to the budget (and so checks the deadline);
    # ``*``, ``**``, ``+`` and ``%`` are also checked before they run.
    intercepted_binops = frozenset({"*", "**", "+", "%", "-", "/", "//"})
    intercepted_unops = frozenset({"-", "+"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Bundles are JSON: ``order.items`` must be the "items" key, not dict.items.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, slice):
            charge(size(obj))  # a slice copies up to the whole value
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        charge(size(left) + size(right))
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 100:
                raise OverflowError("exponent too large")
            if isinstance(left, int) and isinstance(right, int):
                check_bits(abs(left).bit_length() * max(right, 0))
            return check_value(left**right)
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                sized = isinstance(seq, _SEQUENCES) and isinstance(n, int)
                if sized and _size(seq) * n > MAX_OUTPUT:
                    raise OverflowError(f"result would exceed {MAX_OUTPUT:,} characters")
            if isinstance(left, int) and isinstance(right, int):
                check_bits(abs(left).bit_length() + abs(right).bit_length())
            return check_value(left * right)
        if operator == "+":
            sized = isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES)
            if sized and _size(left) + _size(right) > MAX_OUTPUT:
                raise OverflowError(f"result would exceed {MAX_OUTPUT:,} items")
            return check_value(left + right)
        if operator == "%" and isinstance(left, (str, bytes)):
            # printf-style widths ('%2000000s') allocate before any check could run.
            raise OverflowError("% formatting is not available in templates")
        return check_value(super().call_binop(context, operator, left, right))

    def call_unop(self, context: Any, operator: str, arg: Any) -> Any:
        charge(size(arg))
        return super().call_unop(context, operator, arg)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # Every call of a render counts against its loop budget too: a macro that calls
        # itself twice runs 2^depth times without a single loop.
        if __obj is sized or __obj is bounded_concat:
            # The guards templates.py puts in spend their step and charge what they
            # build themselves (the fast path calls them directly).
            return __obj(*args)
        spend()
        # Methods that grow their result from a small argument ('a'.ljust(10**9),
        # (1).to_bytes(10**9, 'big')) are checked before they allocate (format is
        # refused in wrap_str_format); every result is checked after.
        owner = getattr(__obj, "__self__", None)
        if owner is not None:
            name = getattr(__obj, "__name__", "")
            if isinstance(owner, (str, bytes, bytearray)):
                if name == "replace" and len(args) >= 2:
                    return bounded_replace(owner, *args[:3])
                if name == "join" and args:
                    return bounded_join(args[0], owner)
            check_method_call(owner, name, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        charge(size(result))
        return check_value(result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # The sandbox wraps str.format/format_map on access; their widths ('{:>9999999}')
        # allocate before any check could run, so formatting is refused outright.
        if super().wrap_str_format(value) is None:
            return None

        def refuse(*args: Any, **kwargs: Any) -> str:
            raise OverflowError("str.format is not available in templates; use ~")

        return refuse


_SEQUENCES = (str, bytes, bytearray, list, tuple)


_NUMBERS = frozenset({int, float, bool})
#: Types whose size (limits.size) is their length plus one.
_LENGTHS = frozenset({str, list, dict, bytes})


def _size(value: Any) -> int:
    """What a string, bytes, list or tuple stands for: its characters, or its items plus
    all that nested lists, tuples, dicts and strings hold. A shared nested list counts
    every time it appears (``[[0] * 10**6] * 10**6`` is 10^12, though it takes 16 MB):
    that is what ``==``, ``string``, ``map`` and the rest would walk. Stops counting
    past the output limit."""
    return _weight(value, {}, MAX_OUTPUT + 1)


def _weight(value: Any, seen: dict[int, int], cap: int) -> int:
    kind = type(value)
    if kind is dict:
        items: Any = value.values()
    elif kind is list or kind is tuple:
        items = value
    elif isinstance(value, _FLAT_SIZED):
        return len(value)
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return 1
    known = seen.get(id(value))
    if known is not None:
        return known
    total = len(value)
    if total > cap:
        return total
    for item in items:
        kind = type(item)
        if kind is str:
            total += len(item)
        elif kind in _NUMBERS or item is None:
            continue
        elif isinstance(item, _WEIGHED):
            total += _weight(item, seen, cap)
        if total > cap:
            break
    seen[id(value)] = total
    return total


_FLAT_SIZED = (str, bytes, bytearray, range)
_WEIGHED = (list, tuple, dict, str, bytes, bytearray, range)


#: Most literals, merge operands and compact calls an expression may have and still
#: spend nothing else of a render's budget without being able to exhaust it. Each of
#: them is refused past MAX_OUTPUT on its own and charges at most that, so L of them
#: spend at most L * MAX_OUTPUT work and L steps: under the budget's MAX_RENDER_WORK and
#: MAX_RENDER_STEPS for L up to this, whatever the data. (One literal's worth is left
#: for what the result check may walk.) The fast path leaves such an expression
#: unbudgeted (see fastpath.py).
UNBUDGETED_UNITS = min(MAX_RENDER_WORK // MAX_OUTPUT, MAX_RENDER_STEPS) - 1


def sized(value: Any) -> Any:
    """A list, tuple or dict literal, if what it stands for is within the limit. (On
    every fast-path render of a literal: a literal holding numbers, booleans, None,
    texts, and lists or dicts of those, the usual case, is counted here without a walk
    of _weight.) Spends one step: the
    sandbox's ``call`` leaves that to it."""
    return sized_in(current(), value)


def sized_in(budget: list[float] | None, value: Any) -> Any:
    """:func:`sized` within ``budget``, the current render's: the fast path's generated
    functions hold the budget they armed, and pass it instead of looking it up."""
    if budget is not None:
        budget[0] -= 1
        if budget[0] < 0:
            spend()  # raises the step limit's error
    kind = type(value)
    items: Any = value.values() if kind is dict else value
    weight = len(value)
    for item in items:
        kind = type(item)
        if kind is str:
            weight += len(item)
        elif kind in _NUMBERS or item is None:
            continue
        elif kind is dict or kind is list:  # one level down, as _weight counts it
            weight += len(item)
            if weight > MAX_OUTPUT:
                break
            for inner in item.values() if kind is dict else item:
                kind = type(inner)
                if kind is str:
                    weight += len(inner)
                elif not (kind in _NUMBERS or inner is None):
                    weight = -1
                    break
            if weight < 0:
                break
        else:
            weight = -1
            break
        # Past the limit, counting on would only walk (``[x, x, ...]`` of a long list
        # repeats its walk for every copy): what was counted is what _weight counts.
        if weight > MAX_OUTPUT:
            break
    if weight < 0:
        weight = _weight(value, {}, MAX_OUTPUT + 1)
    if weight > MAX_OUTPUT:
        raise OverflowError(f"result would exceed {MAX_OUTPUT:,} items")
    if budget is not None:
        charge_in(budget, weight)
    return value


def bounded_concat(*parts: Any) -> str:
    """``a ~ b``: the text of each part, joined only if the result stays within the
    output limit (doubling a text with ``~`` a few times would reach gigabytes). Spends
    one step: the sandbox's ``call`` leaves that to it."""
    spend()
    texts = [str(part) for part in parts]
    total = sum(map(len, texts))
    if total > MAX_OUTPUT:
        raise OverflowError(f"result would exceed {MAX_OUTPUT:,} characters")
    charge(total)
    return "".join(texts)


def _sum(value: Any, attribute: Any = None, start: Any = 0) -> Any:
    """The ``sum`` filter, for numbers only: summing lists would concatenate them."""
    items = list(value)
    if attribute is not None or not isinstance(start, (int, float)):
        raise TypeError("sum adds numbers only")
    for item in items:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            raise TypeError("sum adds numbers only")
    return sum(items, start)


# A bounded replacement of Jinja's own sum (defined after the sandbox class).
EXTRA_FILTERS["sum"] = _sum
# Make's IML functions (dates, hashes, encodings, lists): connector/templating/functions.py.
EXTRA_FILTERS.update(FUNCTIONS)


#: What a filter or test may raise as it is: what callers report as a template fault
#: (templates.RENDER_FAILURES).
FILTER_FAILURES = (
    TemplateError,
    OverflowError,
    TypeError,
    ValueError,
    ArithmeticError,
    RecursionError,
    AttributeError,
    LookupError,
)


#: Our own filters whose time is linear in their input and whose result is no larger
#: than the output limit: they check and charge their own work (merged_in,
#: compacted_in), so they run without the guard, and the fast path calls them with the
#: budget it armed, or none (see UNBUDGETED_UNITS). (Every Segment message body
#: calls them: the guard would be a third of its fast-path render.)
_LINEAR_FILTERS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "merge": (_merge, merged_in),
    "compact": (_compact_filter, compacted_in),
}


def unguarded_in(name: str, function: Callable[..., Any]) -> Callable[..., Any] | None:
    """When ``function``, the filter ``name`` of an environment, is one of the linear
    filters above: the same filter taking the budget it charges as its first argument
    (as :func:`sized_in`); else None."""
    pair = _LINEAR_FILTERS.get(name)
    return pair[1] if pair is not None and pair[0] is function else None


def guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a filter or test) with its arguments checked and its cost charged
    before it runs, and its result checked and charged after. Keeps Jinja's pass_*
    marker, so Jinja and the fast path call it exactly as they would call ``function``.
    (On every fast-path render: written out rather than through charge().)"""
    if unguarded_in(name, function) is not None:
        return function
    check = filter_check(name)
    cost = filter_cost(name)
    offset = 0 if _PassArg.from_obj(function) is None else 1

    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[offset] if len(args) > offset else None
        if check is not None:
            check(value, args[offset + 1 :], kwargs)
        budget = current()
        if budget is not None:
            if cost is not None:
                units = cost(value, args[offset + 1 :], kwargs)
            elif type(value) in _LENGTHS:
                units = len(value) + 1  # type: ignore[arg-type]
            else:
                units = size(value)
            budget[1] -= units
            # The clock is read before heavy calls only: light ones are many only in
            # loops, whose every iteration reads it.
            if budget[1] < 0 or (units > HEAVY and monotonic() > budget[2]):
                overrun(budget)
        try:
            result = function(*args, **kwargs)
        except FILTER_FAILURES:
            raise
        except Exception as exc:
            # Jinja's filters check some arguments with assert (truncate's length):
            # whatever a filter raises is a fault of the template, never a crash.
            raise FilterArgumentError(f"{name}: {type(exc).__name__}: {exc}") from None
        kind = type(result)
        if kind is str or kind is dict or kind is list:
            units = len(result)
            if units > MAX_OUTPUT:
                check_value(result)  # raises, with the message for its kind
        elif kind is bool or result is None:
            return result
        else:
            check_value(result)
            units = size(result)
        if budget is not None:
            budget[1] -= units
            if budget[1] < 0:
                overrun(budget)
        return result

    functools.update_wrapper(guarded, function)
    return guarded


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, writing infinite and NaN constants as Python reads them:
    Jinja writes ``str(value)``, so ``{{ 1e400 }}`` compiled to a bare ``inf`` and failed
    with a NameError instead of evaluating to infinity."""

    def visit_Const(self, node: nodes.Const, frame: Frame) -> None:
        value = node.value
        if isinstance(value, float) and not math.isfinite(value):
            self.write(f"float({str(value)!r})")
        else:
            super().visit_Const(node, frame)


class _StrictUndefined(StrictUndefined):
    """Also fails when printed inside a container (``{{ [nope] }}``), not only alone."""

    __slots__ = ()
    __repr__ = StrictUndefined._fail_with_undefined_error


def materialise(value: Any) -> Any:
    """A native result as plain data: iterators become lists, undefined values fail.
    A dict or list whose contents need no change is returned as it is (not copied)."""
    kind = type(value)
    if kind is str or kind is bytes or isinstance(value, (str, bytes)):
        if len(value) > MAX_OUTPUT:
            raise OverflowError(f"result exceeds {MAX_OUTPUT:,} characters")
        return value
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, StrictUndefined):
        str(value)  # raises UndefinedError with Jinja's message
    if isinstance(value, dict):
        changed: dict[Any, Any] | None = None
        for key, item in value.items():
            if type(item) in _PLAIN or item is None:
                continue
            new = materialise(item)
            if new is not item:
                if changed is None:
                    changed = {}
                changed[key] = new
        return value if changed is None else {k: changed.get(k, v) for k, v in value.items()}
    if isinstance(value, list):
        items = [
            item if type(item) in _PLAIN or item is None else materialise(item) for item in value
        ]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, tuple):
        return [materialise(v) for v in value] if _needs_walk(value) else value
    if isinstance(value, Iterator):
        items = []
        for item in value:
            charge(1)
            items.append(materialise(item))
            if len(items) > MAX_OUTPUT:
                raise OverflowError(f"result would exceed {MAX_OUTPUT:,} items")
        return items
    return value


#: Values a result holds as they are (a text is checked where it is built).
_PLAIN = frozenset({str, bytes, int, float, bool})


def _needs_walk(value: Any) -> bool:
    return any(not (isinstance(v, (str, int, float, bool)) or v is None) for v in value)


def _build_environment() -> _Environment:
    env = _Environment(undefined=_StrictUndefined, autoescape=False, keep_trailing_newline=True)
    # No constant folding at compile time: folded filters would run outside any render's
    # budget. Every operation runs at render time, where it is counted.
    env.optimized = False
    env.code_generator_class = _CodeGenerator
    # Jinja joins what blocks and macros capture with the environment's concat.
    env.concat = _bounded_capture  # type: ignore[method-assign]
    filters = {k: v for k, v in env.filters.items() if k in ALLOWED_BUILTIN_FILTERS}
    filters.update(EXTRA_FILTERS)
    env.filters = {name: guard_filter(name, f) for name, f in filters.items()}
    env.filters[OUTPUT_GUARD] = _output
    env.filters[COMPARE_GUARD] = _compared
    tests = cast(dict[str, Callable[..., Any]], env.tests)
    env.tests = {name: guard_filter(name, t) for name, t in tests.items() if name != "sameas"}
    env.globals = {
        "range": _bounded_range,
        "dict": dict,
        "now": utc_now_iso,
        LOOP_GUARD: _loop_guard,
        CONCAT_GUARD: bounded_concat,
        SIZE_GUARD: sized,
    }
    return env


_ENV = _build_environment()


def environment() -> _Environment:
    """The shared sandboxed environment (exposed for tests and docs)."""
    return _ENV
