"""``connector new``: the files of a new app or module, valid from the first minute.

Starting from a blank file means reading the whole format before anything loads. The
scaffold writes a small app (a connection for ``--auth`` bearer, basic, header or none,
and a base URL with a host override) or a module of ``--kind`` action, search, trigger,
instant_trigger or universal (typical fields, its request or webhook, pagination where
it pages, an output bundle with a sample),
the module's fixture file with cases that pass as written, and its doc page. The
integrator then edits working files, and ``connector validate`` / ``connector test``
tell them at each step whether they still work.

Everything written is loaded back before returning, so a scaffold that does not
validate is a bug here, never a puzzle for the integrator.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connector.core.loader import APP_FILE, load_app
from connector.errors import ConnectorError
from connector.format.manifest import APP_NAME_PATTERN
from connector.tools.fixtures import FIXTURES_DIR

__all__ = ["AUTHS", "KINDS", "ScaffoldError", "Scaffolded", "new_app", "new_module"]

_SCHEMA_DIR = Path(__file__).resolve().parent.parent / "format" / "schema"


class ScaffoldError(ConnectorError):
    """The scaffold cannot be written (bad name, or a file that already exists)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


@dataclass
class Scaffolded:
    """What ``new_app``/``new_module`` wrote (created) and changed (updated)."""

    created: list[Path] = field(default_factory=list)
    updated: list[Path] = field(default_factory=list)


def _title(name: str) -> str:
    return " ".join(part.capitalize() for part in name.split("_") if part)


def _schema_ref(folder: Path, name: str) -> str:
    """The ``$schema`` path from ``folder`` to a shipped schema, for editors."""
    target = _SCHEMA_DIR / name
    try:
        return Path(os.path.relpath(target, folder.resolve())).as_posix()
    except ValueError:  # another drive (Windows): fall back to the absolute path
        return target.as_posix()


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_json(data) + "\n", encoding="utf-8")


def format_json(value: Any, indent: int = 0, width: int = 100) -> str:
    """JSON as people write manifests: one line per field, nested structures opened up.

    An object or list without nested containers stays on one line when it fits in
    ``width``; everything else is indented by two spaces a level.
    """
    flat = json.dumps(value, ensure_ascii=False)
    nested = isinstance(value, dict | list) and any(
        isinstance(v, dict | list) for v in (value.values() if isinstance(value, dict) else value)
    )
    if not isinstance(value, dict | list) or (not nested and len(flat) + 2 * indent <= width):
        return flat
    pad = "  " * (indent + 1)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(k)}: {format_json(v, indent + 1, width)}" for k, v in value.items()
        ]
    else:
        items = [f"{pad}{format_json(v, indent + 1, width)}" for v in value]
    if not items:
        return flat
    return (
        ("{" if isinstance(value, dict) else "[")
        + "\n"
        + ",\n".join(items)
        + "\n"
        + "  " * indent
        + ("}" if isinstance(value, dict) else "]")
    )


def _check_name(value: str, pattern: str, what: str) -> None:
    if not re.fullmatch(pattern, value):
        raise ScaffoldError(
            f"{what} name {value!r} must be lowercase letters, digits and '_', starting "
            "with a letter (e.g. acme, send_event)",
            field=what,
        )


#: What ``--kind`` accepts: Make's module kinds.
KINDS = ("action", "search", "trigger", "instant_trigger", "universal")
#: What ``--auth`` accepts, and the connection each one scaffolds.
AUTHS = ("bearer", "basic", "header", "none")

_HOST_FIELD = {
    "name": "host",
    "type": "url",
    "label": "Host override",
    "help": "A base URL used instead of the default, e.g. a local test server.",
    "advanced": True,
}


def _secret(name: str, label: str, help_text: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "text",
        "label": label,
        "help": help_text,
        "required": True,
        "secret": True,
    }


