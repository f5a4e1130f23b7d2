"""Pages of a search or polling trigger: send, check, iterate, and ask for the next.

Make's pagination: after each page, ``pagination.condition`` (the previous page's
``response`` and the page number ``page`` in scope; by default "the page had items")
decides whether to go on, and the next request is ``pagination``'s parts rendered
over that scope, merged over the first request's (``mergeWithParent``, the default:
headers and query key by key, an object body too) or replacing it. Two guards refuse
endless paging: ``maxPages`` (reaching it with pages left is an error, since items
would be left unread silently otherwise) and a request asked for twice (an API that
keeps answering the same cursor, in its query, headers or body), which is an error too,
and so is an answer of pages over the engine's ``max_pages_bytes`` in all (each page
being bounded by its ``max_response_bytes``).

Each page's answer goes through the module's ``response.valid``/``error`` and its items are
``response.iterate`` rendered over it. Answers and items are read leniently, as an
instant trigger's events are (a missing key reads as none). The caller consumes pages
lazily: a search that has its ``limit`` stops asking for more.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from connector.core.compose import compose_request, request_view
from connector.core.connection import Connection
from connector.core.prepare import render_part
from connector.core.registry import LoadedModule, Paging
from connector.core.request import PreparedRequest
from connector.core.response_check import check_response
from connector.errors import InvalidConfigurationError, RemoteRuntimeError
from connector.runs.trigger import lenient

if TYPE_CHECKING:
    from connector.core.engine import Engine

__all__ = ["pages"]


def pages(
    engine: Engine,
    module: LoadedModule,
    conn: Connection,
    scope: Mapping[str, Any],
    first: PreparedRequest,
) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """Each page's scope (``scope`` plus its ``request`` and ``response``) and items."""
    paging = module.paging
    assert paging is not None
    sent: set[str] = set()
    read = 0  # bytes of all pages so far, against engine.max_pages_bytes
    request = first
    parent = _parts(request, conn)
    page = 1
    while True:
        key = _request_key(request, conn)
        if key in sent:
            raise RemoteRuntimeError(
                f"{module.id}: page {page} would repeat an earlier request "
                f"({request.method} {conn.redact(request.url)}): the API answered the same "
                "cursor again, so paging stopped"
            )
        sent.add(key)
        response, _ = engine.send(module, request, conn)
        read += len(response.content)
        if read > engine.max_pages_bytes:
            raise RemoteRuntimeError(
                f"{module.id}: its pages came to over {engine.max_pages_bytes} bytes by page "
                f"{page} (the engine's max_pages_bytes); stopped rather than read on: narrow "
                "the search"
            )
        view = engine.response_view(response)
        page_scope = {
            **scope,
            "request": request_view(request, conn),
            "response": {**view, "body": lenient(view["body"])},
        }
        if module.response_check is not None:
            check_response(module.response_check, page_scope, conn, f"{module.id} page {page}")
        items = _items(module, paging, page_scope, conn)
        yield page_scope, items
        if paging.next_request is None:
            return
        next_scope = {**page_scope, "page": page}
        if paging.condition is not None:
            go_on = render_part(module, "pagination", paging.condition, next_scope, conn)
        else:
            go_on = bool(items)
        if not go_on:
            return
        if page >= paging.max_pages:
            raise RemoteRuntimeError(
                f"{module.id}: more than {paging.max_pages} pages (pagination.maxPages); "
                "stopped rather than leave items unread: narrow the search or raise maxPages"
            )
        request = _next_request(module, paging, next_scope, conn, parent)
        page += 1


def _items(
    module: LoadedModule, paging: Paging, scope: Mapping[str, Any], conn: Connection
) -> list[Any]:
    items = render_part(module, "iterate", paging.iterate, scope, conn)
    if items is None:
        return []
    if isinstance(items, Mapping) or not isinstance(items, list | tuple):
        raise RemoteRuntimeError(
            f"{module.id}: response.iterate must give a list of items, got "
            f"{type(items).__name__}: the API answered in an unexpected shape"
        )
    return [lenient(item) for item in items]


def _parts(request: PreparedRequest, conn: Connection) -> dict[str, Any]:
    """The first request's parts, as pagination merges over them."""
    path = request.url[len(conn.base_url) :] or "/"
    body: Any = request.json_body
    if body is None and request.content is not None:
        body = request.content.decode("utf-8", "replace")
    return {
        "method": request.method,
        "url": path,
        "headers": conn.without_auth(request.headers),
        "query": dict(request.query),
        "body": body,
    }


def _next_request(
    module: LoadedModule,
    paging: Paging,
    scope: Mapping[str, Any],
    conn: Connection,
    parent: Mapping[str, Any],
) -> PreparedRequest:
    spec = paging.next_request
    assert spec is not None
    rendered: dict[str, Any] = {}
    for name in ("method", "url", "headers", "query", "body"):
        tree = spec.part(name)
        rendered[name] = (
            None if tree is None else render_part(module, "pagination", tree, scope, conn)
        )
    if paging.merge_with_parent:
        parts = dict(parent)
        for name, value in rendered.items():
            if spec.part(name) is None:
                continue
            base = parts.get(name)
            if name in ("headers", "query", "body") and isinstance(value, Mapping):
                parts[name] = {**base, **value} if isinstance(base, Mapping) else dict(value)
            else:
                parts[name] = value
    else:
        parts = {**rendered, "method": rendered["method"] or "GET"}
        if parts["url"] is None:
            parts["url"] = parent["url"]
    if parts.get("query"):  # a cursor that came back empty is absent, not "None"
        parts["query"] = {k: v for k, v in parts["query"].items() if v not in (None, "")}
    try:
        return compose_request(module.id, conn, parts)
    except RecursionError:
        raise InvalidConfigurationError(
            f"{module.id}: the next page's request is too deep"
        ) from None


def _request_key(request: PreparedRequest, conn: Connection) -> str:
    """What makes a page's request the same as an earlier one: method, URL, query,
    headers (a cursor may travel in one; names case-insensitively, the auth ones left
    out as they never change between pages) and body. Kept as a digest, so the set of
    requests sent holds no header value."""
    query = json.dumps(request.query, sort_keys=True, default=str)
    headers = json.dumps(
        sorted((k.lower(), v) for k, v in conn.without_auth(request.headers).items())
    )
    key = hashlib.sha256(f"{request.method} {request.url}?{query}\n{headers}\n".encode())
    key.update(request.content or b"")
    return key.hexdigest()
