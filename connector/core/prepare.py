"""Preparing a run: check the input and build the exact request, sending nothing.

This is step 1 of :mod:`connector.core.engine`'s run: render the builder's mappings over the
context, coerce and check every parameter, render the manifest's request templates and
check the result (the URL stays on the base URL, headers are clean, size limits). It is
pure: a DataError here means nothing was, or ever will be, sent.

:func:`output_bundles` renders the output template over the same scope, plus the
request and response, for the run's last step: the scopes templates see are all built
here, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlencode

from connector._version import __version__
from connector.core.connection import REDACTED, Connection, RequestHead
from connector.core.ids import new_id
from connector.core.messages import check_message_request
from connector.core.registry import LoadedModule
from connector.core.request import (
    ALLOWED_METHODS,
    PreparedRequest,
    check_headers,
    encode_body,
    join_url,
    largest_fields,
    non_finite_path,
    normalize_query,
)
from connector.core.types import utc_now_iso
from connector.core.values import Values
from connector.errors import DataError, InvalidConfigurationError
from connector.templating.templates import RENDER_FAILURES, TemplateTree, describe_error

__all__ = [
    "ENGINE_INFO",
    "Message",
    "Prepared",
    "build_body",
    "check_parameters",
    "output_bundles",
    "prepare_message",
    "prepare_run",
    "prepared_from",
    "render_part",
    "run_scope",
]

#: What templates see as ``engine`` (and Segment as ``context.library``).
ENGINE_INFO = {"name": "connector", "version": __version__}


class Prepared(NamedTuple):
    """A checked run, ready to send (a NamedTuple: immutable and cheap to build)."""

    module: LoadedModule
    connection: Connection
    request: PreparedRequest
    parameters: Mapping[str, Any]
    run: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"Prepared(module={self.module.id!r}, request={self.request!r})"

    def redacted(self) -> dict[str, Any]:
        """The request as ``--dry-run`` shows it: auth headers replaced."""
        is_auth = self.connection.is_auth_header
        headers = {k: (REDACTED if is_auth(k) else v) for k, v in self.request.headers.items()}
        url = self.request.url
        if self.request.query:
            url += ("&" if "?" in url else "?") + urlencode(self.request.query, doseq=True)
        body: Any = self.request.json_body
        if body is None and self.request.content is not None:
            body = self.request.content.decode("utf-8", "replace")
        out = {
            "module": self.module.id,
            "method": self.request.method,
            "url": url,
            "headers": headers,
            "body": body,
        }
        return dict(self.connection.redact.data(out))


def prepare_run(
    module: LoadedModule,
    conn: Connection,
    parameters: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
) -> Prepared:
    """Check ``parameters`` and build the request of one run of ``module``."""
    return prepared_from(module, conn, prepare_message(module, conn, parameters, context))


class Message(NamedTuple):
    """A run checked and rendered: its parameters, run, request head, the module's
    headers (with the body's content type, without auth), and its body (rendered, as
    bytes, and whether orjson wrote the bytes). A batch item needs no more; a single
    run wraps it into a request (:func:`prepared_from`)."""

    parameters: Values
    run: dict[str, str]
    head: RequestHead
    headers: dict[str, str]
    json_body: Any
    content: bytes | None
    by_orjson: bool


#: Makes a Message from a tuple of its fields without the generated ``__new__`` (a
#: Python function): every message of a batch is made once.
_tuple_new = tuple.__new__


def prepare_message(
    module: LoadedModule,
    conn: Connection,
    parameters: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> Message:
    """Check ``parameters``, then render and check the request head and body.
    ``extra`` adds names to the templates' scope (a polling trigger's ``state``)."""
    values = check_parameters(module, conn, parameters, context)
    run = {"id": new_id(), "timestamp": utc_now_iso()}
    scope = {
        "parameters": values,
        "connection": conn.public,
        "run": run,
        "engine": ENGINE_INFO,
        "app": module.app.info,
    }
    if extra is not None:
        scope.update(extra)
    try:
        head = request_head(module, conn, scope)
        headers = dict(head[2])  # the module's own headers decide how a body is encoded
        content, json_body, by_orjson = build_body(module, conn, scope, headers)
        if module.manifest.kind == "universal" and module.app.manifest.messages is not None:
            _check_messages(module, conn, scope, head[1], json_body, content)
    except RecursionError:
        raise DataError("the parameters are nested too deeply") from None
    return _tuple_new(Message, (values, run, head, headers, json_body, content, by_orjson))


def _check_messages(
    module: LoadedModule,
    conn: Connection,
    scope: Mapping[str, Any],
    url: str,
    json_body: Any,
    content: bytes | None,
) -> None:
    """A universal module's request to one of the app's message endpoints gets the
    checks its messages get from the app's own modules (:mod:`connector.core.messages`)."""
    app = module.app
    assert app.manifest.messages is not None
    relative = url[len(conn.base_url) :] if url.startswith(conn.base_url) else url
    batch_path: str | None = None
    limits: tuple[str, int, int] | None = None
    if app.batch_url is not None and app.manifest.batch is not None:
        try:
            batch_path = str(app.batch_url.render(scope))
        except RENDER_FAILURES as exc:
            raise InvalidConfigurationError(
                f"the app's batch url template failed: {conn.redact(describe_error(exc))}"
            ) from None
        spec = app.manifest.batch
        limits = (spec.items_key, spec.max_items, spec.max_bytes)
    check_message_request(
        app.manifest.messages,
        relative,
        batch_path,
        limits,
        json_body,
        content,
        module.part_fields.get("body"),
    )


