"""Loading manifests: every fault is a ManifestError naming the file and JSON path.

Each case starts from a minimal valid app (``app.json`` + ``ping.json``), breaks one
thing, and checks the error points at the right file, the right JSON path, and says
something useful. A crash (RecursionError, KeyError, ...) instead of a ManifestError
fails the test.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import connector
from connector.core.loader import MAX_MANIFEST_BYTES
from connector.errors import ManifestError
from tests.conftest import SHIPPED_MODULES

APP: dict[str, Any] = {
    "name": "demo",
    "label": "Demo",
    "baseUrl": "https://{{ connection.region }}.example.com",
    "connection": {
        "fields": [
            {"name": "writeKey", "type": "text", "secret": True, "required": True},
            {"name": "region", "type": "text", "default": "us"},
        ],
        "auth": {"type": "basic", "username": "{{ connection.writeKey }}", "password": ""},
    },
    "modules": ["ping.json"],
}
MODULE: dict[str, Any] = {
    "id": "demo.ping",
    "label": "Ping",
    "description": "Sends a ping.",
    "parameters": [
        {"name": "message", "type": "text", "required": True},
        {"name": "traits", "type": "collection", "fields": [{"name": "email", "type": "email"}]},
    ],
    "request": {
        "url": "/ping",
        "body": {"x": "{{ parameters.message }}", "email": "{{ parameters.traits.email }}"},
    },
}

#: Changes the app and module dicts in place; may return raw files to write over them
#: (name relative to the app folder -> text or bytes).
Mutation = Callable[[dict[str, Any], dict[str, Any]], "dict[str, str | bytes] | None"]


def _keys(path: str) -> list[str | int]:
    return [int(k) if k.isdigit() else k for k in path.split(".")]


def put(obj: Any, path: str, value: Any) -> None:
    """Set ``obj[a][b]...`` for a dotted path (digits index lists)."""
    *parents, last = _keys(path)
    for key in parents:
        obj = obj[key]
    obj[last] = value


def drop(obj: Any, path: str) -> None:
    *parents, last = _keys(path)
    for key in parents:
        obj = obj[key]
    del obj[last]


def build_app(root: Path, mutate: Mutation | None = None) -> Path:
    """Write the minimal app (mutated) into ``root/demo`` and return that folder."""
    folder = root / "demo"
    folder.mkdir(parents=True)
    app, module = copy.deepcopy(APP), copy.deepcopy(MODULE)
    raw = (mutate(app, module) if mutate else None) or {}
    (folder / "app.json").write_text(json.dumps(app, indent=2), encoding="utf-8")
    (folder / "ping.json").write_text(json.dumps(module, indent=2), encoding="utf-8")
    for name, content in raw.items():
        target = folder / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return folder


def load_error(root: Path, mutate: Mutation) -> ManifestError:
    """The ManifestError loading the mutated app raises (anything else propagates)."""
    folder = build_app(root, mutate)
    with pytest.raises(ManifestError) as info:
        connector.load(folder, packaged=False)
    return info.value


def _two_modules_same_id(app: dict[str, Any], module: dict[str, Any]) -> dict[str, str | bytes]:
    app["modules"] = ["ping.json", "ping2.json"]
    return {"ping2.json": json.dumps(module)}


def _escaping_module(app: dict[str, Any], module: dict[str, Any]) -> dict[str, str | bytes]:
    # The file exists: it is refused for where it is, not for being missing.
    app["modules"] = ["../x.json"]
    return {"../x.json": json.dumps(module)}


def _huge(app: dict[str, Any], module: dict[str, Any]) -> dict[str, str | bytes]:
    text = json.dumps(module)
    return {"ping.json": text[:-1] + " " * (MAX_MANIFEST_BYTES + 1) + "}"}


def _deep_body(depth: int) -> Mutation:
    """A request body nested ``depth`` lists deep: valid JSON, within json's own limit."""

    def mutate(app: dict[str, Any], module: dict[str, Any]) -> dict[str, str | bytes]:
        module["request"]["body"] = {"deep": "DEEP"}
        text = json.dumps(module).replace('"DEEP"', "[" * depth + "]" * depth)
        return {"ping.json": text}

    return mutate


