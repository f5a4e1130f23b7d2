"""Unit tests for connector.core.validation.validate_parameters (and the helpers it uses)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import connector
from connector.core.validation import (
    ParameterPlan,
    Values,
    normalize_name,
    render_mapping,
    validate_parameters,
)
from connector.errors import DataError, Fault, InvalidConfigurationError, ManifestError
from connector.format.manifest import Constraint, Parameter
from tests.conftest import WRITE_KEY, run_cli
from tests.test_loader import build_app


def P(**spec: Any) -> Parameter:
    return Parameter.model_validate(spec)


def C(**spec: Any) -> Constraint:
    return Constraint.model_validate(spec)


def validate(
    specs: Sequence[Parameter],
    raw: Any,
    context: dict[str, Any] | None = None,
    constraints: Sequence[Constraint] = (),
) -> Values:
    return validate_parameters(specs, constraints, raw, context)


def data_error(
    specs: Sequence[Parameter],
    raw: Any,
    context: dict[str, Any] | None = None,
    constraints: Sequence[Constraint] = (),
) -> DataError:
    with pytest.raises(DataError) as info:
        validate(specs, raw, context, constraints)
    return info.value


TRAITS = P(
    name="traits",
    type="collection",
    fields=[
        {"name": "email", "type": "email"},
        {"name": "age", "type": "integer", "minimum": 0},
        {
            "name": "address",
            "type": "collection",
            "fields": [
                {"name": "city", "type": "text"},
                {"name": "zip", "type": "integer"},
                {"name": "lat", "type": "number"},
            ],
        },
    ],
)
CUSTOM_TRAITS = P(
    name="customTraits",
    type="keyvalue",
    reserved={"kind": "trait", "use": "traits.{name}", "names": ["email", "firstName", "id"]},
)
USER_ID = P(name="userId", type="text", label="User ID", required=True)


# -- required, empty, default, unknown ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({}, id="missing"),
        pytest.param({"userId": None}, id="none"),
        pytest.param({"userId": ""}, id="empty-text"),
        pytest.param({"userId": []}, id="empty-list"),
        pytest.param(None, id="no-parameters-at-all"),
    ],
)
def test_required_field_missing_or_empty(raw: Any) -> None:
    exc = data_error([USER_ID], raw)
    assert exc.field == "userId"
    assert exc.message == "field 'userId' (User ID) is required"


def test_required_message_without_label() -> None:
    exc = data_error([P(name="event", type="text", required=True)], {})
    assert (exc.field, exc.message) == ("event", "field 'event' is required")


@pytest.mark.parametrize(
    ("spec", "raw", "expected"),
    [
        pytest.param(P(name="method", type="text", default="GET"), {}, "GET", id="absent"),
        pytest.param(
            P(name="method", type="text", default="GET"), {"method": ""}, "GET", id="empty-text"
        ),
        pytest.param(
            P(name="method", type="text", default="GET"), {"method": None}, "GET", id="none"
        ),
        pytest.param(
            P(name="method", type="text", default="GET", required=True),
            {},
            "GET",
            id="required-with-default",
        ),
        pytest.param(P(name="n", type="integer", default="5"), {}, 5, id="default-is-coerced"),
        pytest.param(
            P(name="method", type="text", default="GET"), {"method": "PUT"}, "PUT", id="given-wins"
        ),
    ],
)
def test_default_applied(spec: Parameter, raw: dict[str, Any], expected: Any) -> None:
    assert validate([spec], raw)[spec.name] == expected


def test_optional_absent_field_is_left_out_and_reads_none() -> None:
    values = validate(
        [P(name="userId", type="text"), P(name="event", type="text")], {"event": "Signed Up"}
    )
    assert values == {"event": "Signed Up"}
    assert isinstance(values, Values)
    assert values["userId"] is None
    assert "userId" not in values


def test_unknown_key_names_the_field_and_expected_names() -> None:
    exc = data_error([P(name="b", type="text"), P(name="a", type="text")], {"a": "x", "c": 1})
    assert exc.field == "c"
    assert exc.message == "unknown field 'c', expected one of: a, b"


def test_unknown_key_with_no_parameters() -> None:
    exc = data_error([], {"x": 1})
    assert exc.message == "unknown field 'x', expected one of: (none)"


@pytest.mark.parametrize("raw", [["userId"], "userId=1", 5])
def test_parameters_must_be_an_object(raw: Any) -> None:
    exc = data_error([USER_ID], raw)
    assert exc.message == f"parameters must be an object, got {type(raw).__name__}"
    assert exc.field is None


# -- collections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "rule"),
    [
        pytest.param(
            {"traits": {"address": {"zip": "x"}}},
            "traits.address.zip",
            "must be a number, got 'x'",
            id="integer-child",
        ),
        pytest.param(
            {"traits": {"address": {"zip": "1.5"}}},
            "traits.address.zip",
            "must be a whole number",
            id="integer-fraction",
        ),
        pytest.param(
            {"traits": {"address": {"lat": "north"}}},
            "traits.address.lat",
            "must be a number",
            id="number-child",
        ),
        pytest.param(
            {"traits": {"address": {"city": {"a": 1}}}},
            "traits.address.city",
            "must be text, got dict",
            id="text-child",
        ),
        pytest.param(
            {"traits": {"email": "nope"}},
            "traits.email",
            "must be an email address",
            id="email-child",
        ),
        pytest.param({"traits": {"age": -1}}, "traits.age", "must be at least 0", id="minimum"),
        pytest.param(
            {"traits": {"adress": {}}},
            "traits.adress",
            "unknown field 'traits.adress', expected one of: address, age, email",
            id="unknown-nested-key",
        ),
        pytest.param(
            {"traits": {"address": {"town": "x"}}},
            "traits.address.town",
            "unknown field 'traits.address.town', expected one of: city, lat, zip",
            id="unknown-deep-key",
        ),
        pytest.param(
            {"traits": "ada@example.com"},
            "traits",
            "must be an object, got str",
            id="collection-text",
        ),
        pytest.param(
            {"traits": ["a"]}, "traits", "must be an object, got list", id="collection-list"
        ),
        pytest.param(
            {"traits": {"address": "[1]"}},
            "traits.address",
            "must be an object, got str",
            id="collection-json-list-text",
        ),
    ],
)
def test_nested_errors_name_the_dotted_path(raw: dict[str, Any], field: str, rule: str) -> None:
    exc = data_error([TRAITS], raw)
    assert exc.field == field
    assert rule in exc.message
    assert f"'{field}'" in exc.message


def test_collection_values_are_coerced() -> None:
    values = validate(
        [TRAITS], {"traits": {"age": "36", "address": {"zip": "75001", "lat": "48.85"}}}
    )
    assert values == {"traits": {"age": 36, "address": {"zip": 75001, "lat": 48.85}}}
    assert isinstance(values["traits"], Values)
    assert isinstance(values["traits"]["address"], Values)


def test_absent_collection_reads_as_empty_values() -> None:
    values = validate([TRAITS], {})
    assert values == {"traits": {"address": {}}}
    assert isinstance(values["traits"], Values)
    assert values["traits"]["email"] is None
    assert values["traits"]["address"]["city"] is None


@pytest.mark.parametrize("empty", [None, ""])
def test_empty_collection_reads_as_empty_values(empty: Any) -> None:
    values = validate([TRAITS], {"traits": empty})
    assert values["traits"] == {"address": {}}
    assert values["traits"]["email"] is None


def test_present_collection_fills_nested_collections() -> None:
    values = validate([TRAITS], {"traits": {}})
    assert values == {"traits": {"address": {}}}
    assert values["traits"]["address"]["city"] is None


def test_absent_collection_reads_like_an_empty_one() -> None:
    specs = [
        P(
            name="traits",
            type="collection",
            fields=[
                {"name": "plan", "type": "text", "default": "free"},
                {
                    "name": "address",
                    "type": "collection",
                    "fields": [{"name": "city", "type": "text"}],
                },
            ],
        )
    ]
    assert validate(specs, {}) == validate(specs, {"traits": {}})


def test_required_collection_missing() -> None:
    spec = P(
        name="traits", type="collection", required=True, fields=[{"name": "email", "type": "email"}]
    )
    exc = data_error([spec], {})
    assert (exc.field, exc.message) == ("traits", "field 'traits' is required")


def test_collection_accepts_json_text_of_an_object() -> None:
    values = validate([TRAITS], {"traits": '{"email": "ada@example.com", "age": "3"}'})
    assert values["traits"] == {"email": "ada@example.com", "age": 3, "address": {}}


def test_nested_required_field_path() -> None:
    spec = P(
        name="order",
        type="collection",
        fields=[{"name": "id", "type": "text", "required": True, "label": "Order ID"}],
    )
    exc = data_error([spec], {"order": {"id": ""}})
    assert (exc.field, exc.message) == ("order.id", "field 'order.id' (Order ID) is required")


# -- arrays ----------------------------------------------------------------------------------


TAGS = P(
    name="tags", type="array", items={"name": "tag", "type": "integer"}, minItems=1, maxItems=3
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(["1", 2, "3"], [1, 2, 3], id="coerced-items"),
        pytest.param("[1, 2]", [1, 2], id="json-text"),
        pytest.param((4, "5"), [4, 5], id="tuple"),
        pytest.param(["1", None, ""], [1], id="empty-items-dropped"),
    ],
)
def test_array_items(raw: Any, expected: list[Any]) -> None:
    assert validate([TAGS], {"tags": raw})["tags"] == expected


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        pytest.param(
            ["1", "x"], "tags[1]", "field 'tags[1]' must be a number, got 'x'", id="bad-item"
        ),
        pytest.param(
            ["1", "2", "3", "4"], "tags", "field 'tags' allows at most 3 items", id="max-items"
        ),
        pytest.param("1,2", "tags", "field 'tags' must be a list, got str", id="not-a-list"),
        pytest.param({"a": 1}, "tags", "field 'tags' must be a list, got dict", id="object"),
        pytest.param(
            '{"a": 1}', "tags", "field 'tags' must be a list, got str", id="json-object-text"
        ),
    ],
)
def test_array_errors(raw: Any, field: str, message: str) -> None:
    exc = data_error([TAGS], {"tags": raw})
    assert (exc.field, exc.message) == (field, message)


def test_array_min_items() -> None:
    spec = P(name="tags", type="array", minItems=2)
    exc = data_error([spec], {"tags": ["a"]})
    assert (exc.field, exc.message) == ("tags", "field 'tags' needs at least 2 items")
    assert validate([spec], {"tags": ["a", "b"]})["tags"] == ["a", "b"]


def test_array_without_items_spec_is_a_fresh_list() -> None:
    raw = {"tags": ["a", {"b": 1}]}
    values = validate([P(name="tags", type="array")], raw)
    assert values["tags"] == ["a", {"b": 1}]
    assert values["tags"] is not raw["tags"]
    assert values["tags"][1] is not raw["tags"][1]


def test_array_of_collections_names_item_paths() -> None:
    spec = P(
        name="lines",
        type="array",
        items={
            "name": "line",
            "type": "collection",
            "fields": [
                {"name": "sku", "type": "text", "required": True},
                {"name": "qty", "type": "integer"},
            ],
        },
    )
    assert validate([spec], {"lines": [{"sku": "a", "qty": "2"}]})["lines"] == [
        {"sku": "a", "qty": 2}
    ]
    exc = data_error([spec], {"lines": [{"sku": "a"}, {"sku": "b", "qty": "many"}]})
    assert exc.field == "lines[1].qty"
    exc = data_error([spec], {"lines": [{"sku": "a"}, {"qty": 1}]})
    assert (exc.field, exc.message) == ("lines[1].sku", "field 'lines[1].sku' is required")


# -- keyvalue ---------------------------------------------------------------------------------


KV = P(name="context", type="keyvalue")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            [{"key": "ip", "value": "1.2.3.4"}, {"key": "n", "value": 2}],
            {"ip": "1.2.3.4", "n": 2},
            id="list-of-pairs",
        ),
        pytest.param([{"key": "only"}], {"only": None}, id="pair-without-value"),
        pytest.param(
            {"ip": "1.2.3.4", "nested": {"a": [1]}},
            {"ip": "1.2.3.4", "nested": {"a": [1]}},
            id="object",
        ),
        pytest.param('[{"key": "a", "value": true}]', {"a": True}, id="json-list-text"),
        pytest.param('{"a": 1, "b": null}', {"a": 1, "b": None}, id="json-object-text"),
    ],
)
def test_keyvalue_forms(raw: Any, expected: dict[str, Any]) -> None:
    assert validate([KV], {"context": raw})["context"] == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            [{"key": "a", "value": 1}, {"key": "a", "value": 2}],
            "field 'context' has the key 'a' twice",
            id="duplicate-pairs",
        ),
        pytest.param(
            '[{"key": "a", "value": 1}, {"key": "a", "value": 2}]',
            "field 'context' has the key 'a' twice",
            id="duplicate-in-json-text",
        ),
        pytest.param(
            [{"key": "", "value": 1}],
            "field 'context' has an empty or non-text key",
            id="empty-key",
        ),
        pytest.param(
            [{"key": "  ", "value": 1}],
            "field 'context' has an empty or non-text key",
            id="blank-key",
        ),
        pytest.param(
            [{"key": 5, "value": 1}],
            "field 'context' has an empty or non-text key",
            id="number-key",
        ),
        pytest.param(
            [{"value": 1}],
            "field 'context' item 0 must be an object with 'key' and 'value'",
            id="pair-without-key",
        ),
        pytest.param(
            [{"key": "a"}, "b"],
            "field 'context' item 1 must be an object with 'key' and 'value'",
            id="item-not-object",
        ),
        pytest.param(
            5, "field 'context' must be a list of {key, value} or an object, got int", id="number"
        ),
        pytest.param(
            "a=1", "field 'context' must be a list of {key, value} or an object, got str", id="text"
        ),
    ],
)
def test_keyvalue_errors(raw: Any, message: str) -> None:
    exc = data_error([KV], {"context": raw})
    assert (exc.field, exc.message) == ("context", message)


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        pytest.param("email", "email", id="exact"),
        pytest.param("Email", "email", id="capitalised"),
        pytest.param("E-Mail", "email", id="dash-and-case"),
        pytest.param("first_name", "firstName", id="snake"),
        pytest.param("FirstName", "firstName", id="pascal"),
        pytest.param("first-name", "firstName", id="kebab"),
        pytest.param("FIRST NAME", "firstName", id="upper-with-space"),
        pytest.param(" first  name ", "firstName", id="padded-spaces"),
        pytest.param("ID", "id", id="upper-id"),
    ],
)
def test_reserved_names_clash(key: str, reserved: str) -> None:
    for raw in ([{"key": key, "value": "x"}], {key: "x"}):
        exc = data_error([CUSTOM_TRAITS], {"customTraits": raw})
        assert exc.field == "customTraits"
        assert exc.message == (
            f"field 'customTraits': key {key!r} clashes with the reserved trait {reserved!r}; "
            f"use the field 'traits.{reserved}' instead"
        )


@pytest.mark.parametrize("key", ["plan", "firstNames", "emailAddress", "e_mail_2", "identity"])
def test_non_clashing_keys_pass(key: str) -> None:
    values = validate([CUSTOM_TRAITS], {"customTraits": [{"key": key, "value": 1}]})
    assert values["customTraits"] == {key: 1}


def test_reserved_without_use_has_no_hint() -> None:
    spec = P(
        name="headers", type="keyvalue", reserved={"kind": "header", "names": ["Authorization"]}
    )
    exc = data_error([spec], {"headers": {"authorization": "Basic x"}})
    assert exc.message == (
        "field 'headers': key 'authorization' clashes with the reserved header 'Authorization'"
    )


@pytest.mark.parametrize("use", ["traits.{Name}", "{name.__class__}"])
def test_reserved_use_is_plain_substitution(use: str) -> None:
    spec = P(name="kv", type="keyvalue", reserved={"names": ["email"], "use": use})
    exc = data_error([spec], {"kv": {"email": "x"}})
    assert exc.field == "kv"
    assert "<class" not in exc.message


@pytest.mark.parametrize(
    ("left", "right"),
    [("First Name", "firstName"), ("first_name", "FIRSTNAME"), ("a-b c_d", "abcd")],
)
def test_normalize_name(left: str, right: str) -> None:
    assert normalize_name(left) == normalize_name(right)


# -- select -------------------------------------------------------------------------------------


MODE = P(
    name="mode",
    type="select",
    options=[
        {
            "value": 1,
            "label": "One",
            "nested": [{"name": "a", "type": "integer", "required": True}],
        },
        {"value": "two", "nested": [{"name": "b", "type": "text", "maxLength": 3}]},
        {"value": "three"},
    ],
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param({"mode": 1, "a": "5"}, {"mode": 1, "a": 5}, id="int-option"),
        pytest.param({"mode": "1", "a": 5}, {"mode": 1, "a": 5}, id="text-1-matches-1"),
        pytest.param({"mode": 1.0, "a": 5}, {"mode": 1, "a": 5}, id="float-matches-1"),
        pytest.param({"mode": "two", "b": "abc"}, {"mode": "two", "b": "abc"}, id="text-option"),
        pytest.param({"mode": "two"}, {"mode": "two"}, id="optional-nested-absent"),
        pytest.param(
            {"mode": "three", "a": "zzz", "b": "long text"},
            {"mode": "three"},
            id="other-options-keys-ignored",
        ),
        pytest.param(
            {"mode": 1, "a": 2, "b": "ignored, even if too long"},
            {"mode": 1, "a": 2},
            id="other-option-nested-ignored",
        ),
        pytest.param({}, {}, id="absent"),
    ],
)
def test_select(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    assert validate([MODE], raw) == expected


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        pytest.param(
            {"mode": "4"},
            "mode",
            "field 'mode' has unknown value '4', expected one of: 1, 'two', 'three'",
            id="unknown-value",
        ),
        pytest.param(
            {"mode": "TWO"},
            "mode",
            "field 'mode' has unknown value 'TWO', expected one of: 1, 'two', 'three'",
            id="case-matters",
        ),
        pytest.param({"mode": 1}, "a", "field 'a' is required", id="chosen-nested-required"),
        pytest.param(
            {"mode": 1, "a": "x"},
            "a",
            "field 'a' must be a number, got 'x'",
            id="chosen-nested-coerced",
        ),
        pytest.param(
            {"mode": "two", "b": "long"},
            "b",
            "field 'b' must be at most 3 characters",
            id="chosen-nested-rule",
        ),
        pytest.param(
            {"mode": "two", "c": 1},
            "c",
            "unknown field 'c', expected one of: a, b, mode",
            id="unknown-key",
        ),
    ],
)
def test_select_errors(raw: dict[str, Any], field: str, message: str) -> None:
    exc = data_error([MODE], raw)
    assert (exc.field, exc.message) == (field, message)


def test_select_nested_inside_a_collection_uses_the_dotted_path() -> None:
    spec = P(
        name="opts", type="collection", fields=[MODE.model_dump(by_alias=True, exclude_none=True)]
    )
    exc = data_error([spec], {"opts": {"mode": 1}})
    assert (exc.field, exc.message) == ("opts.a", "field 'opts.a' is required")
    exc = data_error([spec], {"opts": {"mode": 9}})
    assert exc.field == "opts.mode"


def test_select_boolean_option_does_not_match_its_text() -> None:
    spec = P(name="flag", type="select", options=[{"value": True}, {"value": False}])
    assert validate([spec], {"flag": True}) == {"flag": True}
    assert data_error([spec], {"flag": "True"}).field == "flag"


def test_select_boolean_does_not_match_a_number_option() -> None:
    exc = data_error([MODE], {"mode": True, "a": 1})
    assert exc.field == "mode"


# -- constraints ------------------------------------------------------------------------------


IDS = [P(name="userId", type="text"), P(name="anonymousId", type="text")]
ONE_OF = C(
    oneOfRequired=["userId", "anonymousId"],
    message="Segment silently drops messages that have neither",
)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({}, id="both-absent"),
        pytest.param({"userId": "", "anonymousId": None}, id="both-empty"),
    ],
)
def test_one_of_required_fails(raw: dict[str, Any]) -> None:
    exc = data_error(IDS, raw, constraints=[ONE_OF])
    assert exc.field == "userId"
    assert exc.message == (
        "one of 'userId' or 'anonymousId' is required: "
        "Segment silently drops messages that have neither"
    )


def test_one_of_required_without_message() -> None:
    exc = data_error(IDS, {}, constraints=[C(oneOfRequired=["anonymousId", "userId"])])
    assert (exc.field, exc.message) == (
        "anonymousId",
        "one of 'anonymousId' or 'userId' is required",
    )


@pytest.mark.parametrize("raw", [{"userId": "u1"}, {"anonymousId": "a1"}, {"userId": 0}])
def test_one_of_required_passes(raw: dict[str, Any]) -> None:
    assert validate(IDS, raw, constraints=[ONE_OF]) == {k: str(v) for k, v in raw.items()}


def test_constraints_run_after_fields() -> None:
    exc = data_error([*IDS, P(name="n", type="integer")], {"n": "x"}, constraints=[ONE_OF])
    assert exc.field == "n"


# -- mapping templates ------------------------------------------------------------------------


WEBHOOK = {
    "webhook": {
        "email": "ada@example.com",
        "age": "36",
        "person": {"email": "b@c.de"},
        "tags": ["1", "2"],
    }
}


@pytest.mark.parametrize(
    ("specs", "raw", "expected"),
    [
        pytest.param(
            [P(name="email", type="email")],
            {"email": "{{ webhook.email }}"},
            {"email": "ada@example.com"},
            id="text-template",
        ),
        pytest.param(
            [P(name="n", type="integer")],
            {"n": "{{ webhook.age }}"},
            {"n": 36},
            id="rendered-then-coerced",
        ),
        pytest.param(
            [P(name="label", type="text")],
            {"label": "Hi {{ webhook.email }}!"},
            {"label": "Hi ada@example.com!"},
            id="mixed-text",
        ),
        pytest.param(
            [TRAITS],
            {"traits": "{{ webhook.person }}"},
            {"traits": {"email": "b@c.de", "address": {}}},
            id="native-object",
        ),
        pytest.param(
            [TRAITS],
            {"traits": {"email": "{{ webhook.email }}", "age": "{{ 1 + 1 }}"}},
            {"traits": {"email": "ada@example.com", "age": 2, "address": {}}},
            id="nested-templates",
        ),
        pytest.param([TAGS], {"tags": "{{ webhook.tags }}"}, {"tags": [1, 2]}, id="native-list"),
        pytest.param(
            [KV],
            {"context": [{"key": "mail", "value": "{{ webhook.email }}"}]},
            {"context": {"mail": "ada@example.com"}},
            id="keyvalue-value",
        ),
        pytest.param(
            [P(name="email", type="email")],
            {"email": "{{ webhook.nothing }}"},
            {},
            id="renders-none-then-absent",
        ),
        pytest.param(
            [P(name="note", type="text")],
            {"note": "no {template} here"},
            {"note": "no {template} here"},
            id="literal-braces",
        ),
    ],
)
def test_mapping_templates(
    specs: list[Parameter], raw: dict[str, Any], expected: dict[str, Any]
) -> None:
    context = {"webhook": Values(WEBHOOK["webhook"])}
    assert validate(specs, raw, context) == expected


@pytest.mark.parametrize(
    ("raw", "field", "detail"),
    [
        pytest.param(
            {"email": "{{ webhook.email"}, "email", "unexpected end of template", id="syntax-error"
        ),
        pytest.param(
            {"email": "{{ webhook | attr('x') }}"},
            "email",
            "No filter named 'attr'",
            id="unknown-filter",
        ),
        pytest.param({"email": "{{ 1 / 0 }}"}, "email", "ZeroDivisionError", id="arithmetic"),
        pytest.param({"email": "{{ 'a' * 10**9 }}"}, "email", "OverflowError", id="overflow"),
        pytest.param({"email": "{{ ''.__class__ }}"}, "email", "unsafe", id="sandbox"),
        pytest.param(
            {
                "email": "{% for i in range(9999) %}{% for j in range(9999) %}"
                "{% endfor %}{% endfor %}a@b.co"
            },
            "email",
            "100,000 loop iterations and calls",
            id="nested-loops",
        ),
        pytest.param(
            {"traits": {"address": {"city": "{{ 1 / 0 }}"}}},
            "traits.address.city",
            "ZeroDivisionError",
            id="nested-path",
        ),
        pytest.param(
            {"tags": ["1", "{{ 1 / 0 }}"]}, "tags[1]", "ZeroDivisionError", id="list-path"
        ),
        pytest.param(
            {"email": "{{ webhook.email.nope }}"},
            "email",
            "has no attribute 'nope'",
            id="attribute-of-text-is-no-missing-key",
        ),
        pytest.param(
            {"email": "{% for x in webhook.tags %}{{ x.nope }}{% endfor %}"},
            "email",
            "has no attribute 'nope'",
            id="loop-variable-is-no-missing-key",
        ),
    ],
)
def test_mapping_render_failures(raw: dict[str, Any], field: str, detail: str) -> None:
    specs = [P(name="email", type="email"), TRAITS, P(name="tags", type="array")]
    exc = data_error(specs, raw, {"webhook": {"email": "ada@example.com", "tags": [1]}})
    assert exc.field == field
    assert exc.message.startswith(f"field {field!r}: mapping could not be rendered: ")
    assert detail in exc.message
    assert exc.rule == "mapping"


def test_deeply_nested_fromjson_is_a_data_error() -> None:
    exc = data_error([P(name="body", type="any")], {"body": "{{ ('[' * 100000) | fromjson }}"})
    assert exc.field == "body"


def test_render_mapping_without_templates_copies() -> None:
    value = {"a": [{"b": "c"}], "d": (1, 2)}
    rendered = render_mapping(value, {}, "x")
    assert rendered == {"a": [{"b": "c"}], "d": [1, 2]}
    assert rendered["a"] is not value["a"]


# -- rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "good", "normalised", "bad", "message"),
    [
        pytest.param(
            dict(type="text", minLength=2),
            "ab",
            "ab",
            "a",
            "field 'f' must be at least 2 characters",
            id="minLength",
        ),
        pytest.param(
            dict(type="text", maxLength=3),
            "abc",
            "abc",
            "abcd",
            "field 'f' must be at most 3 characters",
            id="maxLength",
        ),
        pytest.param(
            dict(type="text", pattern="^[a-z]+-\\d+$"),
            "person-42",
            "person-42",
            "Person 42",
            "field 'f' does not match the pattern '^[a-z]+-\\\\d+$'",
            id="pattern",
        ),
        pytest.param(
            dict(type="text", pattern="\\d"),
            "abc1",
            "abc1",
            "abc",
            "field 'f' does not match the pattern",
            id="pattern-is-search",
        ),
        pytest.param(
            dict(type="number", minimum=0.5),
            "0.5",
            0.5,
            "0.49",
            "field 'f' must be at least 0.5",
            id="minimum",
        ),
        pytest.param(
            dict(type="integer", maximum=10),
            10,
            10,
            "11",
            "field 'f' must be at most 10",
            id="maximum",
        ),
        pytest.param(
            dict(type="number", minimum=0, maximum=1),
            1,
            1,
            -0.1,
            "field 'f' must be at least 0",
            id="range",
        ),
        pytest.param(
            dict(type="text", format="currency"),
            "usd",
            "USD",
            "XYZ",
            "field 'f' must be an ISO 4217 currency code such as USD or EUR, got 'XYZ'",
            id="format-currency",
        ),
        pytest.param(
            dict(type="email", maxLength=12),
            "ada@ex.co",
            "ada@ex.co",
            "ada@example.com",
            "field 'f' must be at most 12 characters",
            id="rule-after-coercion",
        ),
    ],
)
def test_rules(spec: dict[str, Any], good: Any, normalised: Any, bad: Any, message: str) -> None:
    parameter = P(name="f", **spec)
    assert validate([parameter], {"f": good}) == {"f": normalised}
    exc = data_error([parameter], {"f": bad})
    assert exc.field == "f"
    assert exc.message.startswith(message)


def test_rules_are_checked_on_nested_fields() -> None:
    spec = P(
        name="order",
        type="collection",
        fields=[{"name": "currency", "type": "text", "format": "currency"}],
    )
    assert validate([spec], {"order": {"currency": "eur"}}) == {"order": {"currency": "EUR"}}
    exc = data_error([spec], {"order": {"currency": "euro"}})
    assert exc.field == "order.currency"


# -- the input is never mutated ----------------------------------------------------------------


ALL_SPECS = [
    USER_ID,
    TRAITS,
    CUSTOM_TRAITS,
    TAGS,
    MODE,
    P(
        name="lines",
        type="array",
        items={
            "name": "line",
            "type": "collection",
            "fields": [{"name": "qty", "type": "integer"}],
        },
    ),
    P(name="body", type="any"),
]


def _deep_raw() -> dict[str, Any]:
    return {
        "userId": "{{ webhook.email }}",
        "traits": {
            "email": "{{ webhook.email }}",
            "age": "36",
            "address": {"zip": "75001", "city": "Paris"},
        },
        "customTraits": [{"key": "plan", "value": {"tier": ["pro", {"x": "{{ 1 }}"}]}}],
        "tags": ["1", "2"],
        "mode": "1",
        "a": "3",
        "b": "ignored",
        "lines": [{"qty": "2"}, {"qty": 3}],
        "body": {"nested": [{"deep": {"deeper": ["{{ webhook.email }}", None, ""]}}]},
    }


@pytest.mark.parametrize(
    ("patch", "fails"),
    [
        pytest.param({}, False, id="valid"),
        pytest.param({"lines": [{"qty": "2"}, {"qty": "x"}]}, True, id="fails-late"),
        pytest.param(
            {"customTraits": [{"key": "Email", "value": {"a": [1]}}]}, True, id="fails-on-reserved"
        ),
        pytest.param(
            {"traits": {"address": {"zip": "x", "city": "Paris"}}}, True, id="fails-nested"
        ),
    ],
)
def test_input_is_never_mutated(patch: dict[str, Any], fails: bool) -> None:
    raw = _deep_raw() | patch
    before = copy.deepcopy(raw)
    context = {"webhook": {"email": "ada@example.com"}}
    context_before = copy.deepcopy(context)
    if fails:
        data_error(ALL_SPECS, raw, context)
    else:
        values = validate(ALL_SPECS, raw, context)
        assert values["userId"] == "ada@example.com"
        assert values["traits"]["address"] == {"zip": 75001, "city": "Paris"}
        assert values["lines"] == [{"qty": 2}, {"qty": 3}]
        # The result shares nothing mutable with the input.
        values["body"]["nested"][0]["deep"]["deeper"].append("x")
        values["customTraits"]["plan"]["tier"].append("y")
    assert raw == before
    assert context == context_before


# The first pass over a key/value list checks every key; later passes take known keys in
# a fast loop. Both must give the same result and the same error, item for item.
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param([{"key": "a", "value": 1}, {"key": "b", "value": "x"}], id="plain"),
        pytest.param(
            [{"key": "a", "value": 1}, {"key": "b", "value": "{{ row.b }}"}], id="mapped-value"
        ),
        pytest.param(
            [{"key": "a", "value": 1}, {"key": "{{ row.name }}", "value": 2}], id="mapped-key"
        ),
        pytest.param([{"key": "a", "value": 1}, {"key": "a", "value": 2}], id="duplicate"),
        pytest.param([{"key": "a", "value": 1}, {"key": "Email", "value": 2}], id="reserved"),
        pytest.param([{"key": "a", "value": 1}, {"key": "", "value": 2}], id="empty-key"),
        pytest.param([{"key": "a", "value": {"n": [1]}}], id="nested-value"),
        pytest.param([{"key": "a", "value": 1}, "b"], id="not-an-object"),
    ],
)
def test_keyvalue_lists_same_on_first_and_later_runs(raw: list[Any]) -> None:
    plan = ParameterPlan([CUSTOM_TRAITS])  # kept across runs, as on a loaded module
    interpreted = ParameterPlan([CUSTOM_TRAITS], shortcuts=False)
    context = {"row": {"b": "B", "name": "b"}}

    def outcome(which: ParameterPlan) -> Any:
        try:
            return which.check({"customTraits": copy.deepcopy(raw)}, context)
        except DataError as exc:
            return (exc.field, exc.message, exc.faults)

    warm_up = plan.check({"customTraits": [{"key": "a", "value": 0}]})
    assert warm_up["customTraits"] == {"a": 0}
    first, second = outcome(plan), outcome(plan)
    assert first == second == outcome(interpreted)
    if isinstance(first, tuple):
        assert first[0] == "customTraits"
    else:
        assert first["customTraits"]["a"] in (1, {"n": [1]})


# -- missing keys in mappings (Make's unmapped fields) ---------------------------------------

BADGE = {"webhook": {"badge": {"id": "b-1", "name": "Gold"}, "user": None, "tags": ["1", "2"]}}


@pytest.mark.parametrize(
    ("specs", "raw", "expected"),
    [
        pytest.param(
            [P(name="email", type="email")],
            {"email": "{{ webhook.badge.missing }}"},
            {},
            id="missing-key",
        ),
        pytest.param(
            [P(name="email", type="email")], {"email": "{{ nobody.email }}"}, {}, id="missing-root"
        ),
        pytest.param(
            [P(name="email", type="email")],
            {"email": "{{ webhook.user.email }}"},
            {},
            id="through-null",
        ),
        pytest.param(
            [P(name="note", type="text")],
            {"note": "Badge: {{ webhook.badge['missing'] }}!"},
            {},
            id="inside-text",
        ),
        pytest.param(
            [P(name="plan", type="text", default="free")],
            {"plan": "{{ webhook.badge.missing }}"},
            {"plan": "free"},
            id="default-applies",
        ),
        pytest.param(
            [TRAITS],
            {"traits": {"email": "{{ webhook.badge.missing }}", "age": "3"}},
            {"traits": {"age": 3, "address": {}}},
            id="nested-field",
        ),
        pytest.param(
            [TAGS],
            {"tags": ["1", "{{ webhook.badge.missing }}", "{{ webhook.badge.id | length }}"]},
            {"tags": [1, 3]},
            id="array-item",
        ),
        pytest.param(
            [P(name="tags", type="array")],
            {"tags": ["a", "{{ webhook.missing }}", "b"]},
            {"tags": ["a", "b"]},
            id="untyped-array-item",
        ),
        pytest.param(
            [KV],
            {
                "context": [
                    {"key": "a", "value": "{{ webhook.badge.missing }}"},
                    {"key": "{{ webhook.missing }}", "value": 1},
                    {"key": "b", "value": "{{ webhook.badge.name }}"},
                ]
            },
            {"context": {"b": "Gold"}},
            id="keyvalue-pairs",
        ),
        pytest.param(
            [KV],
            {"context": {"a": "{{ webhook.missing }}", "b": 2}},
            {"context": {"b": 2}},
            id="keyvalue-object",
        ),
        pytest.param(
            [P(name="body", type="any")],
            {"body": {"a": ["{{ webhook.missing }}", 1], "b": "{{ webhook.badge.missing }}"}},
            {"body": {"a": [1]}},
            id="any-value",
        ),
        pytest.param([MODE], {"mode": "{{ webhook.missing }}"}, {}, id="select"),
        pytest.param(
            [P(name="badge", type="any")],
            {"badge": "{{ webhook.badge.missing | default('none') }}"},
            {"badge": "none"},
            id="default-filter-still-works",
        ),
    ],
)
def test_missing_keys_leave_optional_fields_unmapped(
    specs: list[Parameter], raw: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert validate(specs, raw, BADGE) == expected


@pytest.mark.parametrize(
    ("specs", "raw", "field", "detail"),
    [
        pytest.param(
            [USER_ID],
            {"userId": "{{ webhook.badge.missing }}"},
            "userId",
            "'webhook.badge.missing', which the data does not have (webhook.badge has: id, name)",
            id="missing-key",
        ),
        pytest.param(
            [USER_ID],
            {"userId": "{{ hook.id }}"},
            "userId",
            "'hook', which the data does not have (the data has: webhook)",
            id="missing-root",
        ),
        pytest.param(
            [USER_ID],
            {"userId": "{{ webhook.user.id }}"},
            "userId",
            "'webhook.user.id', which the data does not have (webhook.user is null)",
            id="through-null",
        ),
        pytest.param(
            [
                P(
                    name="traits",
                    type="collection",
                    fields=[{"name": "id", "type": "text", "required": True}],
                )
            ],
            {"traits": {"id": "{{ webhook.badge.code }}"}},
            "traits.id",
            "'webhook.badge.code', which the data does not have (webhook.badge has: id, name)",
            id="nested-required",
        ),
    ],
)
def test_missing_keys_in_required_fields_name_the_path_and_the_keys(
    specs: list[Parameter], raw: dict[str, Any], field: str, detail: str
) -> None:
    exc = data_error(specs, raw, BADGE)
    assert exc.field == field
    assert exc.rule == "required"
    assert exc.message.startswith(f"field {field!r}")
    assert exc.message.endswith(f"is required, but its mapping reads {detail}")


def test_a_template_s_output_is_data_never_rendered_again() -> None:
    """Text that a mapping rendered is data: a webhook carrying ``{{ ... }}`` is sent as
    it came, in a collection as at the top level."""
    context = {"webhook": {"bio": "{{ 7 * 7 }}"}}
    raw = {"traits": {"address": {"city": "{{ webhook.bio }}"}}, "note": "{{ webhook.bio }}"}
    values = validate([TRAITS, P(name="note", type="text")], raw, context)
    assert values["traits"]["address"]["city"] == "{{ 7 * 7 }}"
    assert values["note"] == "{{ 7 * 7 }}"
    # JSON text a template gave is data too; JSON text the builder typed is the
    # builder's, templates included.
    context["webhook"]["json"] = '{"address": {"city": "{{ 6 * 7 }}"}}'
    values = validate([TRAITS], {"traits": "{{ webhook.json }}"}, context)
    assert values["traits"]["address"]["city"] == "{{ 6 * 7 }}"
    values = validate([TRAITS], {"traits": '{"address": {"city": "{{ 6 * 7 }}"}}'}, context)
    assert values["traits"]["address"]["city"] == "42"


# -- every fault, not only the first ----------------------------------------------------------

FORM = [
    USER_ID,
    P(name="n", type="integer", minimum=0),
    P(name="email", type="email"),
    P(name="currency", type="text", format="currency"),
    TRAITS,
    TAGS,
    CUSTOM_TRAITS,
    MODE,
]


@pytest.mark.parametrize(
    ("raw", "faults"),
    [
        pytest.param({"userId": "u", "n": "x"}, [("n", "type")], id="one"),
        pytest.param(
            {"n": -1, "email": "nope", "currency": "EURO"},
            [("userId", "required"), ("n", "minimum"), ("email", "format"), ("currency", "format")],
            id="several-in-order",
        ),
        pytest.param(
            {"userId": "u", "zz": 1, "n": "x"},
            [("zz", "additionalProperties"), ("n", "type")],
            id="unknown-first",
        ),
        pytest.param(
            {"userId": "u", "traits": {"age": -1, "address": {"zip": "x", "lat": "y"}, "bad": 1}},
            [
                ("traits.bad", "additionalProperties"),
                ("traits.age", "minimum"),
                ("traits.address.zip", "type"),
                ("traits.address.lat", "type"),
            ],
            id="nested",
        ),
        pytest.param(
            {"userId": "u", "tags": ["x", "2", "y"]},
            [("tags[0]", "type"), ("tags[2]", "type")],
            id="array-items",
        ),
        pytest.param(
            {"userId": "u", "tags": ["1", "2", "3", "4"]}, [("tags", "maxItems")], id="array-size"
        ),
        pytest.param(
            {
                "userId": "u",
                "customTraits": [
                    {"key": "Email", "value": 1},
                    {"key": "ok", "value": 1},
                    {"key": "ok", "value": 2},
                    {"key": "first name", "value": 3},
                    "plain",
                ],
            },
            [
                ("customTraits", "reserved"),
                ("customTraits", "uniqueKeys"),
                ("customTraits", "reserved"),
                ("customTraits", "type"),
            ],
            id="keyvalue-pairs",
        ),
        pytest.param(
            {"userId": "u", "mode": 1, "a": "x", "email": "{{ 1 / 0 }}"},
            [("email", "mapping"), ("a", "type")],
            id="select-nested-and-mapping",
        ),
        pytest.param({"userId": "u", "mode": "four"}, [("mode", "enum")], id="select-unknown"),
        pytest.param({"userId": "abcdefghij" * 2, "n": "1"}, [], id="valid"),
    ],
)
def test_every_fault_is_reported(raw: dict[str, Any], faults: list[tuple[str, str]]) -> None:
    if not faults:
        validate(FORM, raw)
        return
    exc = data_error(FORM, raw)
    assert [(fault.field, fault.rule) for fault in exc.faults] == faults
    # field and message stay the first fault's, as before there was a list.
    first = exc.faults[0]
    assert (exc.field, exc.message, exc.rule) == (first.field, first.message, first.rule)
    assert all(f"field {fault.field!r}" in fault.message for fault in exc.faults)
    assert exc.to_dict()["faults"] == [
        {"field": f.field, "rule": f.rule, "message": f.message} for f in exc.faults
    ]


@pytest.mark.parametrize(
    ("raw", "faults"),
    [
        pytest.param({"n": "x"}, [("n", "type"), ("userId", "oneOfRequired")], id="alongside"),
        pytest.param(
            {"userId": {"a": 1}}, [("userId", "type")], id="skipped-when-its-field-is-at-fault"
        ),
        pytest.param({"anonymousId": "a", "n": "x"}, [("n", "type")], id="met"),
    ],
)
def test_constraints_report_with_the_fields(
    raw: dict[str, Any], faults: list[tuple[str, str]]
) -> None:
    exc = data_error([*IDS, P(name="n", type="integer")], raw, constraints=[ONE_OF])
    assert [(fault.field, fault.rule) for fault in exc.faults] == faults


def test_a_data_error_without_a_list_has_its_own_fault() -> None:
    exc = DataError("the body is too big", field="body")
    assert exc.faults == [Fault("body", "invalid", "the body is too big")]
    assert exc.to_dict()["faults"] == [
        {"field": "body", "rule": "invalid", "message": "the body is too big"}
    ]


def test_redaction_covers_every_fault() -> None:
    exc = DataError.of(
        [Fault("a", "type", "field 'a' got 'SECRET'"), Fault("b", "format", "'SECRET' again")]
    )
    exc.redact(lambda text: text.replace("SECRET", "***"))
    assert "SECRET" not in repr(exc.to_dict()) and "SECRET" not in str(exc)
    assert [fault.message for fault in exc.faults] == ["field 'a' got '***'", "'***' again"]


# -- through the engine and the command line --------------------------------------------------


def test_a_run_reports_every_fault_redacted_and_sends_nothing(counting_engine: Any) -> None:
    engine, sent = counting_engine
    parameters = {
        "event": "",
        "currency": WRITE_KEY,
        "revenue": f"{WRITE_KEY}!",
        "customProperties": [{"key": "revenue", "value": 1}],
    }
    with pytest.raises(DataError) as info:
        engine.run("segment.track", {"writeKey": WRITE_KEY}, parameters)
    assert sent == []
    exc = info.value
    assert [(f.field, f.rule) for f in exc.faults] == [
        ("event", "required"),
        ("currency", "format"),
        ("revenue", "type"),
        ("customProperties", "reserved"),
        ("userId", "oneOfRequired"),
    ]
    assert (exc.field, exc.message) == (exc.faults[0].field, exc.faults[0].message)
    assert WRITE_KEY not in json.dumps(exc.to_dict())
    assert "[REDACTED]" in exc.faults[1].message


def test_the_loaded_module_holds_its_compiled_plan() -> None:
    registry = connector.load()
    module = registry.get("segment.track")
    plan = module.parameter_plan
    assert isinstance(plan, ParameterPlan)
    # Its own, made when the module was loaded: another load compiles another.
    assert connector.load().get("segment.track").parameter_plan is not plan
    assert plan.check({"event": "E", "userId": "u"}) == {"event": "E", "userId": "u"}


def test_the_command_line_prints_every_fault(tmp_path: Path) -> None:
    done = run_cli(
        "run",
        "segment.track",
        "--connection",
        json.dumps({"writeKey": WRITE_KEY}),
        "--parameters",
        json.dumps({"event": "E", "userId": "u", "revenue": "x", "currency": "EURO", "zz": 1}),
        "--dry-run",
        env={**os.environ, "CONNECTOR_HOME": str(tmp_path)},
    )
    assert done.returncode == 1, done.stderr
    error = json.loads(done.stderr)["error"]
    assert error["type"] == "DataError"
    assert error["field"] == "zz"
    assert [(f["field"], f["rule"]) for f in error["faults"]] == [
        ("zz", "additionalProperties"),
        ("currency", "format"),
        ("revenue", "type"),
    ]
    assert error["faults"][0]["message"] == error["message"]


def _manifest_reads(template: str) -> Any:
    def mutate(app: dict[str, Any], module: dict[str, Any]) -> None:
        module["request"]["body"]["extra"] = template

    return mutate


@pytest.mark.parametrize(
    ("manifest_template", "mapped", "error", "detail"),
    [
        pytest.param(
            "{{ parameters.mesage }}",
            "hi",
            ManifestError,
            "unknown parameter 'parameters.mesage'",
            id="manifest-typo-at-load",
        ),
        pytest.param(
            "{{ run.nope.x }}",
            "hi",
            InvalidConfigurationError,
            "the manifest's body template failed",
            id="manifest-missing-key-at-run",
        ),
        pytest.param(
            "{{ parameters.message }}",
            "{{ webhook.nope }}",
            DataError,
            "field 'message' is required, but its mapping reads 'webhook.nope', which the "
            "data does not have (webhook has: id)",
            id="builder-missing-key-in-a-required-field",
        ),
    ],
)
def test_a_manifest_s_own_template_stays_strict(
    tmp_path: Path,
    manifest_template: str,
    mapped: str,
    error: type[Exception],
    detail: str,
) -> None:
    folder = build_app(tmp_path, _manifest_reads(manifest_template))
    conn = {"writeKey": WRITE_KEY}
    with pytest.raises(error) as info, connector.Engine(connector.load(folder)) as engine:
        engine.dry_run("demo.ping", conn, {"message": mapped}, {"webhook": {"id": 1}})
    assert detail in str(info.value)