def _connection(app: str, auth: str) -> dict[str, Any]:
    """The connection fields and auth section of one ``--auth`` choice."""
    key = _secret("apiKey", "API key", f"Your {_title(app)} API key.")
    if auth == "bearer":
        return {
            "fields": [key, _HOST_FIELD],
            "auth": {"type": "bearer", "value": "{{ connection.apiKey }}"},
        }
    if auth == "header":
        return {
            "fields": [key, _HOST_FIELD],
            "auth": {"type": "header", "header": "X-Api-Key", "value": "{{ connection.apiKey }}"},
        }
    if auth == "basic":
        user = {"name": "username", "type": "text", "label": "User name", "required": True}
        password = _secret("password", "Password", "The password of that user.")
        return {
            "fields": [user, password, _HOST_FIELD],
            "auth": {
                "type": "basic",
                "username": "{{ connection.username }}",
                "password": "{{ connection.password }}",
            },
        }
    return {"fields": [_HOST_FIELD], "auth": {"type": "none"}}


#: Values the scaffolded examples use for each auth's connection.
_TEST_CONNECTIONS: dict[str, dict[str, Any]] = {
    "bearer": {"apiKey": "test-key-123"},
    "header": {"apiKey": "test-key-123"},
    "basic": {"username": "test-user", "password": "test-password-123"},
    "none": {},
}
_AUTH_HEADER = {"bearer": "Authorization", "basic": "Authorization", "header": "X-Api-Key"}


def app_manifest(app: str, folder: Path, auth: str = "bearer") -> dict[str, Any]:
    """A minimal app: the connection of ``auth`` (an API key sent as a bearer token by
    default) and a host override."""
    _check_choice(auth, AUTHS, "auth")
    return {
        "$schema": _schema_ref(folder, "app.schema.json"),
        "name": app,
        "label": _title(app),
        "version": "0.1.0",
        "description": f"Connects to {_title(app)}'s HTTP API.",
        "baseUrl": f"{{{{ connection.host or 'https://api.{app}.example' }}}}",
        "connection": _connection(app, auth),
        "modules": [],
    }


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ScaffoldError(
            f"unknown {what} {value!r}, expected one of: {', '.join(choices)}", field=what
        )


def module_manifest(app: str, module: str, folder: Path, kind: str = "action") -> dict[str, Any]:
    """A module of ``kind`` with typical fields, its request or webhook, and output."""
    _check_choice(kind, KINDS, "kind")
    head = {
        "$schema": _schema_ref(folder, "module.schema.json"),
        "id": f"{app}.{module}",
        "label": _title(module),
    }
    build = {
        "action": _action_module,
        "universal": _universal_module,
        "search": _search_module,
        "trigger": _trigger_module,
        "instant_trigger": _instant_module,
    }[kind]
    return {**head, **build(app, module)}


def _action_module(app: str, module: str) -> dict[str, Any]:
    """An action with a required name, an optional user ID and free properties."""
    return {
        "description": f"{_title(module)}: sends a name, a user ID and properties to "
        f"{_title(app)}. Describe here what the module does and when to use it.",
        "kind": "action",
        "parameters": [
            {
                "name": "name",
                "type": "text",
                "label": "Name",
                "help": "What happened, e.g. Signed Up.",
                "required": True,
                "maxLength": 200,
                "example": "Signed Up",
            },
            {"name": "userId", "type": "text", "label": "User ID", "help": "Who it was."},
            {
                "name": "properties",
                "type": "keyvalue",
                "label": "Properties",
                "help": "More details, as key/value pairs.",
            },
        ],
        "request": {
            "method": "POST",
            "url": f"/{module}",
            "body": {
                "name": "{{ parameters.name }}",
                "userId": "{{ parameters.userId }}",
                "properties": "{{ parameters.properties }}",
                "requestId": "{{ run.id }}",
            },
        },
        "output": {
            "bundle": "{{ request.body | merge({'status': response.status}) }}",
            "fields": [
                {"name": "name", "type": "text", "label": "Name"},
                {"name": "userId", "type": "text", "label": "User ID"},
                {"name": "properties", "type": "collection", "label": "Properties"},
                {"name": "requestId", "type": "text", "label": "Request ID"},
                {"name": "status", "type": "number", "label": "HTTP status"},
            ],
            "sample": {
                "name": "Signed Up",
                "userId": "u-1",
                "properties": {"plan": "pro"},
                "requestId": "3f1c2a6e-8d4b-4b8a-9b1e-2f6c7d8e9a0b",
                "status": 200,
            },
        },
    }