DEEP = 100_000

# (id, mutation, file the error names, JSON path, substring of the message)
CASES: list[tuple[str, Mutation, str, str, str]] = [
    # Reading and parsing.
    (
        "invalid-json",
        lambda a, m: {"ping.json": '{\n  "id": "demo.ping",\n  oops\n}'},
        "ping.json",
        "$",
        "invalid JSON at line 3 column 3",
    ),
    ("invalid-json-app", lambda a, m: {"app.json": "{,}"}, "app.json", "$", "line 1 column 2"),
    ("not-utf8", lambda a, m: {"ping.json": b'{"id": "\xff\xfe"}'}, "ping.json", "$", "UTF-8"),
    ("module-not-object", lambda a, m: {"ping.json": "[1, 2]"}, "ping.json", "$", "dictionary"),
    ("app-not-object", lambda a, m: {"app.json": '"demo"'}, "app.json", "$", "dictionary"),
    ("huge-file", _huge, "ping.json", "$", f"larger than {MAX_MANIFEST_BYTES} bytes"),
    (
        "deep-lists",
        lambda a, m: {"ping.json": "[" * DEEP + "]" * DEEP},
        "ping.json",
        "$",
        "nested too deeply",
    ),
    (
        "deep-objects",
        lambda a, m: {"ping.json": '{"a":' * DEEP + "1" + "}" * DEEP},
        "ping.json",
        "$",
        "nested too deeply",
    ),
    (
        "deep-app",
        lambda a, m: {"app.json": "[" * DEEP + "]" * DEEP},
        "app.json",
        "$",
        "nested too deeply",
    ),
    # The format (pydantic).
    (
        "unknown-key-typo",
        lambda a, m: m.update(paramters=m.pop("parameters")),
        "ping.json",
        "$.paramters",
        "Extra inputs are not permitted",
    ),
    (
        "unknown-app-key",
        lambda a, m: put(a, "timeout_s", 5),
        "app.json",
        "$.timeout_s",
        "Extra inputs are not permitted",
    ),
    (
        "unknown-parameter-key",
        lambda a, m: put(m, "parameters.0.requird", True),
        "ping.json",
        "$.parameters[0].requird",
        "Extra inputs",
    ),
    (
        "missing-request",
        lambda a, m: drop(m, "request"),
        "ping.json",
        "$.request",
        "Field required",
    ),
    ("missing-base-url", lambda a, m: drop(a, "baseUrl"), "app.json", "$.baseUrl", "required"),
    (
        "parameter-type-txt",
        lambda a, m: put(m, "parameters.0.type", "txt"),
        "ping.json",
        "$.parameters[0].type",
        "'text'",
    ),
    (
        "bad-parameter-name",
        lambda a, m: put(m, "parameters.0.name", "my field"),
        "ping.json",
        "$.parameters[0].name",
        "pattern",
    ),
    (
        "select-without-options",
        lambda a, m: put(m, "parameters.0", {"name": "message", "type": "select"}),
        "ping.json",
        "$.parameters[0]",
        "a select parameter needs 'options'",
    ),
    (
        "options-on-text",
        lambda a, m: put(m, "parameters.0.options", [{"value": "a"}]),
        "ping.json",
        "$.parameters[0]",
        "'options' only applies to select",
    ),
    (
        "collection-without-fields",
        lambda a, m: drop(m, "parameters.1.fields"),
        "ping.json",
        "$.parameters[1]",
        "a collection parameter needs 'fields'",
    ),
    (
        "duplicate-parameter",
        lambda a, m: m["parameters"].append({"name": "message", "type": "number"}),
        "ping.json",
        "$",
        "duplicate parameter name 'message'",
    ),
    (
        "duplicate-collection-field",
        lambda a, m: m["parameters"][1]["fields"].append({"name": "email", "type": "text"}),
        "ping.json",
        "$.parameters[1]",
        "duplicate field name 'email'",
    ),
    (
        "bad-regex",
        lambda a, m: put(m, "parameters.0.pattern", "([a-z"),
        "ping.json",
        "$.parameters[0]",
        "'pattern' is not a valid regular expression",
    ),
    (
        "negative-max-length",
        lambda a, m: put(m, "parameters.0.maxLength", -1),
        "ping.json",
        "$.parameters[0].maxLength",
        "greater than or equal to 0",
    ),
    (
        "unknown-format",
        lambda a, m: put(m, "parameters.0.format", "currency2"),
        "ping.json",
        "$.parameters[0].format",
        "unknown format 'currency2', expected one of: currency",
    ),
    (
        "unknown-format-nested",
        lambda a, m: put(m, "parameters.1.fields.0.format", "currency2"),
        "ping.json",
        "$.parameters[1].fields[0].format",
        "unknown format 'currency2'",
    ),
    (
        "unknown-format-connection",
        lambda a, m: put(a, "connection.fields.1.format", "currency2"),
        "app.json",
        "$.connection.fields[1].format",
        "unknown format 'currency2'",
    ),
    (
        "duplicate-connection-field",
        lambda a, m: a["connection"]["fields"].append({"name": "region", "type": "text"}),
        "app.json",
        "$",
        "duplicate connection field name 'region'",
    ),
    (
        "bad-app-name",
        lambda a, m: put(a, "name", "Demo App"),
        "app.json",
        "$.name",
        "pattern",
    ),
    (
        "retry-attempts-zero",
        lambda a, m: put(a, "retry", {"attempts": 0}),
        "app.json",
        "$.retry.attempts",
        "greater than or equal to 1",
    ),
    # Templates.
    (
        "template-syntax",
        lambda a, m: put(m, "request.body.x", "{{ parameters.message "),
        "ping.json",
        "$.request.body.x",
        "bad template",
    ),
    (
        "template-syntax-in-list",
        lambda a, m: put(m, "request.body.x", ["ok", "{% if %}"]),
        "ping.json",
        "$.request.body.x[1]",
        "bad template",
    ),
    (
        "template-syntax-url",
        lambda a, m: put(m, "request.url", "/ping/{{ }}"),
        "ping.json",
        "$.request.url",
        "bad template",
    ),
    (
        "unknown-filter",
        lambda a, m: put(m, "request.body.x", "{{ parameters.message | shout }}"),
        "ping.json",
        "$.request.body.x",
        "No filter named 'shout'",
    ),
    (
        "removed-builtin-filter",
        lambda a, m: put(m, "request.body.x", "{{ parameters.message | attr('upper') }}"),
        "ping.json",
        "$.request.body.x",
        "No filter named 'attr'",
    ),
    (
        "unknown-parameter",
        lambda a, m: put(m, "request.body.x", "{{ parameters.nope }}"),
        "ping.json",
        "$.request.body.x",
        "unknown parameter 'parameters.nope', expected one of: message, traits",
    ),
    (
        "unknown-parameter-subscript",
        lambda a, m: put(m, "request.query", {"q": "{{ parameters['nope'] }}"}),
        "ping.json",
        "$.request.query.q",
        "unknown parameter 'parameters.nope'",
    ),
    (
        "unknown-collection-field",
        lambda a, m: put(m, "request.body.email", "{{ parameters.traits.nope }}"),
        "ping.json",
        "$.request.body.email",
        "unknown parameter 'parameters.traits.nope', expected one of: email",
    ),
    (
        "unknown-root-name",
        lambda a, m: put(m, "request.body.x", "{{ secrets.x }}"),
        "ping.json",
        "$.request.body.x",
        "unknown name 'secrets' in template",
    ),
    (
        "unknown-name-in-output",
        lambda a, m: put(m, "output", {"bundle": {"r": "{{ reponse.body }}"}}),
        "ping.json",
        "$.output.bundle.r",
        "unknown name 'reponse'",
    ),
    (
        "response-in-request",
        lambda a, m: put(m, "request.body.x", "{{ response.body }}"),
        "ping.json",
        "$.request.body.x",
        "unknown name 'response'",
    ),
    (
        "secret-in-module-request",
        lambda a, m: put(m, "request.headers", {"X-Key": "{{ connection.writeKey }}"}),
        "ping.json",
        "$.request.headers.X-Key",
        "connection field 'writeKey' is secret",
    ),
    (
        "secret-in-module-output",
        lambda a, m: put(m, "output", {"bundle": {"k": "{{ connection['writeKey'] }}"}}),
        "ping.json",
        "$.output.bundle.k",
        "is secret",
    ),
    (
        "secret-in-base-url",
        lambda a, m: put(a, "baseUrl", "https://api.example.com/{{ connection.writeKey }}"),
        "app.json",
        "$.baseUrl",
        "'writeKey'",
    ),
    (
        "unknown-connection-field-module",
        lambda a, m: put(m, "request.body.x", "{{ connection.regoin }}"),
        "ping.json",
        "$.request.body.x",
        "unknown connection field 'regoin', expected one of: region",
    ),
    (
        "unknown-connection-field-base-url",
        lambda a, m: put(a, "baseUrl", "https://{{ connection.regoin }}.example.com"),
        "app.json",
        "$.baseUrl",
        "unknown connection field 'regoin'",
    ),
    (
        "unknown-connection-field-auth",
        lambda a, m: put(a, "connection.auth.username", "{{ connection.writekey }}"),
        "app.json",
        "$.connection.auth.username",
        "unknown connection field 'writekey'",
    ),
    (
        "parameters-in-auth",
        lambda a, m: put(a, "connection.auth.username", "{{ parameters.message }}"),
        "app.json",
        "$.connection.auth.username",
        "unknown name 'parameters'",
    ),
    (
        "base-url-syntax",
        lambda a, m: put(a, "baseUrl", "https://{{ connection.region"),
        "app.json",
        "$.baseUrl",
        "bad template",
    ),
    # Auth, errors, constraints.
    (
        "unknown-auth-type",
        lambda a, m: put(a, "connection.auth.type", "oauth9"),
        "app.json",
        "$.connection.auth.type",
        "unknown auth type 'oauth9', expected one of: basic, bearer, header, headers, none",
    ),
    (
        "basic-without-username",
        lambda a, m: drop(a, "connection.auth.username"),
        "app.json",
        "$.connection.auth.username",
        "auth type 'basic' needs 'username'",
    ),
    (
        "header-without-value",
        lambda a, m: put(a, "connection.auth", {"type": "header", "header": "X-Key"}),
        "app.json",
        "$.connection.auth.value",
        "needs 'value'",
    ),
    (
        "errors-key-not-status",
        lambda a, m: put(a, "errors", {"notfound": "DataError"}),
        "app.json",
        "$.errors.notfound",
        "keys must be HTTP statuses",
    ),
    (
        "errors-key-out-of-range",
        lambda a, m: put(a, "errors", {"99": "DataError"}),
        "app.json",
        "$.errors.99",
        "keys must be HTTP statuses",
    ),
    (
        "errors-unknown-type",
        lambda a, m: put(a, "errors", {"404": "NotFoundError"}),
        "app.json",
        "$.errors.404",
        "unknown error type 'NotFoundError', expected one of: DataError",
    ),
    (
        "constraint-unknown-parameter",
        lambda a, m: put(m, "constraints", [{"oneOfRequired": ["message", "nope"]}]),
        "ping.json",
        "$.constraints[0].oneOfRequired",
        "unknown parameter 'nope', expected one of: message, traits",
    ),
    (
        "constraint-one-name",
        lambda a, m: put(m, "constraints", [{"oneOfRequired": ["message"]}]),
        "ping.json",
        "$.constraints[0].oneOfRequired",
        "at least 2",
    ),
    # Module files and ids.
    (
        "module-id-other-app",
        lambda a, m: put(m, "id", "other.ping"),
        "ping.json",
        "$.id",
        "module ids of app 'demo' start with 'demo.', got 'other.ping'",
    ),
    ("module-id-bad-pattern", lambda a, m: put(m, "id", "ping"), "ping.json", "$.id", "pattern"),
    (
        "duplicate-module-id",
        _two_modules_same_id,
        "ping2.json",
        "$.id",
        "duplicate module id 'demo.ping'",
    ),
    (
        "module-path-escapes",
        _escaping_module,
        "app.json",
        "$.modules[0]",
        "module files must be inside the app",
    ),
    (
        "missing-module-file",
        lambda a, m: put(a, "modules", ["ping.json", "missing.json"]),
        "missing.json",
        "$",
        "cannot read",
    ),
    (
        "deep-request-body-5000",
        _deep_body(5000),
        "ping.json",
        "$",
        "nested too deeply",
    ),
]
# Cases the engine gets wrong today; each is an engine bug (see the reason).
BUG_CASES = [
    pytest.param(
        "deep-request-body-600",
        _deep_body(600),
        "ping.json",
        "$",
        "nested too deeply",
        id="deep-request-body-600",
    ),
    pytest.param(
        "secret-in-base-url-message",
        lambda a, m: put(a, "baseUrl", "https://api.example.com/{{ connection.writeKey }}"),
        "app.json",
        "$.baseUrl",
        "is secret",
        id="secret-in-base-url-says-secret",
    ),
    pytest.param(
        "duplicate-nested-option-parameter",
        lambda a, m: m["parameters"].append(
            {
                "name": "mode",
                "type": "select",
                "options": [{"value": "a", "nested": [{"name": "message", "type": "number"}]}],
            }
        ),
        "ping.json",
        "$",
        "duplicate parameter name 'message'",
        id="duplicate-nested-option-parameter",
    ),
    pytest.param(
        "errors-key-leading-zero",
        lambda a, m: put(a, "errors", {"0404": "DataError"}),
        "app.json",
        "$.errors.0404",
        "keys must be HTTP statuses",
        id="errors-key-leading-zero",
    ),
    pytest.param(
        "errors-key-non-ascii-digits",
        lambda a, m: put(a, "errors", {"\u0664\u0660\u0664": "DataError"}),
        "app.json",
        "$.errors.\u0664\u0660\u0664",
        "keys must be HTTP statuses",
        id="errors-key-non-ascii-digits",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "file", "path", "message"),
    [pytest.param(*case, id=case[0]) for case in CASES] + BUG_CASES,
)
def test_manifest_error(
    tmp_path: Path, case: str, mutate: Mutation, file: str, path: str, message: str
) -> None:
    error = load_error(tmp_path, mutate)
    assert Path(error.source).name == file, error
    assert error.path == path, error
    assert message in error.message, error


