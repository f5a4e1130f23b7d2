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

from connector.core.mapping import PLAIN, Unmapped, maybe_json, render_mapping
from connector.errors import DataError, Fault
from connector.format.manifest import Parameter, ReservedNames

__all__ = ["KeyRules", "keyvalue", "keyvalue_list", "normalize_name"]


_NAME_FOLD = re.compile(r"[\s_\-]+")


@functools.lru_cache(maxsize=8192)
def normalize_name(name: str) -> str:
    """Fold case and ``_``/``-``/spaces, so ``First Name`` == ``firstName`` == ``first_name``."""
    return _NAME_FOLD.sub("", name).lower()


#: Keys one key/value parameter remembers as accepted: bounded, per parameter.
_ACCEPTED_LIMIT = 10_000


class KeyRules:
    """What one key/value parameter checks its keys against, built with the module's
    parameter plan (see :mod:`connector.core.validation`): its reserved names, folded
    once, and the keys it has accepted before.

    A key is accepted once it passed every check (non-empty text, not reserved); those
    checks depend on the key alone, so a key seen again skips them. ``accepted`` is None
    when that shortcut is off (the plan's interpreted form, which tests compare with).
    """

    __slots__ = ("accepted", "folded", "spec")

    def __init__(self, spec: Parameter, *, shortcuts: bool = True) -> None:
        self.spec = spec
        reserved = spec.reserved
        self.folded = {normalize_name(name): name for name in reserved.names} if reserved else None
        self.accepted: set[str] | None = set() if shortcuts else None

    def clean_pairs(self, items: list[Any]) -> dict[str, Any] | None:
        """The usual list, taken in a tight loop: plain ``{key, value}`` pairs whose
        keys were accepted before, each once, with plain values. None for anything
        else, which then takes the full checks (:func:`keyvalue_list`)."""
        accepted = self.accepted
        if accepted is None:
            return None
        out: dict[str, Any] = {}
        try:
            for item in items:
                if type(item) is not dict:
                    return None
                key: Any = item["key"]  # absent: KeyError, the full checks say so
                value: Any = item["value"]  # absent: the full checks read None
                kind = type(value)
                if kind is str:
                    if "{" in value:
                        return None
                elif kind not in PLAIN:
                    return None
                if type(key) is str and key in accepted and key not in out and "{" not in key:
                    out[key] = value
                else:
                    return None
        except KeyError:
            return None
        return out

    def remember(self, key: str) -> None:
        accepted = self.accepted
        if accepted is not None and len(accepted) < _ACCEPTED_LIMIT:
            accepted.add(key)


def keyvalue(rules: KeyRules, value: Any, field: str) -> dict[str, Any]:
    """A key/value field given as an object, a list of pairs, or JSON text of either
    (already rendered). Every bad pair is reported, in one DataError."""
    value = maybe_json(value, (dict, list))
    out: dict[str, Any] = {}
    faults: list[Fault] = []
    if isinstance(value, Mapping):
        for key, item_value in value.items():
            _add_pair(out, rules, key, item_value, field, faults)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            pair = _pair(item, i, field, faults)
            if pair is not None:
                _add_pair(out, rules, pair[0], pair[1], field, faults)
    else:
        raise DataError(
            f"field {field!r} must be a list of {{key, value}} or an object, "
            f"got {type(value).__name__}",
            field=field,
            rule="type",
        )
    if faults:
        raise DataError.of(faults)
    return out


def _pair(item: Any, i: int, field: str, faults: list[Fault]) -> tuple[Any, Any] | None:
    """One ``{key, value}`` item as a pair (a missing value is None); None, with a
    fault, for anything else."""
    if not isinstance(item, Mapping) or "key" not in item:
        message = f"field {field!r} item {i} must be an object with 'key' and 'value'"
        faults.append(Fault(field, "type", message))
        return None
    return item["key"], item.get("value")


def _add_pair(
    out: dict[str, Any],
    rules: KeyRules,
    key: Any,
    value: Any,
    field: str,
    faults: list[Fault],
) -> None:
    """Add one key/value pair: text keys, each once, none of them reserved."""
    if type(key) is not str or not key.strip():
        faults.append(Fault(field, "type", f"field {field!r} has an empty or non-text key"))
        return
    if key in out:
        faults.append(Fault(field, "uniqueKeys", f"field {field!r} has the key {key!r} twice"))
        return
    folded = rules.folded
    name = folded.get(normalize_name(key)) if folded is not None else None
    if name is not None:
        assert rules.spec.reserved is not None
        faults.append(Fault(field, "reserved", _reserved(rules.spec.reserved, key, name, field)))
        return
    out[key] = value
    rules.remember(key)


def keyvalue_list(
    rules: KeyRules, items: list[Any], context: Mapping[str, Any], field: str
) -> dict[str, Any]:
    """A list of ``{key, value}`` (Make's key/value fields), rendered as it is read. A
    pair whose key or value reads a missing key of the data is left out (unmapped)."""
    out: dict[str, Any] = {}
    accepted = rules.accepted
    faults: list[Fault] = []
    for i, item in enumerate(items):
        try:
            pair = _rendered_pair(item, i, context, field, faults)
        except DataError as exc:
            faults.extend(exc.faults)
            continue
        if pair is None:
            continue
        key, item_value = pair
        if accepted is not None and type(key) is str and key in accepted and key not in out:
            out[key] = item_value  # _add_pair's checks, passed by this key before
        else:
            _add_pair(out, rules, key, item_value, field, faults)
    if faults:
        raise DataError.of(faults)
    return out


def _rendered_pair(
    item: Any, i: int, context: Mapping[str, Any], field: str, faults: list[Fault]
) -> tuple[Any, Any] | None:
    """Item ``i`` of a key/value list, rendered: its pair, or None when it is left out
    (unmapped) or faulty (with a fault added)."""
    if (type(item) is not dict and not isinstance(item, Mapping)) or "key" not in item:
        item = render_mapping(item, context, f"{field}[{i}]")
        if type(item) is Unmapped:
            return None
    pair = _pair(item, i, field, faults)
    if pair is None:
        return None
    key, value = pair
    if type(key) is str and "{" in key:
        key = render_mapping(key, context, f"{field}[{i}].key")
    if type(value) not in PLAIN or (type(value) is str and "{" in value):
        value = render_mapping(value, context, f"{field}[{i}].value")
    if type(key) is Unmapped or type(value) is Unmapped:
        return None
    return key, value


def _reserved(reserved: ReservedNames, key: str, name: str, field: str) -> str:
    """``key`` clashes with the reserved ``name``: the message says which field to use."""
    hint = ""
    if reserved.use:
        hint = f"; use the field {reserved.use.replace('{name}', name)!r} instead"
    return f"field {field!r}: key {key!r} clashes with the reserved {reserved.kind} {name!r}{hint}"
