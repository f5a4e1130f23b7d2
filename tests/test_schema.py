"""The shipped JSON Schemas: generated from the pydantic models, never drifting from them.

Editors validate manifests through their ``"$schema"`` key against
``connector/format/schema/*.schema.json``; the engine validates with the pydantic models. These
tests keep the two in step: the files equal what the models generate, every shipped
manifest passes both, and structural faults the models reject the schemas reject too.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

import connector
from connector.errors import ManifestError
from connector.format.manifest import AppManifest, ModuleManifest, app_schema, module_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "connector" / "format" / "schema"
MANIFESTS = ROOT / "manifests"
REGENERATE = "run `connector schema --out connector/format/schema` to regenerate it"

GENERATED: dict[str, Callable[[], dict[str, Any]]] = {
    "app.schema.json": app_schema,
    "module.schema.json": module_schema,
}


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _validator(name: str) -> Draft202012Validator:
    """The generated schema: agreement is checked apart from drift (tested above)."""
    return Draft202012Validator(GENERATED[name]())


def _manifest_files() -> list[Path]:
    return sorted(MANIFESTS.glob("*/*.json"))


def _model_for(path: Path) -> type[BaseModel]:
    return AppManifest if path.name == "app.json" else ModuleManifest


def _schema_for(path: Path) -> str:
    return "app.schema.json" if path.name == "app.json" else "module.schema.json"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_shipped_schema_equals_generated(name: str) -> None:
    text = (SCHEMA_DIR / name).read_text(encoding="utf-8")
    assert json.loads(text) == GENERATED[name](), (
        f"connector/format/schema/{name} is stale: {REGENERATE}"
    )
    # Byte for byte what `connector schema --out` writes, so regenerating is a no-op diff.
    assert text == json.dumps(GENERATED[name](), indent=2) + "\n", (
        f"connector/format/schema/{name} is not formatted as generated: {REGENERATE}"
    )


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = _read(SCHEMA_DIR / name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/" + name)


def test_there_are_shipped_manifests() -> None:
    names = {p.name for p in _manifest_files()}
    assert {"app.json", "identify.json", "track.json", "api_call.json"} <= names


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_manifest_validates_against_its_schema(path: Path) -> None:
    data = _read(path)
    # The "$schema" key is what editors follow: it must point at the shipped file.
    assert "$schema" in data, f"{path} has no $schema key"
    target = (path.parent / data["$schema"]).resolve()
    assert target == (SCHEMA_DIR / _schema_for(path)).resolve(), data["$schema"]
    errors = sorted(Draft202012Validator(_read(target)).iter_errors(data), key=str)
    assert not errors, f"{path}: {errors[0].json_path}: {errors[0].message}"
    _model_for(path).model_validate(data)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = _read(MANIFESTS / "segment" / name)
    return data


Mutation = Callable[[dict[str, Any]], Any]

# Structural faults (the kind a JSON Schema can express): pydantic and the schema agree.
MODULE_FAULTS: list[tuple[str, Mutation]] = [
    ("unknown-key", lambda d: d.update(paramters=d.pop("parameters"))),
    ("parameter-type-txt", lambda d: d["parameters"][0].update(type="txt")),
    ("parameter-unknown-key", lambda d: d["parameters"][0].update(requird=True)),
    ("parameter-bad-name", lambda d: d["parameters"][0].update(name="event name")),
    ("parameter-missing-type", lambda d: d["parameters"][0].pop("type")),
    ("missing-request", lambda d: d.pop("request")),
    ("missing-url", lambda d: d["request"].pop("url")),
    ("request-unknown-key", lambda d: d["request"].update(bdy={})),
    ("bad-id", lambda d: d.update(id="Segment.Track")),
    ("label-not-string", lambda d: d.update(label=5)),
    ("unknown-kind", lambda d: d.update(kind="trigger")),
    ("negative-max-length", lambda d: d["parameters"][0].update(maxLength=-1)),
    ("max-body-bytes-zero", lambda d: d["request"].update(maxBodyBytes=0)),
    ("constraint-one-name", lambda d: d["constraints"][0].update(oneOfRequired=["userId"])),
    ("parameters-not-list", lambda d: d.update(parameters={"event": {"type": "text"}})),
    ("reserved-no-names", lambda d: d["parameters"][7]["reserved"].update(names=[])),
    ("output-field-no-name", lambda d: d["output"]["fields"].append({"type": "text"})),
]
APP_FAULTS: list[tuple[str, Mutation]] = [
    ("unknown-key", lambda d: d.update(baseURL=d.pop("baseUrl"))),
    ("missing-connection", lambda d: d.pop("connection")),
    ("missing-modules", lambda d: d.pop("modules")),
    ("auth-missing-type", lambda d: d["connection"]["auth"].pop("type")),
    ("connection-field-typo", lambda d: d["connection"]["fields"][0].update(secert=True)),
    ("bad-name", lambda d: d.update(name="Segment")),
    ("retry-attempts-zero", lambda d: d["retry"].update(attempts=0)),
    ("retry-attempts-21", lambda d: d["retry"].update(attempts=21)),
    ("timeout-zero", lambda d: d.update(timeout=0)),
    ("errors-value-not-string", lambda d: d.update(errors={"404": 1})),
    ("select-option-no-value", lambda d: d["connection"]["fields"][1]["options"].append({})),
]


def _agreement_cases() -> list[Any]:
    cases = [
        pytest.param("track.json", ModuleManifest, "module.schema.json", m, id=f"module-{i}")
        for i, m in MODULE_FAULTS
    ]
    cases += [
        pytest.param("app.json", AppManifest, "app.schema.json", m, id=f"app-{i}")
        for i, m in APP_FAULTS
    ]
    return cases


@pytest.mark.parametrize(("file", "model", "schema", "mutate"), _agreement_cases())
def test_pydantic_and_schema_both_reject(
    file: str, model: type[BaseModel], schema: str, mutate: Mutation
) -> None:
    data = copy.deepcopy(_load(file))
    model.model_validate(data)  # The base is valid...
    assert _validator(schema).is_valid(data)
    mutate(data)
    with pytest.raises(ValidationError):  # ...and the fault is one pydantic rejects...
        model.model_validate(data)
    assert not _validator(schema).is_valid(data), "pydantic rejects it, the JSON Schema not"


# The other direction: what the schema rejects, the engine should reject too, or an
# editor flags manifests that load (and the schema is not "the format").
LAX_CASES = [
    ("module", "snake-case-alias", lambda d: d["parameters"][0].update(min_length=1)),
    ("module", "required-as-string", lambda d: d["parameters"][0].update(required="yes")),
    ("module", "required-as-int", lambda d: d["parameters"][0].update(required=1)),
    ("module", "retry-as-string", lambda d: d.update(retry="false")),
    ("module", "max-body-bytes-as-string", lambda d: d["request"].update(maxBodyBytes="32768")),
    ("app", "base-url-snake-case", lambda d: d.update(base_url=d.pop("baseUrl"))),
    ("app", "timeout-as-string", lambda d: d.update(timeout="10")),
    ("app", "secret-as-string", lambda d: d["connection"]["fields"][0].update(secret="true")),
]


def _lax_case(tmp_path: Path, kind: str, mutate: Mutation) -> Path:
    """A copy of the Segment app with one lax value; the schema must reject it."""
    folder = tmp_path / "segment"
    shutil.copytree(MANIFESTS / "segment", folder)
    file, schema = (
        ("app.json", "app.schema.json") if kind == "app" else ("track.json", "module.schema.json")
    )
    data = _read(folder / file)
    mutate(data)
    assert not _validator(schema).is_valid(data), "the JSON Schema accepts it"
    (folder / file).write_text(json.dumps(data), encoding="utf-8")
    return folder


LAX_PARAMS = [pytest.param(k, m, id=f"{k}-{i}") for k, i, m in LAX_CASES]


@pytest.mark.parametrize(("kind", "mutate"), LAX_PARAMS)
def test_lax_case_is_rejected_by_schema(tmp_path: Path, kind: str, mutate: Mutation) -> None:
    _lax_case(tmp_path, kind, mutate)


@pytest.mark.parametrize(("kind", "mutate"), LAX_PARAMS)
def test_schema_rejects_implies_loader_rejects(tmp_path: Path, kind: str, mutate: Mutation) -> None:
    folder = _lax_case(tmp_path, kind, mutate)
    with pytest.raises(ManifestError):
        connector.load(folder, packaged=False)
