"""Input checking: render the builder's mappings, coerce, and enforce every rule.

This is the only guard users get: Segment answers 200 even to events it later drops,
so anything wrong must be caught here, before a request exists. Every field is checked,
and every fault found: the :class:`~connector.errors.DataError` lists them all in
``faults`` (a form shows them at once), each with the dotted path of the parameter
(``traits.address.city``, ``customTraits``) and the rule it broke; its ``field`` and
``message`` are the first fault's.

A module's checks are compiled once, when it is loaded, into a :class:`ParameterPlan`
kept on the loaded module: per field, what its spec implies (nested levels, a select's
option levels, key rules) is looked up once, not per run. A plan has one shortcut, for
the commonest clean values (text without a template within its length bounds, finite
numbers, key/value keys accepted before), which skips checks such values would pass:
``ParameterPlan(..., shortcuts=False)`` is the same plan without it, and a property test
holds the two equal on generated manifests and parameters.

A builder's mapping that reads a key the data does not have leaves its field unmapped
(see :mod:`connector.core.mapping`): an optional field is omitted, a required one is a
fault naming the missing path and the keys that do exist. Each value is rendered once:
text that a template rendered is data, never rendered again.

The input mapping is never mutated; the result is a fresh structure of
:class:`Values` dicts in which an absent parameter reads as ``None``, so manifest
templates can write ``parameters.traits.email`` without guarding every level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from math import isfinite
from typing import Any

from connector.core.keyvalue import KeyRules, keyvalue, keyvalue_list, normalize_name
from connector.core.mapping import Unmapped, maybe_json, render_mapping
from connector.core.types import FORMATS, coerce_scalar
from connector.core.values import Values
from connector.errors import DataError, Fault
from connector.format.manifest import Constraint, Option, Parameter, walk_parameters

__all__ = ["ParameterPlan", "normalize_name", "validate_parameters"]


def validate_parameters(
    specs: Sequence[Parameter],
    constraints: Sequence[Constraint],
    raw: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None = None,
) -> Values:
    """Render, coerce and check ``raw`` against ``specs``; return fresh values. For
    one-off checks (a connection's fields): modules keep their compiled plan."""
    return ParameterPlan(specs, constraints).check(raw, context)


class ParameterPlan:
    """One module's parameter checks, compiled once (at load time)."""

    __slots__ = ("constraints", "level")

    def __init__(
        self,
        specs: Sequence[Parameter],
        constraints: Sequence[Constraint] = (),
        *,
        shortcuts: bool = True,
    ) -> None:
        self.level = _Level(specs, shortcuts)
        self.constraints = tuple(constraints)

    def check(
        self, raw: Mapping[str, Any] | None, context: Mapping[str, Any] | None = None
    ) -> Values:
        """Render, coerce and check ``raw``; return fresh values, or raise one DataError
        listing every fault."""
        if raw is None:
            raw = {}
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise DataError(f"parameters must be an object, got {type(raw).__name__}", rule="type")
        faults: list[Fault] = []
        values = _check_level(self.level, raw, context or {}, "", False, faults)
        for constraint in self.constraints:
            fault = _check_constraint(constraint, values, faults)
            if fault is not None:
                faults.append(fault)
        if faults:
            raise DataError.of(faults)
        return values


class _Level:
    """One level of parameters: the names it accepts, and its fields' plans."""

    __slots__ = ("entries", "known")

    def __init__(self, specs: Sequence[Parameter], shortcuts: bool) -> None:
        #: Every name the level accepts, its select options' nested fields included.
        self.known = frozenset(p.name for p in walk_parameters(specs))
        fields = [_Field(spec, shortcuts) for spec in specs]
        #: Per field, what the loop over a level reads for every field (unpacked from a
        #: tuple: a message's check is mostly this loop): name, whether an absent value
        #: is skipped, the shortcut's kind and data (see _shortcut), and the field.
        self.entries = tuple(
            (f.name, f.skippable, *(_shortcut(f) if shortcuts else _NO_SHORTCUT), f) for f in fields
        )


class _Field:
    """One parameter's checks: what its spec implies, worked out once."""

    __slots__ = (
        "has_nested",
        "has_rules",
        "items",
        "keys",
        "kind",
        "level",
        "name",
        "optional_collection",
        "options",
        "skippable",
        "spec",
    )

    def __init__(self, spec: Parameter, shortcuts: bool) -> None:
        self.spec = spec
        self.name = spec.name
        self.kind = spec.type
        #: An absent value can be skipped: optional, no default, not a collection.
        self.skippable = not spec.required and spec.default is None and spec.type != "collection"
        #: An optional collection: absent, it reads as an empty one.
        self.optional_collection = (
            spec.type == "collection" and not spec.required and spec.default is None
        )
        self.keys = KeyRules(spec, shortcuts=shortcuts) if spec.type == "keyvalue" else None
        self.has_rules = bool(spec.rules)
        self.level = _Level(spec.fields or (), shortcuts) if spec.type == "collection" else None
        self.items = _Field(spec.items, shortcuts) if spec.items is not None else None
        #: A select's options, each with the level of fields it adds (or None).
        self.options: tuple[tuple[Option, _Level | None], ...] = tuple(
            (option, _Level(option.nested, shortcuts) if option.nested else None)
            for option in spec.options or ()
        )
        self.has_nested = any(level is not None for _, level in self.options)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list) and not value)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check_level(
    level: _Level,
    raw: Mapping[str, Any],
    context: Mapping[str, Any],
    prefix: str,
    rendered: bool,
    faults: list[Fault],
) -> Values:
    """Check one level of ``raw`` into fresh Values; faults are added to ``faults``.
    ``rendered``: ``raw`` came out of a template, so it is data, never rendered."""
    known = level.known
    if not known.issuperset(raw):
        expected = ", ".join(sorted(known)) or "(none)"
        for key in raw:
            if key not in known:
                field = _join(prefix, str(key))
                message = f"unknown field {field!r}, expected one of: {expected}"
                faults.append(Fault(field, "additionalProperties", message))
    out = Values()
    _fill(level, raw, context, prefix, rendered, out, faults)
    return out