def _universal_module(app: str, module: str) -> dict[str, Any]:
    """Make an API call: any path under the base URL, with the connection's auth."""
    return {
        "description": f"Makes an authorized call to any {_title(app)} API path.",
        "kind": "universal",
        "parameters": [
            {
                "name": "url",
                "type": "text",
                "label": "URL",
                "help": "A path relative to the base URL, e.g. /things.",
                "required": True,
                "example": "/things",
            },
            {
                "name": "method",
                "type": "select",
                "label": "Method",
                "default": "GET",
                "options": [{"value": m} for m in ("GET", "POST", "PUT", "PATCH", "DELETE")],
            },
            {"name": "body", "type": "any", "label": "Body", "help": "Sent as JSON."},
        ],
        "request": {
            "method": "{{ parameters.method }}",
            "url": "{{ parameters.url }}",
            "body": "{{ parameters.body }}",
        },
        "output": {
            "bundle": {"status": "{{ response.status }}", "body": "{{ response.body }}"},
            "fields": [
                {"name": "status", "type": "number", "label": "HTTP status"},
                {"name": "body", "type": "any", "label": "Body"},
            ],
            "sample": {"status": 200, "body": {"ok": True}},
        },
    }


#: A search's and a polling trigger's output: one bundle per listed thing, as it is.
_ITEM_OUTPUT = {
    "bundle": "{{ item }}",
    "fields": [
        {"name": "id", "type": "text", "label": "ID"},
        {"name": "name", "type": "text", "label": "Name"},
        {"name": "created_at", "type": "date", "label": "Created at"},
    ],
    "sample": {"id": "t-1", "name": "First thing", "created_at": "2026-01-01T00:00:00Z"},
}
_CURSOR = {
    "query": {"cursor": "{{ response.body.next }}"},
    "condition": "{{ response.body.next }}",
    "maxPages": 50,
}


def _search_module(app: str, module: str) -> dict[str, Any]:
    """A search: items of every page, following ``next`` cursors, up to a limit."""
    return {
        "description": f"Searches {_title(app)} things: one bundle per thing, every page "
        "followed until the limit.",
        "kind": "search",
        "parameters": [
            {"name": "q", "type": "text", "label": "Query", "help": "Words to look for."},
            {
                "name": "limit",
                "type": "integer",
                "label": "Limit",
                "help": "The most things to return.",
                "default": 10,
                "minimum": 1,
            },
        ],
        "request": {"method": "GET", "url": f"/{module}", "query": {"q": "{{ parameters.q }}"}},
        "response": {"iterate": "{{ response.body.data }}", "limit": "{{ parameters.limit }}"},
        "pagination": _CURSOR,
        "output": _ITEM_OUTPUT,
    }


def _trigger_module(app: str, module: str) -> dict[str, Any]:
    """A polling trigger: new things since the last poll, by id and date."""
    return {
        "description": f"Triggers on new {_title(app)} things: each poll hands over the "
        "things created since the last one, oldest first.",
        "kind": "trigger",
        "request": {
            "method": "GET",
            "url": f"/{module}",
            "query": {"created_after": "{{ state.since }}"},
        },
        "response": {"iterate": "{{ response.body.data }}"},
        "pagination": _CURSOR,
        "trigger": {"id": "{{ item.id }}", "date": "{{ item.created_at }}"},
        "output": _ITEM_OUTPUT,
    }


