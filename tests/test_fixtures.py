"""Every shipped module's own examples, and the fixture runner that checks them.

``test_shipped_case`` runs each case of ``manifests/<app>/tests/*.json`` as one pytest
test, so the suite covers every module by the examples its integrator wrote. The rest
checks the runner: that it catches a wrong request, output or error and says where.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import connector
from connector.errors import ManifestError
from connector.tools.fixtures import (
    FixtureCase,
    FixtureFile,
    fixture_path,
    fixture_schema,
    load_fixture,
    run_case,
    run_fixtures,
)
from tests.conftest import SHIPPED_MODULES, run_cli

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = connector.load()
SHIPPED = [
    (module.id, case.name)
    for module in sorted(REGISTRY, key=lambda m: m.id)
    if fixture_path(module).is_file()
    for case in load_fixture(fixture_path(module)).cases
]


@pytest.mark.parametrize(("module_id", "case_name"), SHIPPED, ids=[f"{m}: {c}" for m, c in SHIPPED])
def test_shipped_case(module_id: str, case_name: str) -> None:
    module = REGISTRY.get(module_id)
    fixture = load_fixture(fixture_path(module))
    case = next(c for c in fixture.cases if c.name == case_name)
    result = run_case(REGISTRY, module, fixture, case)
    assert result.ok, "\n".join(result.problems)


@pytest.mark.parametrize("module_id", SHIPPED_MODULES)
def test_every_shipped_module_has_examples_of_success_and_failure(module_id: str) -> None:
    module = REGISTRY.get(module_id)
    path = fixture_path(module)
    assert path.is_file(), f"{module_id} has no fixture file {path}"
    fixture = load_fixture(path)
    assert fixture.module == module_id
    assert any(c.output for c in fixture.cases), "no case checks an output bundle"
    assert any(c.error for c in fixture.cases), "no case checks an error"
    if not module.is_trigger:
        # A module without a body (a search's GET) shows its request by its URL.
        bodyless = module.manifest.request is not None and module.manifest.request.body is None
        assert any(
            c.request and ("body" in c.request or (bodyless and "url" in c.request))
            for c in fixture.cases
        ) or (module.manifest.request is not None and module.manifest.request.body is not None), (
            "no case checks the request"
        )
    names = [c.name for c in fixture.cases]
    assert len(names) == len(set(names)), "case names must be unique"


def test_run_fixtures_covers_all_shipped_cases() -> None:
    results = run_fixtures(REGISTRY)
    assert [r for r in results if not r.ok] == []
    assert len(results) == len(SHIPPED)
    assert {r.module for r in results} == set(SHIPPED_MODULES)


def test_fixture_schema_is_shipped_and_fixtures_follow_it() -> None:
    path = ROOT / "connector" / "format" / "schema" / "fixture.schema.json"
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(fixture_schema(), indent=2) + "\n", (
        "connector/format/schema/fixture.schema.json is stale: run "
        "`connector schema --out connector/format/schema`"
    )
    validator = Draft202012Validator(json.loads(text))
    for file in sorted((ROOT / "manifests").glob("*/tests/*.json")):
        data = json.loads(file.read_text(encoding="utf-8"))
        errors = list(validator.iter_errors(data))
        assert not errors, f"{file}: {errors[0].json_path}: {errors[0].message}"
        assert (file.parent / data["$schema"]).resolve() == path.resolve()


# -- the runner catches mistakes ------------------------------------------------------------

TRACK_CASE: dict[str, Any] = {
    "name": "track",
    "parameters": {"event": "E", "userId": "u", "revenue": "2.5"},
    "request": {
        "method": "POST",
        "url": "https://api.segment.io/v1/track",
        "body": {
            "type": "track",
            "event": "E",
            "userId": "u",
            "timestamp": "{{ run.timestamp }}",
            "messageId": "{{ run.id }}",
            "properties": {"revenue": 2.5},
            "context": {"library": "{{ engine }}"},
        },
    },
    "response": {"status": 200, "body": {"success": True}},
    "output": [
        {
            "type": "track",
            "event": "E",
            "userId": "u",
            "timestamp": "{{ run.timestamp }}",
            "messageId": "{{ run.id }}",
            "properties": {"revenue": 2.5},
            "context": {"library": "{{ engine }}"},
            "success": True,
        }
    ],
}


def _put(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        data = data[key]
    data[last] = value


@pytest.mark.parametrize(
    ("change", "value", "problem"),
    [
        (None, None, None),
        ("request.method", "PUT", 'request.method: expected "PUT", got "POST"'),
        ("request.url", "https://api.segment.io/v1/page", "request.url: expected"),
        (
            "request.body.properties.revenue",
            "2.5",
            'request.body.properties.revenue: expected "2.5", got 2.5',
        ),
        ("request.body.event", "F", 'request.body.event: expected "F", got "E"'),
        ("request.body.extra", 1, "request.body.extra: missing"),
        ("request.body.properties", {}, "request.body.properties.revenue: not expected"),
        ("output", [], "output: expected 0 item(s), got 1"),
        ("response.body", {"success": False}, "output[0].success: expected true, got false"),
        ("response.status", 500, "unexpected RuntimeError for the response"),
        ("parameters.currency", "nope", "unexpected DataError before sending"),
    ],
)
def test_runner_reports_where_a_case_differs(
    change: str | None, value: Any, problem: str | None
) -> None:
    case = copy.deepcopy(TRACK_CASE)
    if change is not None:
        _put(case, change, value)
    module = REGISTRY.get("segment.track")
    fixture = FixtureFile(module="segment.track", connection={"writeKey": "wk_12345"}, cases=[case])
    result = run_case(REGISTRY, module, fixture, fixture.cases[0])
    if problem is None:
        assert result.ok, result.problems
    else:
        assert not result.ok
        assert any(problem in p for p in result.problems), result.problems


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        ({"type": "DataError", "field": "event"}, None),
        ({"type": "DataError", "field": "event", "message": "is required"}, None),
        ({"type": "DataError"}, None),
        ({"type": "DataError", "field": None}, "error.field: expected None, got 'event'"),
        ({"type": "DataError", "field": "userId"}, "error.field: expected 'userId', got 'event'"),
        ({"type": "RateLimitError"}, "error: expected RateLimitError, got DataError"),
        ({"type": "DataError", "message": "nope"}, "error.message: expected it to contain 'nope'"),
    ],
)
def test_runner_checks_errors(error: dict[str, Any], problem: str | None) -> None:
    module = REGISTRY.get("segment.track")
    case = FixtureCase.model_validate({"name": "c", "parameters": {"userId": "u"}, "error": error})
    fixture = FixtureFile(module="segment.track", connection={"writeKey": "wk_12345"}, cases=[case])
    result = run_case(REGISTRY, module, fixture, case)
    assert result.ok is (problem is None), result.problems
    if problem:
        assert any(problem in p for p in result.problems), result.problems


def test_an_expected_error_that_does_not_happen_is_reported() -> None:
    module = REGISTRY.get("segment.track")
    case = FixtureCase.model_validate(
        {"name": "c", "parameters": {"event": "E", "userId": "u"}, "error": {"type": "DataError"}}
    )
    fixture = FixtureFile(module="segment.track", connection={"writeKey": "wk_12345"}, cases=[case])
    [problem] = run_case(REGISTRY, module, fixture, case).problems
    assert problem.startswith("expected DataError, got 1 output bundle(s)")


def test_trigger_cases_need_a_delivery_and_actions_none() -> None:
    trigger = REGISTRY.get("segment.watch_events")
    case = FixtureCase.model_validate({"name": "c", "request": {"url": "x"}})
    fixture = FixtureFile(module=trigger.id, cases=[case])
    assert "a case gives a 'delivery'" in run_case(REGISTRY, trigger, fixture, case).problems[0]
    action = REGISTRY.get("segment.track")
    case = FixtureCase.model_validate({"name": "c", "delivery": {}, "output": []})
    fixture = FixtureFile(module=action.id, cases=[case])
    assert "is not a trigger" in run_case(REGISTRY, action, fixture, case).problems[0]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"name": "c"}, "expects a 'request', an 'output' or an 'error'"),
        ({"name": "c", "output": [], "error": {"type": "DataError"}}, "not both"),
        ({"name": "c", "error": {"type": "Oops"}}, "unknown error type 'Oops', expected one of"),
        ({"name": "c", "request": {"bdy": {}}}, "unknown request key 'bdy'"),
        ({"name": "c", "output": [], "paramters": {}}, "Extra inputs"),
        ({"name": "", "output": []}, "at least 1 character"),
    ],
)
def test_bad_fixture_files_name_the_fault(
    tmp_path: Path, case: dict[str, Any], message: str
) -> None:
    path = tmp_path / "track.json"
    path.write_text(json.dumps({"module": "segment.track", "cases": [case]}))
    with pytest.raises(ManifestError) as info:
        load_fixture(path)
    assert info.value.path.startswith("$.cases[0]")
    assert message in info.value.message


def test_unreadable_fixture_files(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("{")
    with pytest.raises(ManifestError, match="invalid JSON at line 1"):
        load_fixture(path)
    with pytest.raises(ManifestError, match="cannot read"):
        load_fixture(tmp_path / "missing.json")


def _copy_segment(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "apps" / "segment"
    shutil.copytree(ROOT / "manifests" / "segment", target)
    return target


def test_a_module_without_fixtures_fails(tmp_path: Path) -> None:
    app = _copy_segment(tmp_path)
    (app / "tests" / "alias.json").unlink()
    results = run_fixtures(connector.load(app, packaged=False), "segment.alias")
    [result] = results
    assert not result.ok
    assert "no fixture file" in result.problems[0]


def test_a_fixture_file_for_another_module_is_an_error(tmp_path: Path) -> None:
    app = _copy_segment(tmp_path)
    data = json.loads((app / "tests" / "alias.json").read_text())
    data["module"] = "segment.track"
    (app / "tests" / "alias.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        run_fixtures(connector.load(app, packaged=False), "segment")
    assert "fixtures of 'segment.alias', got 'segment.track'" in info.value.message


def test_run_fixtures_unknown_target() -> None:
    with pytest.raises(LookupError, match="unknown app or module 'nope', expected one of"):
        run_fixtures(REGISTRY, "nope")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args)


def test_cli_test_passes_on_the_shipped_apps() -> None:
    done = _cli("test", "livelike")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    livelike.track_event: Badge Rewarded" in done.stdout
    assert done.stdout.rstrip().endswith("passed, 0 failed (1 module(s))")


def test_cli_test_fails_and_shows_the_difference(tmp_path: Path) -> None:
    app = _copy_segment(tmp_path)
    path = app / "tests" / "alias.json"
    data = json.loads(path.read_text())
    data["cases"][0]["request"]["body"]["userId"] = "someone-else"
    path.write_text(json.dumps(data))
    done = _cli("test", "segment.alias", "--manifests", str(app), "--no-packaged", "-q")
    assert done.returncode == 1
    assert "FAIL  segment.alias: the anonymous ID becomes the user ID" in done.stdout
    assert 'request.body.userId: expected "someone-else", got "person-1"' in done.stdout
    assert "ok  " not in done.stdout  # --quiet prints failures only
    assert "1 failed" in done.stdout


def test_cli_test_unknown_target() -> None:
    done = _cli("test", "nope")
    assert done.returncode == 2
    assert json.loads(done.stderr)["error"]["field"] == "target"


def test_output_keys_must_be_declared_output_fields(tmp_path: Path) -> None:
    app = _copy_segment(tmp_path)
    path = app / "alias.json"
    data = json.loads(path.read_text())
    data["output"]["fields"] = [f for f in data["output"]["fields"] if f["name"] != "success"]
    path.write_text(json.dumps(data))
    results = run_fixtures(connector.load(app, packaged=False), "segment.alias")
    [failed] = [r for r in results if not r.ok]
    assert failed.problems == [
        "output[0].success: not declared in the module's output.fields, so builders cannot "
        "map it before the first run"
    ]
