"""``connector new``: the files of a new app or module, valid from the first minute.

Starting from a blank file means reading the whole format before anything loads. The
scaffold writes a small app (API-key connection, base URL with a host override) or an
action module (three typical fields, a JSON request, an output bundle with a sample),
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

__all__ = ["ScaffoldError", "Scaffolded", "new_app", "new_module"]

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


def app_manifest(app: str, folder: Path) -> dict[str, Any]:
    """A minimal app: an API key sent as a bearer token, and a host override."""
    return {
        "$schema": _schema_ref(folder, "app.schema.json"),
        "name": app,
        "label": _title(app),
        "version": "0.1.0",
        "description": f"Connects to {_title(app)}'s HTTP API.",
        "baseUrl": f"{{{{ connection.host or 'https://api.{app}.example' }}}}",
        "connection": {
            "fields": [
                {
                    "name": "apiKey",
                    "type": "text",
                    "label": "API key",
                    "help": f"Your {_title(app)} API key.",
                    "required": True,
                    "secret": True,
                },
                {
                    "name": "host",
                    "type": "url",
                    "label": "Host override",
                    "help": "A base URL used instead of the default, e.g. a local test server.",
                    "advanced": True,
                },
            ],
            "auth": {
                "type": "header",
                "header": "Authorization",
                "value": "Bearer {{ connection.apiKey }}",
            },
        },
        "modules": [],
    }


def module_manifest(app: str, module: str, folder: Path) -> dict[str, Any]:
    """An action with a required name, an optional user ID and free properties."""
    return {
        "$schema": _schema_ref(folder, "module.schema.json"),
        "id": f"{app}.{module}",
        "label": _title(module),
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


def fixture_file(
    app: str,
    module: str,
    folder: Path,
    connection: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cases the scaffolded module passes: the request, the output, two errors.

    ``connection`` is given for a module added to an existing app: the cases then use
    placeholder values for that app's required connection fields, and expect only the
    method and body of the request (its URL and auth are the app's own).
    """
    body = {
        "name": "Signed Up",
        "userId": "u-1",
        "properties": {"plan": "pro"},
        "requestId": "{{ run.id }}",
    }
    request: dict[str, Any] = {
        "method": "POST",
        "url": f"https://api.{app}.example/{module}",
        "headers": {"Content-Type": "application/json", "Authorization": "[REDACTED]"},
        "body": body,
    }
    if connection is not None:
        request = {"method": "POST", "body": body}
    return {
        "$schema": _schema_ref(folder, "fixture.schema.json"),
        "module": f"{app}.{module}",
        "connection": connection if connection is not None else {"apiKey": "test-key-123"},
        "cases": [
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
            {
                "name": "a 401 answer is an InvalidAccessTokenError",
                "parameters": {"name": "Signed Up"},
                "response": {"status": 401, "body": {"error": "bad key"}},
                "error": {"type": "InvalidAccessTokenError"},
            },
        ],
    }


def new_app(root: Path, app: str) -> Scaffolded:
    """Write ``root/app/app.json``; refuses to overwrite one."""
    _check_name(app, APP_NAME_PATTERN, "app")
    folder = root / app
    app_file = folder / APP_FILE
    if app_file.exists():
        raise ScaffoldError(f"{app_file} already exists", field="app")
    _write_json(app_file, app_manifest(app, folder))
    load_app(app_file)
    return Scaffolded(created=[app_file])


def new_module(root: Path, app: str, module: str, docs: Path | None = None) -> Scaffolded:
    """Write a module, its fixture file and doc page, and list it in app.json.

    The app is scaffolded too when it does not exist yet.
    """
    _check_name(app, APP_NAME_PATTERN, "app")
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
        done.created += new_app(root, app).created
    _write_json(module_file, module_manifest(app, module, folder))
    _write_json(fixture, fixture_file(app, module, fixture.parent, connection))
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
