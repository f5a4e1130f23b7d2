"""What one template may build: the size limits, and the checks that apply them.

Two kinds of check keep every single operation of a render bounded:

- *before* an operation whose result could outgrow its inputs by an argument (a width,
  a count, a precision, a base, a length), the argument is checked, because the
  allocation or the computation would happen before any check of the result could
  run (``'a'.ljust(10**9)``, ``5|round(-10**9)``, ``(1).to_bytes(10**9, 'big')``);
- *after* every filter, method and operator, the value it produced is checked
  (:func:`check_value`): text and bytes by length, integers by bits, collections by
  items. What is checked after the fact is at most a small constant factor over the
  limit (``urlencode`` writes at most 12 characters for one).

The render's budget (:mod:`connector.templating.budget`) then bounds how many such
operations a render may run, and :func:`size` says what each costs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from connector.templating.budget import charge

__all__ = [
    "MAX_INT_BITS",
    "MAX_OUTPUT",
    "MAX_ROUND_DIGITS",
    "bounded_join",
    "bounded_replace",
    "check_bits",
    "check_method_call",
    "check_value",
    "filter_check",
    "filter_cost",
    "size",
]

#: Largest string, bytes or collection one template may build, in characters/items.
MAX_OUTPUT = 1_000_000
#: Largest integer a template may build, in bits (a 30,000-digit number).
MAX_INT_BITS = 100_000
#: Largest precision ``round`` accepts either way: the digits of the largest integer.
#: Rounding computes ``10 ** precision``; ``5|round(-10**9)`` would run for hours.
MAX_ROUND_DIGITS = math.ceil(MAX_INT_BITS * math.log10(2))

_TEXT = (str, bytes, bytearray)
_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset, range)


def _too_long() -> OverflowError:
    return OverflowError(f"result would exceed {MAX_OUTPUT:,} characters")


def check_bits(bits: int) -> None:
    """Refuse an integer of more than MAX_INT_BITS bits (before building it)."""
    if bits > MAX_INT_BITS:
        raise OverflowError(f"number too large (over {MAX_INT_BITS:,} bits)")


def check_value(value: Any) -> Any:
    """``value`` itself, when it is within the limits; else OverflowError."""
    kind = type(value)
    if kind is str or kind is bytes:
        if len(value) > MAX_OUTPUT:
            raise _too_long()
    elif kind is dict or kind is list:
        if len(value) > MAX_OUTPUT:
            raise OverflowError(f"result would exceed {MAX_OUTPUT:,} items")
    elif kind is int:
        check_bits(value.bit_length())
    elif kind is float or kind is bool or value is None:
        pass
    elif isinstance(value, _TEXT):
        if len(value) > MAX_OUTPUT:
            raise _too_long()
    elif isinstance(value, _SIZED) and not isinstance(value, range):
        if len(value) > MAX_OUTPUT:
            raise OverflowError(f"result would exceed {MAX_OUTPUT:,} items")
    elif isinstance(value, int):
        check_bits(value.bit_length())
    return value


def size(value: Any) -> int:
    """What walking or building ``value`` once costs, in units of the render's work
    budget: its characters, bytes or items (not nested ones), an integer's 64-bit
    words, or one."""
    kind = type(value)
    if kind is str or kind is list or kind is dict or kind is bytes:
        return len(value) + 1
    if kind is int:
        return int(value.bit_length()) // 64 + 1
    if kind is float or kind is bool or value is None:
        return 1
    if isinstance(value, _SIZED):
        return len(value) + 1
    return 1


def bounded_replace(value: Any, old: Any, new: Any, count: Any = None) -> Any:
    """``replace`` on text or bytes, refused before building an oversized result. The
    filter turns its arguments into text; the method keeps bytes as bytes."""
    if isinstance(value, (bytes, bytearray)):
        if not isinstance(old, (bytes, bytearray)) or not isinstance(new, (bytes, bytearray)):
            raise TypeError("bytes.replace takes bytes")
        _check_replace(value, old, new, count)
        return value.replace(old, new, -1 if count is None else count)
    text, old_s, new_s = str(value), str(old), str(new)
    _check_replace(text, old_s, new_s, count)
    return text.replace(old_s, new_s, -1 if count is None else count)


def _check_replace(text: Any, old: Any, new: Any, count: Any) -> None:
    hits = text.count(old) if old else len(text) + 1
    if count is not None:
        if not isinstance(count, int):
            raise TypeError("replace's count must be an integer")
        if count >= 0:
            hits = min(hits, count)
    if len(text) + hits * (len(new) - len(old)) > MAX_OUTPUT:
        raise _too_long()
    charge(len(text) + hits * len(new))


def bounded_join(value: Iterable[Any], d: Any = "") -> Any:
    """``join``: the ``join`` filter (text of every item) and ``str.join`` /
    ``bytes.join`` (items as they are), refused before building an oversized result."""
    if isinstance(d, (bytes, bytearray)):
        items = [bytes(item) if isinstance(item, bytearray) else item for item in value]
        if any(not isinstance(item, bytes) for item in items):
            raise TypeError("bytes.join takes bytes")
        sep_b = bytes(d)
        total = sum(map(len, items)) + len(sep_b) * max(len(items) - 1, 0)
        if total > MAX_OUTPUT:
            raise _too_long()
        charge(total + len(items))
        return sep_b.join(items)
    sep = str(d)
    parts: list[str] = []
    total = 0
    for item in value:
        text = str(item)
        total += len(text) + (len(sep) if parts else 0)
        if total > MAX_OUTPUT:
            raise _too_long()
        parts.append(text)
    charge(total + len(parts))
    return sep.join(parts)


# -- filters: the arguments they may not take, and what each costs before it runs -------

Cost = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], int]


def _linear(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    units = size(value)
    for argument in args:
        units += size(argument)
    if kwargs:
        for argument in kwargs.values():
            units += size(argument)
    return units


#: What one item costs a filter that calls Python code for it (a key function, a test,
#: a loop in Python): about as long as copying 30 items in C.
_PER_CALL = 32


def _per_item(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    kind = type(value)
    units = (len(value) + 1 if kind is dict or kind is list else size(value)) * _PER_CALL
    return units + _linear(None, args, kwargs) if args or kwargs else units


def _sorting(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    # A key function per item, then n log n comparisons of the keys.
    n = size(value)
    return n * (_PER_CALL + 4 * n.bit_length())


def _round(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    precision = args[0] if args else kwargs.get("precision", 0)
    if isinstance(precision, int) and abs(precision) > MAX_ROUND_DIGITS:
        raise OverflowError(f"round's precision is limited to {MAX_ROUND_DIGITS:,} digits")


#: Bases whose digits Python converts without its own 4,300-digit limit.
_UNLIMITED_BASES = frozenset({0, 2, 4, 8, 16, 32})


def _int(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    base = args[1] if len(args) > 1 else kwargs.get("base", 10)
    if isinstance(value, str) and base in _UNLIMITED_BASES:
        check_bits(math.ceil(len(value) * (math.log2(base) if base else 4)))


#: Filters (and tests) whose cost is not their input's size alone.
_FILTER_COSTS: dict[str, Cost] = {
    "sort": _sorting,
    "dictsort": _sorting,
    "unique": _per_item,
    "max": _per_item,
    "min": _per_item,
    "map": _per_item,
    "select": _per_item,
    "reject": _per_item,
    "selectattr": _per_item,
    "rejectattr": _per_item,
    "compact": _per_item,
    "sum": _per_item,
    "join": _per_item,
    "items": _per_item,
    "in": _linear,
}
#: Filters whose arguments could make them run for hours: checked before every call.
_FILTER_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any]], None]] = {
    "round": _round,
    "int": _int,
}


def filter_cost(name: str) -> Cost | None:
    """What calling a filter or test costs, when it is not its input's :func:`size`."""
    return _FILTER_COSTS.get(name)


