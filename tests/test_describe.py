"""registry.describe(): each module's form as JSON Schema, its output, and the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import connector
from connector.core.registry import Registry
from connector.format.manifest import walk_parameters
from tests.conftest import SHIPPED_MODULES, run_cli, write_app

ROOT = Path(__file__).resolve().parent.parent
MODULE_IDS = SHIPPED_MODULES

#: Output field types -> the JSON Schema their sample values must match.
OUTPUT_TYPES: dict[str, dict[str, Any]] = {
    "text": {"type": "string"},
    "date": {"type": "string"},
    "email": {"type": "string"},
    "url": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "collection": {"type": "object"},
    "keyvalue": {"type": "object"},
    "array": {"type": "array"},
    "any": {},
}


def _describe(registry: Registry, module_id: str) -> dict[str, Any]:
    return registry.describe(module_id)


def _properties(described: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = described["parameters"]["properties"]
    return props


def _walk(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every parameter schema, nested collections included, with its dotted name."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name, prop in schema.get("properties", {}).items():
        out.append((prefix + name, prop))
        if prop.get("x-type") == "collection":
            out.extend(_walk(prop, f"{prefix}{name}."))
    return out


def test_registry_lists_shipped_modules(registry: Registry) -> None:
    assert registry.module_ids() == MODULE_IDS
    listed = registry.list()
    assert [m["id"] for m in listed] == MODULE_IDS
    assert {m["app"] for m in listed} == {
        "clevertap",
        "livelike",
        "livelike_cloud",
        "segment",
        "segment_profiles",
    }
    kinds = {m["id"]: m["kind"] for m in listed}
    assert kinds["segment.api_call"] == "universal"
    assert kinds["segment.watch_events"] == "instant_trigger"


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_describe_top_level(registry: Registry, module_id: str) -> None:
    described = _describe(registry, module_id)
    module = registry.get(module_id)
    assert described["id"] == module_id
    assert described["app"] == module_id.split(".")[0]
    assert described["label"] == module.manifest.label
    assert described["kind"] == module.manifest.kind
    assert described["description"]
    json.dumps(described)  # Hosts ship it as JSON.


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_parameters_is_valid_json_schema(registry: Registry, module_id: str) -> None:
    schema = _describe(registry, module_id)["parameters"]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_every_parameter_has_title_and_type(registry: Registry, module_id: str) -> None:
    described = _describe(registry, module_id)
    manifest = registry.get(module_id).manifest
    props = _properties(described)
    # Select options' nested fields are listed too, once each (see x-shown-when).
    names = list(dict.fromkeys(p.name for p in walk_parameters(manifest.parameters)))
    assert list(props) == names
    for param in manifest.parameters:
        assert props[param.name]["title"] == (param.label or param.name)
        assert props[param.name]["x-type"] == param.type
        if param.help:
            assert props[param.name]["description"] == param.help
    for name, prop in _walk(described["parameters"]):
        assert prop.get("title"), name
        assert prop.get("x-type"), name


@pytest.mark.parametrize(
    ("module_id", "required"),
    [("segment.track", ["event"]), ("segment.api_call", ["url"]), ("segment.identify", None)],
)
def test_required(registry: Registry, module_id: str, required: list[str] | None) -> None:
    assert _describe(registry, module_id)["parameters"].get("required") == required


def test_select_gives_enum_and_options(registry: Registry) -> None:
    method = _properties(_describe(registry, "segment.api_call"))["method"]
    assert method["enum"] == ["GET", "POST", "PUT", "PATCH", "DELETE"]
    assert method["x-options"][0] == {"value": "GET", "label": "GET: retrieve"}
    assert [o["value"] for o in method["x-options"]] == method["enum"]
    assert method["default"] == "GET"
    assert method["x-type"] == "select"


@pytest.mark.parametrize(
    ("module_id", "param", "names", "use"),
    [
        ("segment.track", "customProperties", ["revenue", "currency", "value"], "{name}"),
        ("segment.api_call", "headers", ["Authorization"], None),
    ],
)
def test_keyvalue_reserved(
    registry: Registry, module_id: str, param: str, names: list[str], use: str | None
) -> None:
    prop = _properties(_describe(registry, module_id))[param]
    assert prop["x-type"] == "keyvalue"
    assert prop["x-reserved"]["names"] == names
    assert prop["x-reserved"]["use"] == use
    assert "matching" in prop["x-reserved"]


def test_identify_reserved_traits_match_trait_fields(registry: Registry) -> None:
    props = _properties(_describe(registry, "segment.identify"))
    reserved = props["customTraits"]["x-reserved"]
    assert reserved["use"] == "traits.{name}"
    # Every reserved trait name is a field of the Traits collection, and vice versa.
    assert set(reserved["names"]) == set(props["traits"]["properties"])


def test_collection_nested_properties(registry: Registry) -> None:
    traits = _properties(_describe(registry, "segment.identify"))["traits"]
    assert traits["type"] == "object"
    assert traits["additionalProperties"] is False
    city = traits["properties"]["address"]["properties"]["city"]
    assert city == {"type": "string", "title": "City", "x-type": "text"}
    assert traits["properties"]["company"]["properties"]["employee_count"]["type"] == "integer"
    assert traits["properties"]["email"]["format"] == "email"


def test_rules_and_hints(registry: Registry) -> None:
    track = _properties(_describe(registry, "segment.track"))
    assert track["event"]["maxLength"] == 200
    assert track["currency"]["x-format"] == "currency"
    assert track["messageId"]["x-advanced"] is True
    assert "x-advanced" not in track["event"]
    assert track["timestamp"]["format"] == "date-time"
    assert _properties(_describe(registry, "segment.api_call"))["url"]["examples"] == ["/v1/group"]


#: Each app's secret connection fields, the required ones, and its public ones.
CONNECTIONS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "segment": (["writeKey", "sharedSecret"], ["writeKey"], ["region", "host"]),
    "livelike": (["writeKey"], ["writeKey"], ["region", "host"]),
    "segment_profiles": (
        ["accessToken"],
        ["accessToken", "spaceId"],
        ["spaceId", "region", "host"],
    ),
    "livelike_cloud": (["producerToken"], ["clientId", "producerToken"], ["clientId", "host"]),
    "clevertap": (
        ["accountId", "passcode"],
        ["accountId", "passcode"],
        ["region", "host"],
    ),
}


@pytest.mark.parametrize("module_id", MODULE_IDS)
def test_connection_secret_field(registry: Registry, module_id: str) -> None:
    connection = _describe(registry, module_id)["connection"]
    Draft202012Validator.check_schema(connection)
    secrets, required, public = CONNECTIONS[module_id.split(".")[0]]
    for name in secrets:
        assert connection["properties"][name]["writeOnly"] is True
        assert connection["properties"][name]["x-secret"] is True
    assert connection["required"] == required
    for name in public:
        assert "x-secret" not in connection["properties"][name]
        assert "writeOnly" not in connection["properties"][name]


@pytest.mark.parametrize("module_id", ["segment.identify", "segment.track"])
def test_user_constraint(registry: Registry, module_id: str) -> None:
    described = _describe(registry, module_id)
    assert described["parameters"]["allOf"] == [
        {"anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]}
    ]
    assert described["constraints"] == [
        {
            "oneOfRequired": ["userId", "anonymousId"],
            "message": "Segment silently drops messages that have neither",
        }
    ]


def test_api_call_has_no_constraint(registry: Registry) -> None:
    described = _describe(registry, "segment.api_call")
    assert "allOf" not in described["parameters"]
    assert described["constraints"] == []


@pytest.mark.parametrize(
    ("form", "valid"),
    [
        ({"event": "Order Completed", "userId": "u1"}, True),
        ({"event": "Order Completed", "anonymousId": "a1", "revenue": 19.99}, True),
        ({"event": "Signed Up", "userId": "u1", "customProperties": {"plan": "pro"}}, True),
        ({"event": "x", "userId": "u1", "customProperties": [{"key": "plan", "value": 1}]}, True),
        ({"userId": "u1"}, False),  # event is required
        ({"event": "Order Completed"}, False),  # neither userId nor anonymousId
        ({"event": "x", "userId": "u1", "bogus": 1}, False),  # unknown field
        ({"event": "x" * 201, "userId": "u1"}, False),  # maxLength
        ({"event": "x", "userId": "u1", "revenue": "lots"}, False),  # not a number
    ],
)
def test_track_form_validates_with_the_schema(
    registry: Registry, form: dict[str, Any], valid: bool
) -> None:
    validator = Draft202012Validator(_describe(registry, "segment.track")["parameters"])
    assert validator.is_valid(form) is valid


#: Modules whose bundle has no fixed fields: a profile's traits are the workspace's own.
DYNAMIC_OUTPUT = ["segment_profiles.get_traits"]


@pytest.mark.parametrize("module_id", [m for m in MODULE_IDS if m not in DYNAMIC_OUTPUT])
def test_output_fields_and_sample(registry: Registry, module_id: str) -> None:
    output = _describe(registry, module_id)["output"]
    fields = output["fields"]
    assert fields, "builders need output fields to map before a run"
    for field in fields:
        assert field["name"] and field["type"] in OUTPUT_TYPES and field["label"]
    sample = output["sample"]
    assert isinstance(sample, dict), "the sample bundle is an object"
    schema = {
        "type": "object",
        "properties": {f["name"]: OUTPUT_TYPES[f["type"]] for f in fields},
        "additionalProperties": False,
    }
    errors = list(Draft202012Validator(schema).iter_errors(sample))
    assert not errors, f"{module_id} sample: {errors[0].json_path}: {errors[0].message}"


def test_dynamic_output_has_a_sample_and_no_fields(registry: Registry) -> None:
    for module_id in DYNAMIC_OUTPUT:
        output = _describe(registry, module_id)["output"]
        assert output["fields"] == [] and isinstance(output["sample"], dict)


def test_output_fields_by_module(registry: Registry) -> None:
    names = {m: [f["name"] for f in _describe(registry, m)["output"]["fields"]] for m in MODULE_IDS}
    assert names["segment.api_call"] == ["statusCode", "headers", "body"]
    assert "event" in names["segment.track"] and "properties" in names["segment.track"]
    assert "traits" in names["segment.identify"] and "success" in names["segment.identify"]


def test_describe_unknown_module(registry: Registry) -> None:
    with pytest.raises(connector.UnknownModuleError) as info:
        registry.describe("segment.nope")
    assert info.value.known == MODULE_IDS
    assert "segment.track" in str(info.value)


def test_describe_nested_select_options_and_arrays(tmp_path: Path) -> None:
    module = {
        "id": "demo.m",
        "label": "M",
        "description": "A module with every shape.",
        "parameters": [
            {
                "name": "mode",
                "type": "select",
                "required": True,
                "options": [
                    {"value": "a", "nested": [{"name": "extra", "type": "integer"}]},
                    {"value": "b", "label": "Bee"},
                ],
            },
            {
                "name": "tags",
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {"name": "tag", "type": "text", "pattern": "^[a-z]+$"},
            },
        ],
        "request": {"url": "/m", "body": {"mode": "{{ parameters.mode }}"}},
    }
    folder = write_app(tmp_path, "demo", {"m.json": module}, baseUrl="https://example.com")
    described = connector.load(folder, packaged=False).describe("demo.m")
    schema = described["parameters"]
    Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    assert props["mode"]["x-options"] == [
        {"value": "a", "label": "a"},
        {"value": "b", "label": "Bee"},
    ]
    assert props["extra"]["x-shown-when"] == {"mode": "a"}
    assert props["extra"]["type"] == "integer"
    assert props["tags"]["items"]["pattern"] == "^[a-z]+$"
    assert (props["tags"]["minItems"], props["tags"]["maxItems"]) == (1, 3)
    assert schema["required"] == ["mode"]
    assert described["connection"]["properties"] == {}
    assert described["output"] == {"fields": [], "sample": None}
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"mode": "a", "extra": 2, "tags": ["x"]})
    assert not validator.is_valid({"mode": "c"})
    assert not validator.is_valid({"mode": "a", "tags": []})
    assert not validator.is_valid({"mode": "a", "tags": ["X"]})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args)


def test_cli_describe_prints_the_same_json(registry: Registry) -> None:
    result = _cli("describe", "segment.track")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == _describe(registry, "segment.track")


def test_cli_modules_json(registry: Registry) -> None:
    result = _cli("modules", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == registry.list()


def test_cli_describe_unknown_module() -> None:
    result = _cli("describe", "nope")
    assert result.returncode == 2
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["type"] == "InvalidConfigurationError"
    assert error["field"] == "module"
    assert "'nope'" in error["message"]
    for module_id in MODULE_IDS:
        assert module_id in error["message"]
