"""Key/value fields: Make's list of ``{key, value}`` pairs (or an object), and the names
they may not use.

Custom traits and properties come in as key/value fields. Their keys must be non-empty
text, each once, and must not clash with the names the app reserves (Segment's reserved
traits, say): matching ignores case, ``_``, ``-`` and spaces, so ``First Name`` clashes
with ``firstName``, and the error names the field to use instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from connector.core.mapping import PLAIN, cached, maybe_json, render_mapping
from connector.errors import DataError
from connector.format.manifest import Parameter, ReservedNames

__all__ = ["clean_keys", "keyvalue", "keyvalue_list", "normalize_name"]


_NAME_FOLD = re.compile(r"[\s_\-]+")


@functools.lru_cache(maxsize=8192)
def normalize_name(name: str) -> str:
    """Fold case and ``_``/``-``/spaces, so ``First Name`` == ``firstName`` == ``first_name``."""
    return _NAME_FOLD.sub("", name).lower()


def keyvalue(spec: Parameter, value: Any, field: str) -> dict[str, Any]:
    """A key/value field given as an object, a list of pairs, or JSON text of either."""
    value = maybe_json(value, (dict, list))
    pairs: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = [_pair(item, i, field) for i, item in enumerate(value)]
    else:
        raise DataError(
            f"field {field!r} must be a list of {{key, value}} or an object, "
            f"got {type(value).__name__}",
            field=field,
        )
    out: dict[str, Any] = {}
    folded = cached(spec.reserved, _folded_reserved) if spec.reserved is not None else None
    for key, item_value in pairs:
        _add_pair(out, spec, folded, key, item_value, field)
    return out


def _pair(item: Any, i: int, field: str) -> tuple[Any, Any]:
    """One ``{key, value}`` item as a pair (a missing value is None)."""
    if not isinstance(item, Mapping) or "key" not in item:
        raise DataError(
            f"field {field!r} item {i} must be an object with 'key' and 'value'", field=field
        )
    return item["key"], item.get("value")


def _add_pair(
    out: dict[str, Any],
    spec: Parameter,
    folded: dict[str, str] | None,
    key: Any,
    value: Any,
    field: str,
) -> None:
    """Add one key/value pair: text keys, each once, none of them reserved."""
    if type(key) is not str or not key.strip():
        raise DataError(f"field {field!r} has an empty or non-text key", field=field)
    if key in out:
        raise DataError(f"field {field!r} has the key {key!r} twice", field=field)
    name = folded.get(normalize_name(key)) if folded is not None else None
    if name is not None:
        assert spec.reserved is not None
        raise _reserved_error(spec.reserved, key, name, field)
    out[key] = value


def keyvalue_list(
    spec: Parameter,
    items: list[Any],
    context: Mapping[str, Any],
    field: str,
    clean: set[str] | None = None,
) -> dict[str, Any]:
    """A list of ``{key, value}`` (Make's key/value fields), rendered as it is read.
    ``clean`` is the parameter's :func:`clean_keys`, when the caller holds it already."""
    out: dict[str, Any] = {}
    if clean is None:
        clean = clean_keys(spec)
    # The usual list: plain pairs whose keys were accepted before, with plain values.
    # Taken in a tight loop; the first item that is anything else, and all after it,
    # go through the full checks below.
    for item in items:
        if type(item) is dict:
            key: Any = item.get("key")
            value: Any = item.get("value")
            kind = type(value)
            if (
                type(key) is str
                and key in clean
                and key not in out
                and "{" not in key
                and (kind in PLAIN and not (kind is str and "{" in value))
            ):
                out[key] = value
                continue
        break
    else:
        return out
    start = len(out)  # each item before this one added exactly one key
    folded = cached(spec.reserved, _folded_reserved) if spec.reserved is not None else None
    for i, item in enumerate(items[start:], start):
        if (type(item) is not dict and not isinstance(item, Mapping)) or "key" not in item:
            item = render_mapping(item, context, f"{field}[{i}]")
        key, item_value = _pair(item, i, field)
        if type(key) is str and "{" in key:
            key = render_mapping(key, context, f"{field}[{i}].key")
        if type(item_value) not in PLAIN or (type(item_value) is str and "{" in item_value):
            item_value = render_mapping(item_value, context, f"{field}[{i}].value")
        # _add_pair's checks, inlined on this per-item hot path (the common case passes
        # all three tests without a call); anything unusual goes through _add_pair.
        if type(key) is str and key in clean and key not in out:
            out[key] = item_value
        else:
            _add_pair(out, spec, folded, key, item_value, field)
            if len(clean) < _CLEAN_LIMIT:
                clean.add(key)  # checked once: the next run's same key skips the check
    return out


#: Keys a key/value parameter already accepted once (non-empty text, not reserved):
#: bounded, per parameter.
_CLEAN_LIMIT = 10_000


def clean_keys(spec: Parameter) -> set[str]:
    """The keys this key/value parameter accepted before (see keyvalue_list)."""
    keys: set[str] = cached(spec, _new_set)
    return keys


def _new_set(spec: Parameter) -> set[str]:
    return set()


def _folded_reserved(reserved: ReservedNames) -> dict[str, str]:
    return {normalize_name(name): name for name in reserved.names}


def _reserved_error(reserved: ReservedNames, key: str, name: str, field: str) -> DataError:
    """``key`` clashes with the reserved ``name``: the error says which field to use."""
    hint = ""
    if reserved.use:
        hint = f"; use the field {reserved.use.replace('{name}', name)!r} instead"
    return DataError(
        f"field {field!r}: key {key!r} clashes with the reserved {reserved.kind} {name!r}{hint}",
        field=field,
    )