def _fill(
    level: _Level,
    raw: Mapping[str, Any],
    context: Mapping[str, Any],
    prefix: str,
    rendered: bool,
    out: Values,
    faults: list[Fault],
) -> None:
    """Check each field of a level into ``out``; a select's chosen option adds its own
    fields, read from the same level."""
    get = raw.get
    for name, skippable, shortcut, low, high, extra, f in level.entries:
        raw_value = get(name)
        if raw_value is None:
            if skippable:
                continue
            if f.optional_collection:
                out[name] = _empty_collection(f.spec)
                continue
        elif shortcut:
            # The shortcut (see _shortcut): values that need no check but these.
            kind = type(raw_value)
            if shortcut == _TEXT:
                if kind is str and "{" not in raw_value and low <= len(raw_value) <= high:
                    if extra is None:
                        out[name] = raw_value
                        continue
                    normalised = extra(raw_value)
                    if normalised is not None:
                        out[name] = normalised
                        continue
            elif shortcut == _NUMBER:
                if kind is int or (kind is float and low and isfinite(raw_value)):
                    out[name] = raw_value
                    continue
            elif kind is list and raw_value:  # _PAIRS
                pairs = extra(raw_value)
                if pairs is not None:
                    out[name] = pairs
                    continue
        try:
            field = f"{prefix}.{name}" if prefix else name
            value = _check_value(f, raw_value, context, field, rendered)
        except DataError as exc:
            faults.extend(exc.faults)
            continue
        if value is not None:
            out[name] = value
        elif f.kind == "collection":
            out[name] = _empty_collection(f.spec)
        if f.has_nested and value is not None:
            nested = _chosen_option(f, value)[1]
            if nested is not None:
                _fill(nested, raw, context, prefix, rendered, out, faults)