def test_case_ids_are_unique() -> None:
    ids = [case[0] for case in CASES] + [p.id for p in BUG_CASES]
    assert len(ids) == len(set(ids))


def test_minimal_app_loads(tmp_path: Path) -> None:
    registry = connector.load(build_app(tmp_path), packaged=False)
    assert registry.module_ids() == ["demo.ping"]
    assert set(registry.apps) == {"demo"}
    module = registry.get("demo.ping")
    assert module.app.secret_fields == frozenset({"writeKey"})
    assert Path(module.source).name == "ping.json"


def test_minimal_app_loads_from_app_file_and_parent_folder(tmp_path: Path) -> None:
    folder = build_app(tmp_path)
    assert connector.load(folder / "app.json", packaged=False).module_ids() == ["demo.ping"]
    assert connector.load(tmp_path, packaged=False).module_ids() == ["demo.ping"]


def test_load_app_returns_app_and_modules(tmp_path: Path) -> None:
    app, modules = connector.load_app(build_app(tmp_path) / "app.json")
    assert app.name == "demo"
    assert [m.id for m in modules] == ["demo.ping"]


def test_packaged_apps() -> None:
    registry = connector.load()
    assert registry.module_ids() == SHIPPED_MODULES
    assert set(registry.apps) == {
        "clevertap",
        "livelike",
        "livelike_cloud",
        "segment",
        "segment_profiles",
    }
    assert registry.apps["segment"].secret_fields == frozenset({"writeKey", "sharedSecret"})
    assert registry.apps["livelike"].secret_fields == frozenset({"writeKey"})
    assert registry.apps["segment_profiles"].secret_fields == frozenset({"accessToken"})
    assert registry.apps["livelike_cloud"].secret_fields == frozenset({"producerToken"})
    assert registry.apps["clevertap"].secret_fields == frozenset({"accountId", "passcode"})