def run_scope(prepared: Prepared) -> dict[str, Any]:
    """What a prepared run's later templates see before any answer (a search's or
    polling trigger's pages, a response check): the module's scope, which callers
    extend with the request and response they are about."""
    return {
        "parameters": prepared.parameters,
        "connection": prepared.connection.public,
        "run": prepared.run,
        "engine": ENGINE_INFO,
        "app": prepared.module.app.info,
    }


def prepared_from(module: LoadedModule, conn: Connection, message: Message) -> Prepared:
    """The run of ``message``, with its request ready to send (auth added)."""
    method, url, _, query = message.head
    headers = {**message.headers, **conn.auth_headers}  # the message's own stay as they are
    json_body = message.json_body
    message_id = json_body.get("messageId") if type(json_body) is dict else None
    request = PreparedRequest(  # positional: a third cheaper than keywords, per message
        method,
        url,
        headers,
        {k: list(v) if type(v) is list else v for k, v in query.items()} if query else {},
        message.content,
        json_body,
        module.id,
        message_id if isinstance(message_id, str) else None,
        conn.timeout,
    )
    return Prepared(module, conn, request, message.parameters, message.run)


def check_parameters(
    module: LoadedModule,
    conn: Connection,
    parameters: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None = None,
) -> Values:
    """The module's parameters, checked (actions and triggers alike); any fault is a
    DataError whose message never quotes the connection's secrets."""
    try:
        return module.parameter_plan.check(parameters, context)
    except DataError as exc:
        exc.redact(conn.redact)  # mapped text may quote anything, the write key included
        raise
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # A safety net: input the checks above did not foresee is still bad input.
        raise DataError(f"the parameters could not be processed ({type(exc).__name__})") from None


def render_part(
    module: LoadedModule,
    part: str,
    tree: TemplateTree,
    scope: Mapping[str, Any],
    conn: Connection,
) -> Any:
    try:
        return tree.render(scope)
    except RENDER_FAILURES as exc:
        raise InvalidConfigurationError(
            f"module {module.id}: the manifest's {part} template failed: "
            f"{conn.redact(describe_error(exc))}",
            field=module.part_fields.get(part),
        ) from None


def output_bundles(
    module: LoadedModule,
    conn: Connection,
    parameters: Mapping[str, Any],
    run: Mapping[str, Any],
    request: dict[str, Any],
    response: dict[str, Any],
) -> list[Any]:
    """The output bundles as the module's template renders them over ``request``
    (method, url, headers without auth, body) and ``response`` (status, headers, body):
    *not yet* redacted nor copied, so they may share objects with the scope. Callers
    pass them through the connection's redacting copy."""
    scope = {
        "parameters": parameters,
        "connection": conn.public,
        "run": run,
        "engine": ENGINE_INFO,
        "app": module.app.info,
        "request": request,
        "response": response,
    }
    output = render_part(module, "output", module.output, scope, conn)
    return output if isinstance(output, list) else [output if output is not None else {}]