#: Shortcut kinds: none, text, a number (``low``: floats too), key/value pairs.
_TEXT, _NUMBER, _PAIRS = 1, 2, 3
_NO_SHORTCUT: tuple[int, int, int, Any] = (0, 0, 0, None)


def _shortcut(f: _Field) -> tuple[int, int, int, Any]:
    """The shortcut for the commonest clean values of a field, worked out once:
    ``(kind, low, high, extra)``, which :func:`_fill` reads inline.

    It takes only values that need nothing but the checks it makes and leaves anything
    else to the full path, so results are identical, only cheaper for clean input:
    text that holds no template, within ``low``..``high`` characters (``extra``: its
    format's check, the value taken when it passes); an int, or a finite float where
    ``low`` is 1 (numbers, not integers); a list of plain key/value pairs whose keys
    were accepted before (``extra``: :meth:`KeyRules.clean_pairs`).
    """
    spec = f.spec
    other_rules = spec.pattern is not None or spec.minimum is not None or (spec.maximum is not None)
    if spec.type == "text" and not other_rules:
        low = max(spec.min_length or 0, 1)
        high = spec.max_length if spec.max_length is not None else 2**62
        check = FORMATS[spec.format][0] if spec.format is not None else None
        return (_TEXT, low, high, check)
    if spec.type in ("number", "integer") and not (other_rules or spec.format):
        return (_NUMBER, int(spec.type == "number"), 0, None)
    if f.keys is not None:
        return (_PAIRS, 0, 0, f.keys.clean_pairs)
    return _NO_SHORTCUT


def _empty_collection(spec: Parameter) -> Values:
    """An absent collection reads like an empty one: nested collections and defaults."""
    out = Values()
    for child in spec.fields or ():
        if child.type == "collection":
            out[child.name] = _empty_collection(child)
        elif child.default is not None:
            out[child.name] = child.default
    return out


def _check_value(
    f: _Field, value: Any, context: Mapping[str, Any], field: str, rendered: bool
) -> Any:
    kind = f.kind
    if not rendered:
        # Structures whose parts the plan checks are rendered part by part (each part
        # once, and a part reading a missing key is that part's to omit or refuse).
        if kind == "keyvalue" and type(value) is list and value:
            assert f.keys is not None
            return keyvalue_list(f.keys, value, context, field)
        if kind == "collection" and isinstance(value, Mapping):
            return _collection(f, value, context, field, False)
        if kind == "array" and f.items is not None and isinstance(value, list | tuple) and value:
            return _array(f, value, context, field, False)
        given = value
        value = render_mapping(value, context, field)
        # Text that was no template is still the builder's (JSON text of an object may
        # map its parts); anything rendered is data.
        rendered = not (type(given) is str and value is given)
    spec = f.spec
    if type(value) is Unmapped or _is_empty(value):
        if spec.default is not None:
            value = spec.default
        elif spec.required:
            label = f" ({spec.label})" if spec.label else ""
            message = f"field {field!r}{label} is required"
            if type(value) is Unmapped:
                message += f", but its mapping reads {value.describe()}"
            raise DataError(message, field=field, rule="required")
        else:
            return None
    if kind == "collection":
        return _collection(f, value, context, field, True)
    if kind == "array":
        return _array(f, value, context, field, True)
    if kind == "keyvalue":
        assert f.keys is not None
        return keyvalue(f.keys, value, field)
    if kind == "select":
        return _chosen_option(f, value, field)[0].value
    coerced = coerce_scalar(kind, value, field)
    if not f.has_rules:
        return coerced
    return _check_rules(spec, coerced, field)


def _collection(
    f: _Field, value: Any, context: Mapping[str, Any], field: str, rendered: bool
) -> Values:
    value = maybe_json(value, (dict,))
    if not isinstance(value, Mapping):
        raise DataError(
            f"field {field!r} must be an object, got {type(value).__name__}",
            field=field,
            rule="type",
        )
    assert f.level is not None
    faults: list[Fault] = []
    out = _check_level(f.level, value, context, field, rendered, faults)
    if faults:
        raise DataError.of(faults)
    return out