def test_load_only_the_named_apps(tmp_path: Path) -> None:
    """``apps`` loads the modules of the named apps only; the others are skipped after
    their app.json (so one app's broken module does not stop another app's run)."""
    folder = build_app(tmp_path)
    registry = connector.load(folder, packaged=True, apps={"demo"})
    assert set(registry.apps) == {"demo"}
    assert registry.module_ids() == ["demo.ping"]
    (folder / "ping.json").write_text("{not json", encoding="utf-8")
    segment = connector.load(folder, packaged=True, apps={"segment"})
    assert set(segment.apps) == {"segment"}
    assert segment.module_ids() == [m for m in SHIPPED_MODULES if m.startswith("segment.")]
    with pytest.raises(ManifestError):
        connector.load(folder, packaged=True, apps={"demo"})


def test_packaged_plus_extra_app(tmp_path: Path) -> None:
    registry = connector.load(build_app(tmp_path), packaged=True)
    assert "demo.ping" in registry
    assert "segment.track" in registry


def test_same_app_twice_fails(tmp_path: Path) -> None:
    """Two folders holding an app of the same name (one folder named twice loads once)."""
    import shutil

    folder = build_app(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with pytest.raises(ManifestError) as info:
        connector.load(folder, copy, packaged=False)
    assert info.value.path == "$.name"
    assert "app 'demo' is loaded twice" in info.value.message


def test_missing_path_fails(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as info:
        connector.load(tmp_path / "nowhere", packaged=False)
    assert "no such file or folder" in info.value.message


def test_manifest_error_str_names_file_and_path(tmp_path: Path) -> None:
    error = load_error(tmp_path, lambda a, m: put(m, "parameters.0.type", "txt"))
    text = str(error)
    assert error.source in text
    assert "ping.json" in text
    assert "$.parameters[0].type" in text
    assert error.message in text


def test_more_errors_are_counted(tmp_path: Path) -> None:
    def two_faults(app: dict[str, Any], module: dict[str, Any]) -> None:
        put(module, "parameters.0.type", "txt")
        put(module, "parameters.1.type", "txt")

    error = load_error(tmp_path, two_faults)
    assert error.path == "$.parameters[0].type"
    assert "(and 1 more error(s))" in error.message


def test_the_same_folder_named_twice_loads_once() -> None:
    registry = connector.load(Path(__file__).resolve().parent.parent / "manifests")
    assert "segment.track" in registry


def test_cached_request_heads_follow_a_replaced_module_and_never_share_query_lists(
    tmp_path: Path,
) -> None:
    """A literal request head is checked once per connection and module object: a
    module replaced under the same id gets its own, and query lists are per request."""

    def with_query(app: dict[str, Any], module: dict[str, Any]) -> None:
        module["request"]["query"] = {"tags": ["a", "b"], "q": 1}

    registry = connector.load(build_app(tmp_path / "one", with_query), packaged=False)
    engine = connector.Engine(registry)
    connection = {"writeKey": "wk_0123456789abcdef"}
    first = engine.prepare("demo.ping", connection, {"message": "hi"})
    first.request.query["tags"].append("INJECTED")
    second = engine.prepare("demo.ping", connection, {"message": "hi"})
    assert second.request.query == {"tags": ["a", "b"], "q": "1"}

    def moved(app: dict[str, Any], module: dict[str, Any]) -> None:
        module["request"].update({"url": "/v2/other", "method": "PUT"})

    app, modules = connector.load_app(build_app(tmp_path / "two", moved) / "app.json")
    registry.add(app, modules)
    third = engine.prepare("demo.ping", connection, {"message": "hi"})
    assert (third.request.method, third.request.url.rsplit("/", 2)[-2:]) == (
        "PUT",
        ["v2", "other"],
    )


def test_connection_field_names_are_one_namespace_with_option_fields(tmp_path: Path) -> None:
    """Connection fields are checked like parameters: a name nested under a select's
    option may not repeat a field of its level (the flat check let it through)."""

    def nested_duplicate(app: dict[str, Any], module: dict[str, Any]) -> None:
        app["connection"]["fields"].append(
            {
                "name": "plan",
                "type": "select",
                "options": [{"value": "a", "nested": [{"name": "region", "type": "text"}]}],
            }
        )

    error = load_error(tmp_path, nested_duplicate)
    assert "duplicate connection field name 'region'" in str(error)
