"""Searches: one bundle per item of every page, up to the module's limit.

A search sends its request like an action (same checks, nothing sent on bad input),
then reads pages (:mod:`connector.runs.pages`): each page's items are
``response.iterate``, and the output bundle is rendered once per item with ``item`` in
scope (the item itself by default). Paging stops when ``response.limit`` items are
out (the next page is never asked for), when the pagination's condition says so, or
with an error at the page cap or a repeated request. ``response.merge`` folds all
bundles into one (a profile's traits spread over pages, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.core.prepare import Prepared, render_part, run_scope
from connector.errors import DataError
from connector.runs.pages import pages

if TYPE_CHECKING:
    from connector.core.engine import Engine

__all__ = ["run_search"]


def run_search(engine: Engine, prepared: Prepared) -> list[dict[str, Any]]:
    """The bundles of a prepared search (sync; raises a RunError subclass)."""
    module, conn = prepared.module, prepared.connection
    paging = module.paging
    assert paging is not None
    scope = run_scope(prepared)
    limit = _limit(prepared, scope)
    bundles: list[Any] = []
    for page_scope, items in pages(engine, module, conn, scope, prepared.request):
        for item in items:
            page_scope["item"] = item
            output = render_part(module, "output", module.output, page_scope, conn)
            bundles.extend(output if isinstance(output, list) else [output])
            if limit is not None and len(bundles) >= limit:
                break
        if limit is not None and len(bundles) >= limit:
            del bundles[limit:]
            break
    if paging.merge:
        merged: dict[str, Any] = {}
        for bundle in bundles:
            if isinstance(bundle, Mapping):
                merged.update(bundle)
        bundles = [merged]
    return [conn.redact.data(b if b is not None else {}) for b in bundles]


def _limit(prepared: Prepared, scope: Mapping[str, Any]) -> int | None:
    paging = prepared.module.paging
    assert paging is not None
    if paging.limit is None:
        return None
    value = render_part(prepared.module, "limit", paging.limit, scope, prepared.connection)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if number < 1 or isinstance(value, bool):
        raise DataError(
            f"the limit must be a whole number of 1 or more, got {value!r}",
            field=paging.limit_field,
        )
    return number
