"""Input checking: render the builder's mappings, coerce, and enforce every rule.

This is the only guard users get: Segment answers 200 even to events it later drops,
so anything wrong must be caught here, before a request exists. The first fault found
raises a :class:`~connector.errors.DataError` whose ``field`` is the dotted path of the
parameter (``traits.address.city``, ``customTraits``) and whose message names the rule.

The input mapping is never mutated; the result is a fresh structure of
:class:`Values` dicts in which an absent parameter reads as ``None``, so manifest
templates can write ``parameters.traits.email`` without guarding every level.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from connector.core.keyvalue import clean_keys, keyvalue, keyvalue_list, normalize_name
from connector.core.mapping import Values, cached, maybe_json, render_mapping
from connector.core.types import FORMATS, coerce_scalar
from connector.errors import DataError
from connector.format.manifest import Constraint, Option, Parameter, walk_parameters

__all__ = ["Values", "normalize_name", "render_mapping", "validate_parameters"]


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list) and not value)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def validate_parameters(
    specs: Sequence[Parameter],
    constraints: Sequence[Constraint],
    raw: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None = None,
) -> Values:
    """Render, coerce and check ``raw`` against ``specs``; return fresh values."""
    if raw is None:
        raw = {}
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise DataError(f"parameters must be an object, got {type(raw).__name__}")
    values = _validate_level(specs, raw, context or {}, prefix="")
    for constraint in constraints:
        _check_constraint(constraint, values)
    return values


class _LevelPlan:
    """What one level of parameters needs at run time, computed once per level."""

    __slots__ = ("entries", "fill", "known")

    def __init__(self, specs: Sequence[Parameter]) -> None:
        #: Every name the level accepts, its select options' nested fields included.
        self.known = frozenset(p.name for p in walk_parameters(specs))
        #: Per field: name, spec, whether an absent value can be skipped (optional, no
        #: default, not a collection), whether it is an optional collection (absent reads
        #: as an empty one), a fast validator for the commonest clean values (or None),
        #: and whether it is a select with option-dependent fields.
        self.entries = tuple(
            (
                s.name,
                s,
                not s.required and s.default is None and s.type != "collection",
                s.type == "collection" and not s.required and s.default is None,
                _fast_validator(s),
                any(option.nested for option in s.options or ()),
            )
            for s in specs
        )
        #: The level's checks as one generated function (see _generate_fill), or the
        #: generic loop when the level has option-dependent fields.
        self.fill: Callable[[Mapping[str, Any], Mapping[str, Any], str, Values], None] = (
            _generate_fill(self) or functools.partial(_fill, self)
        )


def _validate_level(
    specs: Sequence[Parameter], raw: Mapping[str, Any], context: Mapping[str, Any], prefix: str
) -> Values:
    plan: _LevelPlan = cached(specs, _LevelPlan)
    known = plan.known
    if not known.issuperset(raw):
        for key in raw:
            if key not in known:
                expected = ", ".join(sorted(known)) or "(none)"
                field = _join(prefix, str(key))
                raise DataError(
                    f"unknown field {field!r}, expected one of: {expected}", field=field
                )
    out = Values()
    plan.fill(raw, context, prefix, out)
    return out


def _fill(
    plan: _LevelPlan,
    raw: Mapping[str, Any],
    context: Mapping[str, Any],
    prefix: str,
    out: Values,
) -> None:
    """Check each field of a level into ``out``; a select's chosen option adds its own
    fields, read from the same level."""
    get = raw.get
    for name, spec, skippable, optional_collection, fast, has_nested in plan.entries:
        raw_value = get(name)
        if raw_value is None:
            if skippable:
                continue
            if optional_collection:
                out[name] = _empty_collection(spec)
                continue
        elif fast is not None:
            value = fast(raw_value)
            if value is not _SLOW:
                out[name] = value
                continue
        value = _validate_value(spec, raw_value, context, f"{prefix}.{name}" if prefix else name)
        if value is not None:
            out[name] = value
        elif spec.type == "collection":
            out[name] = _empty_collection(spec)
        if has_nested and value is not None:
            nested = _chosen_option(spec, value).nested
            if nested:
                _fill(cached(nested, _LevelPlan), raw, context, prefix, out)


_SLOW = object()


def _generate_fill(plan: _LevelPlan) -> Callable[..., None] | None:
    """:func:`_fill` for one level, unrolled into straight-line Python.

    Same steps, same order, same calls for anything but the commonest clean values
    (text without a template within its length bounds, finite numbers, lists of
    key/value pairs), which are checked inline: the loop over a level's entries, with
    its tuple unpacking and a validator call per field, was a third of checking a
    message. A level with option-dependent fields keeps the loop (returns None).
    Field names only ever appear as ``repr`` literals; specs are bound by number.
    """
    env: dict[str, Any] = {
        "_validate_value": _validate_value,
        "_empty_collection": _empty_collection,
        "_keyvalue_list": keyvalue_list,
        "_isfinite": math.isfinite,
    }
    lines = ["def fill(raw, context, prefix, out):", "    get = raw.get"]
    for i, (name, spec, skippable, optional_collection, _, has_nested) in enumerate(plan.entries):
        if has_nested:
            return None
        env[f"_s{i}"] = spec
        key = repr(name)
        field = f"(prefix + '.' + {key} if prefix else {key})"
        slow = [
            f"value = _validate_value(_s{i}, v, context, {field})",
            "if value is not None:",
            f"    out[{key}] = value",
            *(
                ["else:", f"    out[{key}] = _empty_collection(_s{i})"]
                if spec.type == "collection"
                else []
            ),
        ]
        lines.append(f"    v = get({key})")
        lines.append("    if v is None:")
        if skippable:
            lines.append("        pass")
        elif optional_collection:
            lines.append(f"        out[{key}] = _empty_collection(_s{i})")
        else:
            lines += ["        " + line for line in slow]
        lines.append("    else:")
        if spec.type == "keyvalue":
            lines.append("        if type(v) is list and v:")
            env[f"_k{i}"] = clean_keys(spec)
            lines.append(
                f"            out[{key}] = _keyvalue_list(_s{i}, v, context, {field}, _k{i})"
            )
            lines.append("        else:")
            lines += ["            " + line for line in slow]
        elif (shape := _fast_shape(spec)) is not None:
            kind, low, high, check = shape
            value = "v"
            if kind == "text":
                test = f"type(v) is str and '{{' not in v and {low} <= len(v) <= {high}"
                if check is not None:
                    env[f"_c{i}"] = check
                    test += f" and (n := _c{i}(v)) is not None"
                    value = "n"
            elif kind == "integer":
                test = "type(v) is int"
            else:
                test = "type(v) is int or (type(v) is float and _isfinite(v))"
            lines.append(f"        if {test}:")
            lines.append(f"            out[{key}] = {value}")
            lines.append("        else:")
            lines += ["            " + line for line in slow]
        else:
            lines += ["        " + line for line in slow]
    namespace = dict(env)
    exec(compile("\n".join(lines), "<connector level check>", "exec"), namespace)
    fill: Callable[..., None] = namespace["fill"]
    return fill


def _fast_shape(spec: Parameter) -> tuple[str, int, int, Callable[[str], Any] | None] | None:
    """Which clean values of a field need no check but the ones of the fast path:
    ``("text", min length, max length, format check or None)``, ``("number", ...)`` or
    ``("integer", ...)``; None when every value takes the full path."""
    other_rules = spec.pattern is not None or spec.minimum is not None or (spec.maximum is not None)
    if spec.type == "text" and not other_rules:
        low = max(spec.min_length or 0, 1)
        high = spec.max_length if spec.max_length is not None else 2**62
        check = FORMATS[spec.format][0] if spec.format is not None else None
        return ("text", low, high, check)
    if spec.type in ("number", "integer") and not (other_rules or spec.format):
        return (spec.type, 0, 0, None)
    return None


def _fast_validator(spec: Parameter) -> Callable[[Any], Any] | None:
    """A validator for the commonest clean values of a field, built once per field.

    It accepts only values that need nothing but the checks it makes (text that holds no
    template, a finite number) and returns ``_SLOW`` for anything else, which then goes
    through the full path: results are identical, only cheaper for clean input.
    """
    shape = _fast_shape(spec)
    if shape is None:
        return None
    kind, low, high, check = shape
    if kind == "text":

        def text(value: Any) -> Any:
            if type(value) is str and "{" not in value and low <= len(value) <= high:
                if check is None:
                    return value
                normalised = check(value)
                return normalised if normalised is not None else _SLOW
            return _SLOW

        return text
    integer = kind == "integer"

    def number(value: Any) -> Any:
        kind = type(value)
        if kind is int or (kind is float and not integer and math.isfinite(value)):
            return value
        return _SLOW

    return number


def _empty_collection(spec: Parameter) -> Values:
    """An absent collection reads like an empty one: nested collections and defaults."""
    out = Values()
    for child in spec.fields or ():
        if child.type == "collection":
            out[child.name] = _empty_collection(child)
        elif child.default is not None:
            out[child.name] = child.default
    return out


def _validate_value(spec: Parameter, value: Any, context: Mapping[str, Any], field: str) -> Any:
    kind = spec.type
    if kind == "keyvalue" and type(value) is list and value:
        # Key/value lists are rendered item by item inside _keyvalue: no extra copy.
        return keyvalue_list(spec, value, context, field)
    value = render_mapping(value, context, field)
    if _is_empty(value):
        if spec.default is not None:
            value = spec.default
        elif spec.required:
            label = f" ({spec.label})" if spec.label else ""
            raise DataError(f"field {field!r}{label} is required", field=field)
        else:
            return None
    if spec.type == "collection":
        return _collection(spec, value, context, field)
    if spec.type == "array":
        return _array(spec, value, context, field)
    if spec.type == "keyvalue":
        return keyvalue(spec, value, field)
    if spec.type == "select":
        return _chosen_option(spec, value, field).value
    coerced = coerce_scalar(spec.type, value, field)
    if not cached(spec, _has_rules):
        return coerced
    return _check_rules(spec, coerced, field)


def _has_rules(spec: Parameter) -> bool:
    return bool(spec.rules)


def _collection(spec: Parameter, value: Any, context: Mapping[str, Any], field: str) -> Values:
    value = maybe_json(value, (dict,))
    if not isinstance(value, Mapping):
        raise DataError(
            f"field {field!r} must be an object, got {type(value).__name__}", field=field
        )
    return _validate_level(spec.fields or [], value, context, field)


def _array(spec: Parameter, value: Any, context: Mapping[str, Any], field: str) -> list[Any]:
    value = maybe_json(value, (list,))
    if not isinstance(value, list | tuple):
        raise DataError(f"field {field!r} must be a list, got {type(value).__name__}", field=field)
    if spec.min_items is not None and len(value) < spec.min_items:
        raise DataError(f"field {field!r} needs at least {spec.min_items} items", field=field)
    if spec.max_items is not None and len(value) > spec.max_items:
        raise DataError(f"field {field!r} allows at most {spec.max_items} items", field=field)
    if spec.items is None:
        return list(value)
    out = []
    for i, item in enumerate(value):
        coerced = _validate_value(spec.items, item, context, f"{field}[{i}]")
        if coerced is not None:
            out.append(coerced)
    return out


def _chosen_option(spec: Parameter, value: Any, field: str | None = None) -> Option:
    for option in spec.options or ():
        if isinstance(value, bool) or isinstance(option.value, bool):
            # True == 1 in Python: a boolean only ever picks (and is) a boolean option.
            if value is option.value:
                return option
            continue
        if value == option.value or str(value) == str(option.value):
            return option
    expected = ", ".join(repr(o.value) for o in spec.options or ())
    name = field or spec.name
    raise DataError(
        f"field {name!r} has unknown value {value!r}, expected one of: {expected}", field=name
    )


def _check_rules(spec: Parameter, value: Any, field: str) -> Any:
    """Enforce length, pattern, range and format rules; return the normalised value."""
    if isinstance(value, str):
        if spec.min_length is not None and len(value) < spec.min_length:
            raise DataError(
                f"field {field!r} must be at least {spec.min_length} characters", field=field
            )
        if spec.max_length is not None and len(value) > spec.max_length:
            raise DataError(
                f"field {field!r} must be at most {spec.max_length} characters", field=field
            )
        if spec.pattern is not None and not re.search(spec.pattern, value):
            raise DataError(
                f"field {field!r} does not match the pattern {spec.pattern!r}", field=field
            )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise DataError(f"field {field!r} must be at least {spec.minimum:g}", field=field)
        if spec.maximum is not None and value > spec.maximum:
            raise DataError(f"field {field!r} must be at most {spec.maximum:g}", field=field)
    if spec.format is not None:
        check, expected = FORMATS[spec.format]
        normalised = check(value)
        if normalised is None:
            raise DataError(f"field {field!r} must be {expected}, got {value!r}", field=field)
        return normalised
    return value


def _check_constraint(constraint: Constraint, values: Mapping[str, Any]) -> None:
    names = constraint.one_of_required
    for name in names:
        if not _is_empty(values.get(name)):
            return
    listed = " or ".join(repr(n) for n in names)
    message = f"one of {listed} is required"
    if constraint.message:
        message = f"{message}: {constraint.message}"
    raise DataError(message, field=names[0])