def build_body(
    module: LoadedModule, conn: Connection, scope: Mapping[str, Any], headers: dict[str, str]
) -> tuple[bytes | None, Any, bool]:
    """The body rendered, as bytes and as JSON, within the module's size limit, and
    whether orjson wrote the bytes; ``headers`` (the module's, without auth) gain a
    content type where the body needs one."""
    fields = module.part_fields
    body = render_part(module, "body", module.body, scope, conn)
    try:
        content, json_body, by_orjson = encode_body(body, headers, fields.get("body"))
    except DataError as exc:
        # A NaN or infinity in the body: name the parameter that holds it.
        exc.field = _parameter_holding_non_finite(body, scope["parameters"]) or exc.field
        raise
    limit = module.max_body_bytes
    if limit is not None and content is not None and len(content) > limit:
        biggest = largest_fields(json_body)
        named = ", ".join(f"{name} ({size:,} bytes)" for name, size in biggest)
        raise DataError(
            f"the message is {len(content):,} bytes, over the limit of {limit:,} bytes"
            + (f"; largest fields: {named}" if named else ""),
            field=_parameter_for(biggest, scope["parameters"]) or fields.get("body"),
        )
    return content, json_body, by_orjson


def request_head(module: LoadedModule, conn: Connection, scope: Mapping[str, Any]) -> RequestHead:
    """Method, URL, headers (auth not yet added) and query, rendered and checked."""
    cached = conn.request_heads.get(module.id) if module.static_head else None
    if cached is not None and cached[0] is module:
        return cached[1]
    head = _render_head(module, conn, scope)
    if module.static_head:
        # Literal method, URL, headers and query give the same checked result on every
        # run with this connection: checked once, then reused (for this very module
        # object: a registry may replace a module under the same id).
        conn.request_heads[module.id] = (module, head)
    return head


def _render_head(module: LoadedModule, conn: Connection, scope: Mapping[str, Any]) -> RequestHead:
    fields = module.part_fields
    method = str(render_part(module, "method", module.method, scope, conn) or "").upper()
    if method not in ALLOWED_METHODS:
        raise DataError(
            f"unknown method {method!r}, expected one of: {', '.join(sorted(ALLOWED_METHODS))}",
            field=fields.get("method"),
        )
    path = render_part(module, "url", module.url, scope, conn)
    url = join_url(conn.base_url, path, fields.get("url"))
    rendered_headers = render_part(module, "headers", module.headers, scope, conn) or {}
    if type(rendered_headers) is not dict and not isinstance(rendered_headers, Mapping):
        raise DataError(
            "headers must be an object of names and values", field=fields.get("headers")
        )
    headers = (
        check_headers(rendered_headers, conn.auth_headers, fields.get("headers"))
        if rendered_headers
        else {}
    )
    rendered_query = render_part(module, "query", module.query, scope, conn)
    query = normalize_query(rendered_query, fields.get("query")) if rendered_query else {}
    if conn.app_headers:  # the app's own headers and query; the module's win
        own = {name.lower() for name in headers}
        app = {k: v for k, v in conn.app_headers.items() if k.lower() not in own}
        headers = {**app, **headers}
    if conn.app_query:
        query = {**conn.app_query, **query}
    return method, url, headers, query


def _parameter_holding_non_finite(body: Any, values: Mapping[str, Any]) -> str | None:
    """The parameter whose value holds the body's first NaN or infinity: the one named
    by the body path's head or tail (``properties.x`` from ``customProperties``), else
    the first that holds one at all; None when the body made it itself."""
    where = non_finite_path(body)
    if where is None:
        return None
    holders = [name for name, value in values.items() if non_finite_path(value) is not None]
    if not holders:
        return None
    parts = where[0].replace("[", ".").split(".")
    for name in holders:
        value = values[name]
        if name == parts[0] or (isinstance(value, Mapping) and parts[-1] in value):
            return name
    return holders[0]


def _parameter_for(biggest: list[tuple[str, int]], values: Mapping[str, Any]) -> str | None:
    """The parameter behind the biggest field of a body, when it can be told."""
    if not biggest:
        return None
    head, _, sub = biggest[0][0].partition(".")
    if head in values:
        return head
    for name, value in values.items():
        if sub and isinstance(value, Mapping) and sub in value:
            return name
    return None
