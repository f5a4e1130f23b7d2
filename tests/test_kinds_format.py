"""The format of the module kinds: each faulty manifest is refused at load time with the
file's JSON path and a message naming the rule (table-driven), and what the models
refuse the shipped JSON Schema refuses too."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import connector
from connector.format.manifest import module_schema
from tests.fakeapi import APP_DIR

Change = Callable[[dict[str, Any]], None]


def _load(tmp_path: Path, file: str, change: Change) -> connector.ManifestError:
    folder = tmp_path / "fakeapi"
    shutil.copytree(APP_DIR, folder)
    data = json.loads((folder / file).read_text())
    change(data)
    (folder / file).write_text(json.dumps(data))
    with pytest.raises(connector.ManifestError) as info:
        connector.load(folder, packaged=False)
    return info.value


def _drop(key: str) -> Change:
    return lambda d: d.pop(key)


MODULE_CASES: list[tuple[str, str, Change, str, str]] = [
    (
        "list_items.json",
        "search-without-iterate",
        lambda d: d["response"].pop("iterate"),
        "$.response",
        "needs 'response.iterate'",
    ),
    (
        "watch_records.json",
        "trigger-without-trigger",
        _drop("trigger"),
        "$.trigger",
        "needs 'trigger'",
    ),
    (
        "watch_records.json",
        "trigger-declares-limit",
        lambda d: d["parameters"].append({"name": "limit", "type": "integer"}),
        "$.parameters[1]",
        "the engine's",
    ),
    (
        "upload.json",
        "pagination-on-an-action",
        lambda d: d.update(pagination={"url": "/x"}),
        "$.pagination",
        "for searches and triggers",
    ),
    (
        "upload.json",
        "iterate-on-an-action",
        lambda d: d["response"].update(iterate="{{ response.body }}"),
        "$.response",
        "only checks errors",
    ),
    (
        "list_items.json",
        "state-outside-a-trigger",
        lambda d: d["request"]["query"].update(s="{{ state.since }}"),
        "$.request.query.s",
        "unknown name 'state'",
    ),
    (
        "list_items.json",
        "item-in-the-request",
        lambda d: d["request"]["query"].update(s="{{ item.id }}"),
        "$.request.query.s",
        "unknown name 'item'",
    ),
    (
        "list_items.json",
        "page-outside-pagination",
        lambda d: d["response"].update(limit="{{ page }}"),
        "$.response.limit",
        "unknown name 'page'",
    ),
    (
        "list_items.json",
        "unknown-parameter-in-pagination",
        lambda d: d["pagination"]["query"].update(x="{{ parameters.nope }}"),
        "$.pagination.query.x",
        "unknown parameter 'parameters.nope'",
    ),
    (
        "list_items.json",
        "max-pages-zero",
        lambda d: d["pagination"].update(maxPages=0),
        "$.pagination.maxPages",
        "greater than or equal to 1",
    ),
    (
        "upload.json",
        "error-without-valid",
        lambda d: d["response"].pop("valid"),
        "$.response.error",
        "give 'valid'",
    ),
    (
        "upload.json",
        "check-unknown-type",
        lambda d: d["response"]["error"].update(type="Oops"),
        "$.response.error.type",
        "unknown error type 'Oops'",
    ),
    (
        "upload.json",
        "check-reads-a-secret",
        lambda d: d["response"].update(valid="{{ connection.passcode }}"),
        "$.response.valid",
        "is secret",
    ),
    (
        "send_message.json",
        "remote-on-a-select",
        lambda d: d["parameters"][1].update(type="select", options=[{"value": "a"}]),
        "$.parameters[1]",
        "'remote' options apply to",
    ),
    (
        "send_message.json",
        "remote-without-value",
        lambda d: d["parameters"][1]["remote"].pop("value"),
        "$.parameters[1].remote.value",
        "Field required",
    ),
    (
        "get_traits.json",
        "errors-bad-status",
        lambda d: d.update(errors={"200": {"type": "DataError"}}),
        "$.errors.200",
        "4xx, 5xx",
    ),
    (
        "get_traits.json",
        "errors-unknown-field",
        lambda d: d.update(errors={"404": {"type": "DataError", "field": "nope"}}),
        "$.errors.404.field",
        "unknown parameter 'nope'",
    ),
    (
        "watch_records.json",
        "webhook-on-a-polling-trigger",
        lambda d: d.update(webhook={"requiredKeys": []}),
        "$.webhook",
        "instant triggers only",
    ),
]


@pytest.mark.parametrize(
    ("file", "change", "path", "message"),
    [pytest.param(f, c, p, m, id=i) for f, i, c, p, m in MODULE_CASES],
)
def test_module_faults(tmp_path: Path, file: str, change: Change, path: str, message: str) -> None:
    error = _load(tmp_path, file, change)
    assert error.source.endswith(file)
    assert (error.path, message in error.message) == (path, True), error


APP_CASES: list[tuple[str, Change, str, str]] = [
    (
        "headers-auth-bad-name",
        lambda d: d["connection"]["auth"]["headers"].update({"Bad Name": "x"}),
        "$.connection.auth.headers.Bad Name",
        "not a valid header name",
    ),
    (
        "headers-auth-unknown-field",
        lambda d: d["connection"]["auth"]["headers"].update({"X-Y": "{{ connection.nope }}"}),
        "$.connection.auth.headers.X-Y",
        "unknown connection field 'nope'",
    ),
    (
        "headers-auth-empty",
        lambda d: d["connection"]["auth"].pop("headers"),
        "$.connection.auth.headers",
        "needs 'headers'",
    ),
    (
        "bearer-without-value",
        lambda d: d["connection"].update(auth={"type": "bearer"}),
        "$.connection.auth.value",
        "needs 'value'",
    ),
    (
        "app-header-reads-a-secret",
        lambda d: d["headers"].update({"X-S": "{{ connection.passcode }}"}),
        "$.headers.X-S",
        "is secret",
    ),
    (
        "app-query-unknown-name",
        lambda d: d["query"].update(x="{{ parameters.a }}"),
        "$.query.x",
        "unknown name 'parameters'",
    ),
    (
        "verify-check-unknown-type",
        lambda d: d["connection"]["verify"]["error"].update(type="Nope"),
        "$.connection.verify.error.type",
        "unknown error type",
    ),
    (
        "verify-reads-a-secret",
        lambda d: d["connection"]["verify"]["request"].update(url="/{{ connection.passcode }}"),
        "$.connection.verify.request.url",
        "is secret",
    ),
    (
        "base-url-reads-a-secret",
        lambda d: d.update(baseUrl="https://{{ connection.accountId }}.example"),
        "$.baseUrl",
        "is secret",
    ),
]


@pytest.mark.parametrize(
    ("change", "path", "message"), [pytest.param(c, p, m, id=i) for i, c, p, m in APP_CASES]
)
def test_app_faults(tmp_path: Path, change: Change, path: str, message: str) -> None:
    error = _load(tmp_path, "app.json", change)
    assert (error.path, message in error.message) == (path, True), error


SCHEMA_CASES = ["search-without-iterate", "trigger-without-trigger", "webhook-on-a-polling-trigger"]


@pytest.mark.parametrize("case", SCHEMA_CASES)
def test_the_json_schema_refuses_the_kind_faults_too(case: str) -> None:
    file, _, change, _, _ = next(c for c in MODULE_CASES if c[1] == case)
    data = json.loads((APP_DIR / file).read_text())
    validator = jsonschema.Draft202012Validator(module_schema())
    assert validator.is_valid(data)
    broken = copy.deepcopy(data)
    change(broken)
    assert not validator.is_valid(broken)


def test_a_legacy_trigger_loads_as_an_instant_trigger() -> None:
    data = json.loads(
        (Path(__file__).resolve().parent.parent / "manifests/segment/watch_events.json").read_text()
    )
    data["kind"] = "trigger"
    from connector.format.manifest import ModuleManifest

    assert ModuleManifest.model_validate(data).kind == "instant_trigger"
    assert jsonschema.Draft202012Validator(module_schema()).is_valid(data)