def filter_check(name: str) -> Callable[[Any, tuple[Any, ...], Mapping[str, Any]], None] | None:
    """The check of a filter's arguments, for the filters that have one."""
    return _FILTER_CHECKS.get(name)


# -- methods: arguments checked before the call --------------------------------------


def _argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str, default: Any) -> Any:
    return args[0] if args else kwargs.get(name, default)


def _width(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    width = _argument(args, kwargs, "width", 0)
    if isinstance(width, int) and width > MAX_OUTPUT:
        raise _too_long()


def _expandtabs(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    tabsize = _argument(args, kwargs, "tabsize", 8)
    tab = "\t" if isinstance(owner, str) else b"\t"
    if isinstance(tabsize, int) and len(owner) + owner.count(tab) * tabsize > MAX_OUTPUT:
        raise _too_long()


def _translate(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    # str.translate maps each character to a text of any length: chained, each call
    # multiplies the size. Bytes tables map one byte to one byte.
    if not isinstance(owner, str):
        return
    table = _argument(args, kwargs, "table", None)
    if isinstance(table, dict):
        values: Iterable[Any] = table.values()
    elif isinstance(table, (list, tuple, str)):
        values = table
    else:
        raise TypeError("str.translate takes a dict (str.maketrans) or a list")
    longest = max((len(v) for v in values if isinstance(v, str)), default=1)
    if len(owner) * max(longest, 1) > MAX_OUTPUT:
        raise _too_long()


def _to_bytes(owner: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    length = _argument(args, kwargs, "length", 1)
    if isinstance(length, int) and length > MAX_OUTPUT:
        raise OverflowError(f"result would exceed {MAX_OUTPUT:,} bytes")


_TEXT_METHODS: dict[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any]], None]] = {
    "ljust": _width,
    "rjust": _width,
    "center": _width,
    "zfill": _width,
    "expandtabs": _expandtabs,
    "translate": _translate,
}


def check_method_call(owner: Any, name: str, args: tuple[Any, ...], kwargs: Any) -> None:
    """Refuse a call of a text, bytes or integer method whose arguments would build an
    oversized result (checked before it allocates), and charge what it walks."""
    if isinstance(owner, _TEXT):
        check = _TEXT_METHODS.get(name)
        if check is not None:
            check(owner, args, kwargs)
    elif isinstance(owner, int) and name == "to_bytes":
        _to_bytes(owner, args, kwargs)
    charge(_linear(owner, args, kwargs))
