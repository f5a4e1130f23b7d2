"""Fixture tests: each module's own examples, run by ``connector test`` and by pytest.

A module is proven by examples an integrator writes without reading engine code:
parameters (and context) in, the exact request out; a made-up response in, the exact
output bundles out; or bad input in, the expected error out. For a trigger: a delivery
(headers and body) in, the bundles or the error out.

They live beside the module, in the app's ``tests/`` folder, one file per module file
(``manifests/segment/tests/track.json`` for ``manifests/segment/track.json``). The
loader never reads that folder, and the package ships it with the manifests.

Nothing is sent over the network: the request is checked as prepared, and the response
comes from the fixture through httpx's mock transport, so status codes map onto Make's
error types exactly as in a real run. Expected values may use templates over ``run``
(``"{{ run.id }}"``: the message ID generated for this run), ``engine`` and ``app``, so
generated IDs and times are checked exactly rather than skipped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.core.engine import ENGINE_INFO, Engine
from connector.core.loader import read_model
from connector.core.redaction import redact_text
from connector.core.registry import LoadedModule, Registry
from connector.errors import ERROR_TYPES, ManifestError, RunError
from connector.format.manifest import RetrySpec, json_schema
from connector.templating.templates import RENDER_FAILURES, TemplateTree

__all__ = [
    "FIXTURES_DIR",
    "CaseResult",
    "Delivery",
    "ExpectedError",
    "FixtureCase",
    "FixtureFile",
    "FixtureResponse",
    "check_fixture",
    "fixture_path",
    "fixture_schema",
    "load_fixture",
    "run_fixtures",
]

#: The folder of an app that holds its modules' fixture files.
FIXTURES_DIR = "tests"
_MAX_PROBLEMS = 10


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ExpectedError(_Model):
    """The error a case must raise. Keys left out are not checked."""

    type: str = Field(description="Make's error type, e.g. DataError.")
    field: str | None = Field(default=None, description="The field the error names.")
    message: str | None = Field(default=None, description="Text the message must contain.")

    @model_validator(mode="after")
    def _known_type(self) -> ExpectedError:
        if self.type not in ERROR_TYPES:
            raise ValueError(
                f"unknown error type {self.type!r}, expected one of: {', '.join(ERROR_TYPES)}"
            )
        return self


class FixtureResponse(_Model):
    """What the remote answers to the case's request."""

    status: int = Field(default=200, ge=100, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(default=None, description="An object or list is sent as JSON.")


class Delivery(_Model):
    """A webhook delivery to a trigger, as the host received it."""

    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(
        default=None,
        description="Sent as Python's json.dumps writes it (', ' and ': ' "
        "separators); give 'raw' for exact bytes.",
    )
    raw: str | None = Field(default=None, description="The body as exact text, instead of body.")
    sign: bool = Field(
        default=True,
        description="Add a valid signature header (from the connection's shared secret) "
        "unless the headers already carry one.",
    )


class FixtureCase(_Model):
    """One example: input, and the request, output or error it must give."""

    name: str = Field(min_length=1)
    connection: dict[str, Any] = Field(
        default_factory=dict, description="Merged over the file's connection; null removes."
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    request: dict[str, Any] | None = Field(
        default=None,
        description="The expected request: any of method, url, headers, body (exact).",
    )
    response: FixtureResponse | None = None
    responses: list[FixtureResponse] | None = Field(
        default=None,
        description="Searches and polling triggers: the answers to their requests, in "
        "order (one a page); instead of 'response'.",
    )
    state: dict[str, Any] | None = Field(
        default=None, description="Polling triggers: the state the poll starts from."
    )
    new_state: dict[str, Any] | None = Field(
        default=None,
        alias="newState",
        description="Polling triggers: the state the poll must return (exact).",
    )
    delivery: Delivery | None = Field(default=None, description="Instant triggers: the delivery.")
    output: list[Any] | None = Field(default=None, description="The exact output bundles.")
    error: ExpectedError | None = None

    @model_validator(mode="after")
    def _expects_something(self) -> FixtureCase:
        if self.request is None and self.output is None and self.error is None:
            raise ValueError("a case expects a 'request', an 'output' or an 'error'")
        if self.output is not None and self.error is not None:
            raise ValueError("a case expects an 'output' or an 'error', not both")
        if self.response is not None and self.responses is not None:
            raise ValueError("a case gives 'response' or 'responses', not both")
        if self.request is not None:
            unknown = set(self.request) - {"method", "url", "headers", "body"}
            if unknown:
                raise ValueError(
                    f"unknown request key {sorted(unknown)[0]!r}, expected one of: "
                    "method, url, headers, body"
                )
        return self


class FixtureFile(_Model):
    """The examples of one module."""

    schema_: str | None = Field(default=None, alias="$schema")
    module: str = Field(description="The module id, e.g. segment.track.")
    connection: dict[str, Any] = Field(
        default_factory=dict, description="The connection every case starts from."
    )
    cases: list[FixtureCase] = Field(min_length=1)


def fixture_schema() -> dict[str, Any]:
    """The JSON Schema of fixture files, for editors (``connector schema``)."""
    return json_schema(FixtureFile, "fixture")


def fixture_path(module: LoadedModule) -> Path:
    """Where a module's fixture file lives: ``<app>/tests/<module file name>``."""
    source = Path(module.source)
    return source.parent / FIXTURES_DIR / source.name


def load_fixture(path: Path) -> FixtureFile:
    """Read and check one fixture file; a broken one is a ManifestError (file + path)."""
    return read_model(path, FixtureFile)


@dataclass
class CaseResult:
    """The outcome of one case; ``problems`` say what differed, first ones first."""

    module: str
    case: str
    source: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_fixtures(registry: Registry, only: str | None = None) -> list[CaseResult]:
    """Run the fixtures of every module (or of one app or module id).

    A module without a fixture file is a failed result of its own, so an app cannot
    ship a module no example covers.
    """
    modules = [
        m
        for m in sorted(registry, key=lambda m: m.id)
        if only is None or only in (m.id, m.app.name)
    ]
    if only is not None and not modules:
        raise LookupError(
            f"unknown app or module {only!r}, expected one of: "
            + ", ".join(sorted({*registry.apps, *registry.module_ids()}))
        )
    results: list[CaseResult] = []
    for module in modules:
        path = fixture_path(module)
        if not path.is_file():
            results.append(
                CaseResult(module.id, "(no fixtures)", str(path), [f"no fixture file: {path}"])
            )
            continue
        fixture = load_fixture(path)
        if fixture.module != module.id:
            raise ManifestError(
                str(path),
                "$.module",
                f"this file holds the fixtures of {module.id!r}, got {fixture.module!r}",
            )
        for case in fixture.cases:
            results.append(run_case(registry, module, fixture, case, str(path)))
    return results


def run_case(
    registry: Registry,
    module: LoadedModule,
    fixture: FixtureFile,
    case: FixtureCase,
    source: str = "<fixture>",
) -> CaseResult:
    """Run one case and compare; never raises for a mismatch, only reports it."""
    result = CaseResult(module.id, case.name, source)
    connection = {
        k: v for k, v in {**fixture.connection, **case.connection}.items() if v is not None
    }
    answers = list(case.responses or [case.response or FixtureResponse()])
    asked: list[int] = [0]

    def answer(request: httpx.Request) -> httpx.Response:
        index = asked[0]
        asked[0] += 1
        if index >= len(answers):
            return httpx.Response(
                599, text=f"the case gives {len(answers)} response(s); request {index + 1} has none"
            )
        return _answer(answers[index])

    transport = httpx.MockTransport(answer)
    with (
        httpx.Client(transport=transport) as client,
        Engine(registry, client=client, retry=RetrySpec(attempts=1)) as engine,
    ):
        if module.is_instant:
            _run_trigger(engine, module, case, connection, result)
        elif module.is_polling:
            _run_poll(engine, module, case, connection, result)
        else:
            _run_action(engine, module, case, connection, result)
    return result


def _answer(response: FixtureResponse) -> httpx.Response:
    if isinstance(response.body, dict | list):
        return httpx.Response(response.status, headers=response.headers, json=response.body)
    content = b"" if response.body is None else str(response.body).encode("utf-8")
    return httpx.Response(response.status, headers=response.headers, content=content)


def _run_action(
    engine: Engine,
    module: LoadedModule,
    case: FixtureCase,
    connection: dict[str, Any],
    result: CaseResult,
) -> None:
    if case.delivery is not None:
        result.problems.append(f"{module.id} is not a trigger: 'delivery' is for triggers")
        return
    try:
        prepared = engine.prepare(module.id, connection, case.parameters, case.context)
    except RunError as exc:
        _check_error(case, exc, result, stage="before sending")
        return
    scope = _expectation_scope(module, prepared.run)
    if case.request is not None:
        actual = prepared.redacted()
        expected = _expected(case.request, scope, "request", result)
        for key in ("method", "url", "headers", "body"):
            if key in case.request:
                _diff(expected.get(key), actual.get(key), f"request.{key}", result.problems)
    if case.output is None and case.error is None:
        return
    try:
        if module.paging is not None:
            from connector.runs.search import run_search

            bundles = run_search(engine, prepared)
        else:
            response, _ = engine.send(prepared.module, prepared.request, prepared.connection)
            if module.response_check is not None:
                engine.check_body(prepared, response)
            bundles = engine.finish(prepared, response)
    except RunError as exc:
        _check_error(case, exc, result, stage="for the response")
        return
    _check_output(module, case, bundles, scope, result)


def _run_poll(
    engine: Engine,
    module: LoadedModule,
    case: FixtureCase,
    connection: dict[str, Any],
    result: CaseResult,
) -> None:
    if case.delivery is not None or case.request is not None:
        result.problems.append(
            f"{module.id} is a polling trigger: a case gives 'responses' (and a 'state'), "
            "not a request or delivery"
        )
        return
    try:
        bundles, state = engine.poll(module.id, connection, case.parameters, case.state)
    except RunError as exc:
        _check_error(case, exc, result, stage="for the poll")
        return
    _check_output(module, case, bundles, _expectation_scope(module, {}), result)
    if case.new_state is not None:
        _diff(case.new_state, state, "newState", result.problems)


def _run_trigger(
    engine: Engine,
    module: LoadedModule,
    case: FixtureCase,
    connection: dict[str, Any],
    result: CaseResult,
) -> None:
    from connector.runs.trigger import sign

    if case.delivery is None or case.request is not None or case.response is not None:
        result.problems.append(
            f"{module.id} is a trigger: a case gives a 'delivery', not a request or response"
        )
        return
    delivery = case.delivery
    body = (
        delivery.raw.encode("utf-8")
        if delivery.raw is not None
        else json.dumps(delivery.body, ensure_ascii=False).encode("utf-8")
    )
    headers = dict(delivery.headers)
    signature = module.manifest.webhook.signature if module.manifest.webhook else None
    given = {k.lower() for k in headers}
    if signature is not None and delivery.sign and signature.header.lower() not in given:
        secret = connection.get(signature.secret)
        if isinstance(secret, str) and secret:
            headers[signature.header] = sign(signature, secret, body)
    try:
        bundles = engine.handle_webhook(module.id, connection, case.parameters, headers, body)
    except RunError as exc:
        _check_error(case, exc, result, stage="for the delivery")
        return
    _check_output(module, case, bundles, _expectation_scope(module, {}), result)


def check_fixture(module: LoadedModule, fixture: FixtureFile, path: Path) -> None:
    """An example file must fit its module: its id, parameter and connection names that
    exist, and the keys of the module's kind. ``connector validate`` runs this, so a
    stale example fails there, not only in ``connector test``."""
    from connector.format.manifest import walk_parameters

    source = str(path)
    if fixture.module != module.id:
        raise ManifestError(
            source,
            "$.module",
            f"this file holds the examples of {module.id!r}, got {fixture.module!r}",
        )
    names = {p.name for p in walk_parameters(module.manifest.parameters)}
    fields = {f.name for f in module.app.manifest.connection.fields}
    kind = module.manifest.kind
    _known(source, "$.connection", fixture.connection, fields, "connection field")
    for i, case in enumerate(fixture.cases):
        at = f"$.cases[{i}]"
        if case.error is None:  # a case may give an unknown name to show it is refused
            _known(source, f"{at}.parameters", case.parameters, names, "parameter")
            _known(source, f"{at}.connection", case.connection, fields, "connection field")
        wrong = {
            "delivery": case.delivery is not None and kind != "instant_trigger",
            "response": case.response is not None and kind == "instant_trigger",
            "responses": case.responses is not None and kind not in ("search", "trigger"),
            "state": case.state is not None and kind != "trigger",
            "newState": case.new_state is not None and kind != "trigger",
            "request": case.request is not None and kind in ("trigger", "instant_trigger"),
        }
        for key, bad in wrong.items():
            if bad:
                raise ManifestError(source, f"{at}.{key}", f"'{key}' does not apply to a {kind}")


def _known(source: str, at: str, given: Mapping[str, Any], known: set[str], what: str) -> None:
    for name in given:
        if name not in known:
            raise ManifestError(
                source,
                f"{at}.{name}",
                f"unknown {what} {name!r}, expected one of: {', '.join(sorted(known)) or '(none)'}",
            )


def _expectation_scope(module: LoadedModule, run: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "run": run,
        "engine": ENGINE_INFO,
        "app": module.app.info,
    }


def _expected(value: Any, scope: Mapping[str, Any], what: str, result: CaseResult) -> Any:
    try:
        return TemplateTree(value).render(scope)
    except RENDER_FAILURES as exc:
        result.problems.append(f"{what}: the expected value's template failed: {exc}")
        return value


def _check_output(
    module: LoadedModule,
    case: FixtureCase,
    bundles: list[Any],
    scope: Mapping[str, Any],
    result: CaseResult,
) -> None:
    if case.error is not None:
        result.problems.append(
            f"expected {case.error.type}, got {len(bundles)} output bundle(s): "
            + redact_text(json.dumps(bundles, ensure_ascii=False, default=str))[:300]
        )
        return
    if case.output is not None:
        expected = _expected(case.output, scope, "output", result)
        _diff(expected, bundles, "output", result.problems)
        _check_declared(module, bundles, result)


def _check_declared(module: LoadedModule, bundles: list[Any], result: CaseResult) -> None:
    """Builders map output fields before the first run: every key must be declared."""
    declared = {f.name for f in module.manifest.output.fields}
    if not declared:
        return
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, dict):
            continue
        for key in bundle:
            if key not in declared:
                result.problems.append(
                    f"output[{i}].{key}: not declared in the module's output.fields, so "
                    "builders cannot map it before the first run"
                )


def _check_error(case: FixtureCase, exc: RunError, result: CaseResult, stage: str) -> None:
    expected = case.error
    if expected is None:
        result.problems.append(f"unexpected {exc.type} {stage}: {exc.message}")
        return
    if exc.type != expected.type:
        result.problems.append(f"error: expected {expected.type}, got {exc.type}: {exc.message}")
    if "field" in expected.model_fields_set and exc.field != expected.field:
        result.problems.append(f"error.field: expected {expected.field!r}, got {exc.field!r}")
    if expected.message is not None and expected.message not in exc.message:
        result.problems.append(
            f"error.message: expected it to contain {expected.message!r}, got {exc.message!r}"
        )


def _diff(expected: Any, actual: Any, path: str, problems: list[str]) -> None:
    """Append where ``actual`` differs from ``expected``, by JSON path (a few at most)."""
    if len(problems) >= _MAX_PROBLEMS:
        return
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in expected:
            if key not in actual:
                problems.append(f"{path}.{key}: missing (expected {_show(expected[key])})")
            else:
                _diff(expected[key], actual[key], f"{path}.{key}", problems)
        for key in actual:
            if key not in expected:
                problems.append(f"{path}.{key}: not expected, got {_show(actual[key])}")
        return
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            problems.append(f"{path}: expected {len(expected)} item(s), got {len(actual)}")
        for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
            _diff(want, got, f"{path}[{i}]", problems)
        return
    if type(expected) is not type(actual) or expected != actual:
        problems.append(f"{path}: expected {_show(expected)}, got {_show(actual)}")


def _show(value: Any) -> str:
    text = redact_text(json.dumps(value, ensure_ascii=False, default=str))
    return text if len(text) <= 120 else text[:117] + "..."