def _instant_module(app: str, module: str) -> dict[str, Any]:
    """An instant trigger: webhook deliveries, one bundle per event."""
    return {
        "description": f"Triggers when {_title(app)} posts events to the host's webhook URL: "
        "one bundle per event (a JSON array, or an object's 'events', is a batch).",
        "kind": "instant_trigger",
        "parameters": [
            {
                "name": "types",
                "type": "array",
                "label": "Event types",
                "help": "Only events of these types; all when empty.",
                "items": {"name": "type", "type": "text", "label": "Type"},
            }
        ],
        "webhook": {
            "itemsKey": "events",
            "requiredKeys": ["id", "type"],
            "filter": "{{ not parameters.types or event.type in parameters.types }}",
        },
        "output": {
            "bundle": "{{ event }}",
            "fields": [
                {"name": "id", "type": "text", "label": "Event ID"},
                {"name": "type", "type": "text", "label": "Type"},
                {"name": "data", "type": "collection", "label": "Data"},
            ],
            "sample": {"id": "e-1", "type": "thing.created", "data": {"name": "First thing"}},
        },
    }


def fixture_file(
    app: str,
    module: str,
    folder: Path,
    connection: dict[str, Any] | None = None,
    kind: str = "action",
    auth: str = "bearer",
) -> dict[str, Any]:
    """Cases the scaffolded module passes as written: what it sends or receives, its
    output, and errors.

    ``connection`` is given for a module added to an existing app: the cases then use
    placeholder values for that app's required connection fields, and expect only the
    method and body of the request (its URL and auth are the app's own).
    """
    cases = {
        "action": _action_cases,
        "universal": _universal_cases,
        "search": _search_cases,
        "trigger": _trigger_cases,
        "instant_trigger": _instant_cases,
    }[kind](app, module, auth, connection is not None)
    return {
        "$schema": _schema_ref(folder, "fixture.schema.json"),
        "module": f"{app}.{module}",
        "connection": connection if connection is not None else dict(_TEST_CONNECTIONS[auth]),
        "cases": cases,
    }


_UNAUTHORIZED = {
    "name": "a 401 answer is an InvalidAccessTokenError",
    "response": {"status": 401, "body": {"error": "bad key"}},
    "error": {"type": "InvalidAccessTokenError"},
}


