"""Builders' mapped values: rendered over earlier bundles, into fresh plain data.

A builder maps a field with a template over the output of earlier modules
(``{{ webhook.email }}``). :func:`render_mapping` renders every such value, anywhere in a
nested structure, always into fresh containers, so nothing the engine returns aliases
the caller's input. :class:`Values` is the dict checked parameters live in: an absent
key reads as ``None``, so manifest templates can write ``parameters.traits.email``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connector.core.jsondata import loads_strict, too_deep
from connector.errors import DataError
from connector.templating.templates import (
    RENDER_FAILURES,
    compile_template,
    describe_error,
    is_template,
)

__all__ = ["PLAIN", "Values", "cached", "maybe_json", "render_mapping"]


class Values(dict[str, Any]):
    """A dict in which a missing key reads as ``None`` (for templates)."""

    def __missing__(self, key: str) -> None:
        return None


def render_mapping(value: Any, context: Mapping[str, Any], field: str) -> Any:
    """Render a builder's mapped value (templates over earlier bundles) into plain data.

    Containers are always copied (bundles never alias the caller's input); the dotted
    path of a nested value is only built when that value needs rendering.
    """
    kind = type(value)
    if kind is str:
        if "{" not in value or not is_template(value):
            return value
        try:
            return compile_template(value).render(context)
        except RENDER_FAILURES as exc:
            raise DataError(
                f"field {field!r}: mapping could not be rendered: {describe_error(exc)}",
                field=field,
            ) from None
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {
            str(k): v
            if type(v) in PLAIN and not (type(v) is str and "{" in v)
            else render_mapping(v, context, f"{field}.{k}")
            for k, v in value.items()
        }
    if kind is list or isinstance(value, tuple):
        return [
            v
            if type(v) in PLAIN and not (type(v) is str and "{" in v)
            else render_mapping(v, context, f"{field}[{i}]")
            for i, v in enumerate(value)
        ]
    return value


PLAIN = frozenset({str, int, float, bool, type(None)})


_CACHE: dict[tuple[int, Any], tuple[object, Any]] = {}
_CACHE_LIMIT = 4096


def cached(obj: object, build: Any) -> Any:
    """``build(obj)``, computed once per object and builder."""
    key = (id(obj), build)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is obj:
        return hit[1]
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    value = build(obj)
    _CACHE[key] = (obj, value)
    return value


def maybe_json(value: Any, kinds: tuple[type, ...]) -> Any:
    """A mapped JSON text of an object/list is read as that object/list."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            parsed = loads_strict(value)
        except ValueError:
            return value
        if too_deep(parsed):
            return value  # left as text: refused as the wrong type, not crashed on
        if isinstance(parsed, kinds):
            return parsed
    return value