def _array(
    f: _Field, value: Any, context: Mapping[str, Any], field: str, rendered: bool
) -> list[Any]:
    value = maybe_json(value, (list,))
    spec = f.spec
    if not isinstance(value, list | tuple):
        raise DataError(
            f"field {field!r} must be a list, got {type(value).__name__}", field=field, rule="type"
        )
    if spec.min_items is not None and len(value) < spec.min_items:
        raise DataError(
            f"field {field!r} needs at least {spec.min_items} items", field=field, rule="minItems"
        )
    if spec.max_items is not None and len(value) > spec.max_items:
        raise DataError(
            f"field {field!r} allows at most {spec.max_items} items", field=field, rule="maxItems"
        )
    items = f.items
    if items is None:
        return list(value)
    out = []
    faults: list[Fault] = []
    for i, item in enumerate(value):
        try:
            coerced = _check_value(items, item, context, f"{field}[{i}]", rendered)
        except DataError as exc:
            faults.extend(exc.faults)
            continue
        if coerced is not None:
            out.append(coerced)
    if faults:
        raise DataError.of(faults)
    return out


def _chosen_option(f: _Field, value: Any, field: str | None = None) -> tuple[Option, _Level | None]:
    for option, level in f.options:
        if isinstance(value, bool) or isinstance(option.value, bool):
            # True == 1 in Python: a boolean only ever picks (and is) a boolean option.
            if value is option.value:
                return option, level
            continue
        if value == option.value or str(value) == str(option.value):
            return option, level
    expected = ", ".join(repr(option.value) for option, _ in f.options)
    name = field or f.name
    raise DataError(
        f"field {name!r} has unknown value {value!r}, expected one of: {expected}",
        field=name,
        rule="enum",
    )


def _check_rules(spec: Parameter, value: Any, field: str) -> Any:
    """Enforce length, pattern, range and format rules; return the normalised value."""
    if isinstance(value, str):
        if spec.min_length is not None and len(value) < spec.min_length:
            raise DataError(
                f"field {field!r} must be at least {spec.min_length} characters",
                field=field,
                rule="minLength",
            )
        if spec.max_length is not None and len(value) > spec.max_length:
            raise DataError(
                f"field {field!r} must be at most {spec.max_length} characters",
                field=field,
                rule="maxLength",
            )
        if spec.pattern is not None and not re.search(spec.pattern, value):
            raise DataError(
                f"field {field!r} does not match the pattern {spec.pattern!r}",
                field=field,
                rule="pattern",
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise DataError(
                f"field {field!r} must be at least {spec.minimum:g}", field=field, rule="minimum"
            )
        if spec.maximum is not None and value > spec.maximum:
            raise DataError(
                f"field {field!r} must be at most {spec.maximum:g}", field=field, rule="maximum"
            )
    if spec.format is not None:
        check, expected = FORMATS[spec.format]
        normalised = check(value)
        if normalised is None:
            raise DataError(
                f"field {field!r} must be {expected}, got {value!r}", field=field, rule="format"
            )
        return normalised
    return value


def _check_constraint(
    constraint: Constraint, values: Mapping[str, Any], faults: list[Fault]
) -> Fault | None:
    """The constraint's fault, if none of its parameters has a value. Checked only when
    each of them is valid on its own: one with a fault already has its message."""
    names = constraint.one_of_required
    for name in names:
        value = values.get(name)
        if value is not None and value != "" and value != []:  # _is_empty, inlined
            return None
    faulty = {_top_name(fault.field) for fault in faults}
    if faulty.intersection(names):
        return None
    listed = " or ".join(repr(n) for n in names)
    message = f"one of {listed} is required"
    if constraint.message:
        message = f"{message}: {constraint.message}"
    return Fault(names[0], "oneOfRequired", message)


def _top_name(field: str | None) -> str | None:
    """``traits`` of ``traits.address.city`` or ``traits[2]``."""
    if field is None:
        return None
    return re.split(r"[.\[]", field, maxsplit=1)[0]