def _headers(auth: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(extra or {})
    if auth in _AUTH_HEADER:
        headers[_AUTH_HEADER[auth]] = "[REDACTED]"
    return headers


def _action_cases(app: str, module: str, auth: str, existing: bool) -> list[dict[str, Any]]:
    body = {
        "name": "Signed Up",
        "userId": "u-1",
        "properties": {"plan": "pro"},
        "requestId": "{{ run.id }}",
    }
    request: dict[str, Any] = {
        "method": "POST",
        "url": f"https://api.{app}.example/{module}",
        "headers": _headers(auth, {"Content-Type": "application/json"}),
        "body": body,
    }
    if existing:
        request = {"method": "POST", "body": body}
    return [
        {
            "name": "sends the mapped fields",
            "parameters": {
                "name": "{{ signup.event }}",
                "userId": "u-1",
                "properties": [{"key": "plan", "value": "pro"}],
            },
            "context": {"signup": {"event": "Signed Up"}},
            "request": request,
            "response": {"status": 200, "body": {"ok": True}},
            "output": [{**body, "status": 200}],
        },
        {
            "name": "refuses a missing name before sending",
            "parameters": {"userId": "u-1"},
            "error": {"type": "DataError", "field": "name"},
        },
        {**_UNAUTHORIZED, "parameters": {"name": "Signed Up"}},
    ]


def _universal_cases(app: str, module: str, auth: str, existing: bool) -> list[dict[str, Any]]:
    request: dict[str, Any] = {"method": "GET", "body": None}
    if not existing:
        request["url"] = f"https://api.{app}.example/things"
        request["headers"] = _headers(auth)
    return [
        {
            "name": "calls the path with the connection's auth",
            "parameters": {"url": "/things"},
            "request": request,
            "response": {"status": 200, "body": {"ok": True}},
            "output": [{"status": 200, "body": {"ok": True}}],
        },
        {
            "name": "refuses a URL that leaves the base URL",
            "parameters": {"url": "https://elsewhere.example/x"},
            "error": {"type": "DataError", "field": "url"},
        },
        {**_UNAUTHORIZED, "parameters": {"url": "/things"}},
    ]


_THINGS = [
    {"id": "t-1", "name": "First thing", "created_at": "2026-01-01T00:00:00Z"},
    {"id": "t-2", "name": "Second thing", "created_at": "2026-01-02T00:00:00Z"},
    {"id": "t-3", "name": "Third thing", "created_at": "2026-01-03T00:00:00Z"},
]


def _search_cases(app: str, module: str, auth: str, existing: bool) -> list[dict[str, Any]]:
    pages = [
        {"status": 200, "body": {"data": _THINGS[:2], "next": "page-2"}},
        {"status": 200, "body": {"data": _THINGS[2:]}},
    ]
    request: dict[str, Any] = {"method": "GET"}
    if not existing:
        request["url"] = f"https://api.{app}.example/{module}?q=thing"
        request["headers"] = _headers(auth)
    return [
        {
            "name": "follows the next cursor to the last page",
            "parameters": {"q": "thing"},
            "request": request,
            "responses": pages,
            "output": _THINGS,
        },
        {
            "name": "stops at the limit without asking for the next page",
            "parameters": {"q": "thing", "limit": 2},
            "responses": pages[:1],
            "output": _THINGS[:2],
        },
        {
            "name": "refuses a limit under 1 before sending",
            "parameters": {"limit": 0},
            "error": {"type": "DataError", "field": "limit"},
        },
        {**_UNAUTHORIZED, "parameters": {}},
    ]


def _trigger_cases(app: str, module: str, auth: str, existing: bool) -> list[dict[str, Any]]:
    newest_first = {"status": 200, "body": {"data": list(reversed(_THINGS))}}
    return [
        {
            "name": "the first poll of all things gives them oldest first, at most the limit",
            "parameters": {"start": "all", "limit": 2},
            "responses": [newest_first],
            "output": _THINGS[:2],
            "newState": {
                "module": f"{app}.{module}",
                "since": "2026-01-02T00:00:00Z",
                "ids": ["t-2"],
            },
        },
        {
            "name": "the next poll gives only what is newer than the state",
            "parameters": {},
            "state": {"module": f"{app}.{module}", "since": "2026-01-02T00:00:00Z", "ids": ["t-2"]},
            "responses": [newest_first],
            "output": _THINGS[2:],
        },
        {
            "name": "starting now, the first poll sends nothing and gives nothing",
            "parameters": {"start": "now"},
            "output": [],
        },
        {**_UNAUTHORIZED, "parameters": {"start": "all"}},
    ]


def _instant_cases(app: str, module: str, auth: str, existing: bool) -> list[dict[str, Any]]:
    event = {"id": "e-1", "type": "thing.created", "data": {"name": "First thing"}}
    other = {"id": "e-2", "type": "thing.deleted", "data": {}}
    return [
        {
            "name": "one event, one bundle",
            "delivery": {"body": event},
            "output": [event],
        },
        {
            "name": "a batch filtered by type",
            "parameters": {"types": ["thing.created"]},
            "delivery": {"body": {"events": [event, other]}},
            "output": [event],
        },
        {
            "name": "an event without a type is malformed",
            "delivery": {"body": {"id": "e-3"}},
            "error": {"type": "DataError", "field": "type"},
        },
    ]


def new_app(root: Path, app: str, auth: str = "bearer") -> Scaffolded:
    """Write ``root/app/app.json`` with the connection of ``auth``; refuses to overwrite
    one."""
    _check_name(app, APP_NAME_PATTERN, "app")
    _check_choice(auth, AUTHS, "auth")
    folder = root / app
    app_file = folder / APP_FILE
    if app_file.exists():
        raise ScaffoldError(f"{app_file} already exists", field="app")
    _write_json(app_file, app_manifest(app, folder, auth))
    load_app(app_file)
    return Scaffolded(created=[app_file])


def new_module(
    root: Path,
    app: str,
    module: str,
    docs: Path | None = None,
    kind: str = "action",
    auth: str = "bearer",
) -> Scaffolded:
    """Write a module of ``kind``, its fixture file and doc page, and list it in
    app.json.

    The app is scaffolded too (with ``auth``) when it does not exist yet; an existing
    app keeps its own connection.
    """
    _check_name(app, APP_NAME_PATTERN, "app")
    _check_choice(kind, KINDS, "kind")
    _check_choice(auth, AUTHS, "auth")
    _check_name(module, APP_NAME_PATTERN, "module")  # the module half of its id
    folder = root / app
    app_file = folder / APP_FILE
    module_file = folder / f"{module}.json"
    fixture = folder / FIXTURES_DIR / f"{module}.json"
    page = docs / f"{app}.{module}.md" if docs is not None else None
    # Every check before any write: a refused scaffold leaves nothing behind.
    for path in (module_file, fixture, page):
        if path is not None and path.exists():
            raise ScaffoldError(f"{path} already exists", field="module")
    if module == "app":
        raise ScaffoldError("a module may not be called 'app' (app.json)", field="module")
    done = Scaffolded()
    connection: dict[str, Any] | None = None
    if app_file.exists():
        existing, _ = load_app(app_file)
        connection = _placeholder_connection(existing.manifest.connection.fields)
    else:
        done.created += new_app(root, app, auth).created
    _write_json(module_file, module_manifest(app, module, folder, kind))
    _write_json(fixture, fixture_file(app, module, fixture.parent, connection, kind, auth))
    _list_module(app_file, module_file.name)
    if app_file not in done.created:
        done.updated.append(app_file)
    done.created += [module_file, fixture]
    _, modules = load_app(app_file)  # the scaffold must load, or it is our bug
    if page is not None:
        from connector.tools.docs import module_page

        loaded = next(m for m in modules if m.id == f"{app}.{module}")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(module_page(loaded), encoding="utf-8")
        done.created.append(page)
    return done


_PLACEHOLDERS: dict[str, Any] = {
    "url": "https://example.invalid",
    "email": "test@example.invalid",
    "number": 1,
    "integer": 1,
    "boolean": True,
    "date": "2026-01-01T00:00:00Z",
}


def _placeholder_connection(fields: Any) -> dict[str, Any]:
    """Test values for an existing app's required connection fields."""
    values: dict[str, Any] = {}
    for spec in fields:
        if not spec.required or spec.default is not None:
            continue
        if spec.type == "select" and spec.options:
            values[spec.name] = spec.options[0].value
        else:
            values[spec.name] = _PLACEHOLDERS.get(spec.type, f"test-{spec.name}-value")
    return values


def _list_module(app_file: Path, name: str) -> None:
    """Append ``name`` to app.json's modules, keeping the file's own layout."""
    text = app_file.read_text(encoding="utf-8")
    data = json.loads(text)
    if name in data.get("modules", []):
        return
    match = re.search(r'"modules"\s*:\s*\[(?P<items>[^\]]*)\]', text)
    if match is not None and _same_list(match["items"], data["modules"]):
        items = match["items"]
        head, tail = items.rstrip(), items[len(items.rstrip()) :]
        joined = f"{head}, {json.dumps(name)}{tail}" if head.strip() else json.dumps(name)
        new = text[: match.start("items")] + joined + text[match.end("items") :]
        app_file.write_text(new, encoding="utf-8")
        return
    data["modules"] = [*data.get("modules", []), name]
    _write_json(app_file, data)


def _same_list(items: str, modules: list[str]) -> bool:
    """Whether the text found between the brackets is exactly the modules list."""
    try:
        found: list[str] = json.loads("[" + items + "]")
    except ValueError:
        return False
    return found == modules
