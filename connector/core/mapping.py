"""Builders' mapped values: rendered over earlier bundles, into fresh plain data.

A builder maps a field with a template over the output of earlier modules
(``{{ webhook.email }}``). :func:`render_mapping` renders every such value, anywhere in a
nested structure, always into fresh containers, so nothing the engine returns aliases
the caller's input. ``Values`` (core.values) is the dict checked parameters live in: an absent
key reads as ``None``, so manifest templates can write ``parameters.traits.email``.

A mapping that reads a key the data does not have (``{{ webhook.badge.missing }}``)
leaves its value *unmapped*, as in Make: the data of earlier modules varies from run to
run, and an optional field is then simply not sent. :func:`render_mapping` returns an
:class:`Unmapped` for such a value (validation omits an optional field and names the
missing path for a required one); inside an object or list mapped as a whole, the entry
or item is left out. Any other failure of a builder's template (bad syntax, an unknown
filter, a sandbox limit) is a :class:`~connector.errors.DataError`. Manifests' own
templates are not rendered here: a fault in one stays an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import UndefinedError

from connector.core.jsondata import loads_strict, too_deep
from connector.errors import DataError
from connector.templating.templates import (
    RENDER_FAILURES,
    compile_template,
    describe_error,
    is_template,
    referenced_names,
)

__all__ = ["PLAIN", "Unmapped", "maybe_json", "render_mapping"]


class Unmapped:
    """A mapped value whose template read a key the data does not have: ``path`` is
    the full path read (``webhook.badge.missing``), ``keys`` the keys its parent does
    have (None when the parent is null)."""

    __slots__ = ("keys", "path")

    def __init__(self, path: str, keys: tuple[str, ...] | None) -> None:
        self.path = path
        self.keys = keys

    def describe(self) -> str:
        """``'webhook.badge.missing', which the data does not have (webhook.badge has:
        id, name)``, for messages."""
        parent = self.path.rpartition(".")[0]
        if self.keys is None:
            found = f"{parent} is null"
        elif parent:
            found = f"{parent} has: {', '.join(self.keys) or '(no keys)'}"
        else:
            found = f"the data has: {', '.join(self.keys) or '(nothing)'}"
        return f"{self.path!r}, which the data does not have ({found})"

    def __repr__(self) -> str:
        return f"Unmapped({self.path!r})"


def render_mapping(value: Any, context: Mapping[str, Any], field: str) -> Any:
    """Render a builder's mapped value (templates over earlier bundles) into plain data.

    Containers are always copied (bundles never alias the caller's input); the dotted
    path of a nested value is only built when that value needs rendering. A template
    that reads a missing key gives an :class:`Unmapped` (see the module's docstring);
    inside a container, its entry or item is left out.
    """
    kind = type(value)
    if kind is str:
        if "{" not in value or not is_template(value):
            return value
        template = None
        try:
            template = compile_template(value)
            return template.render(context)
        except RENDER_FAILURES as exc:
            if template is not None and isinstance(exc, UndefinedError):
                unmapped = _missing_key(template, context)
                if unmapped is not None:
                    return unmapped
            raise DataError(
                f"field {field!r}: mapping could not be rendered: {describe_error(exc)}",
                field=field,
                rule="mapping",
            ) from None
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        out = {
            str(k): v
            if type(v) in PLAIN and not (type(v) is str and "{" in v)
            else render_mapping(v, context, f"{field}.{k}")
            for k, v in value.items()
        }
        if any(type(v) is Unmapped for v in out.values()):
            return {k: v for k, v in out.items() if type(v) is not Unmapped}
        return out
    if kind is list or isinstance(value, tuple):
        items = [
            v
            if type(v) in PLAIN and not (type(v) is str and "{" in v)
            else render_mapping(v, context, f"{field}[{i}]")
            for i, v in enumerate(value)
        ]
        if any(type(v) is Unmapped for v in items):
            return [v for v in items if type(v) is not Unmapped]
        return items
    return value


PLAIN = frozenset({str, int, float, bool, type(None)})


def _missing_key(template: Any, context: Mapping[str, Any]) -> Unmapped | None:
    """The first static path of ``template`` (``webhook.badge.missing``) that leads to
    a key the data does not have, or through a null; None when every path exists (the
    template failed for another reason, which stays an error)."""
    for chain in referenced_names(template):
        node: Any = context
        for depth, name in enumerate(chain):
            if node is None:
                return Unmapped(".".join(chain[: depth + 1]), None)
            if not isinstance(node, Mapping):
                break  # an attribute of text, a list, a number: not a missing key
            if name not in node:
                if depth and hasattr(node, name):
                    break  # a method of the mapping (``items``), not a key
                return Unmapped(".".join(chain[: depth + 1]), tuple(sorted(map(str, node))))
            node = node[name]
    return None


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
