"""Fields that depend on a select's option (Make's nested parameters).

Several options may show the same field (LiveLike's events share ``quest_id``): allowed
when the definitions are identical, because only one option is ever chosen. Any other
repeated name would make ``parameters.<name>`` ambiguous and is refused at load time.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connector.core.describe import parameters_schema
from connector.core.validation import validate_parameters
from connector.format.manifest import ModuleManifest, Parameter

QUEST = {"name": "quest_id", "type": "text", "label": "Quest ID"}
BADGE = {"name": "badge_id", "type": "text"}


def select(name: str, *options: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "select",
        "options": [{"value": value, "nested": nested} for value, nested in options],
    }


def module(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "demo.m",
        "label": "M",
        "description": "d",
        "parameters": list(parameters),
        "request": {"url": "/m"},
    }


@pytest.mark.parametrize(
    ("parameters", "error"),
    [
        ([select("event", ("a", [QUEST]), ("b", [QUEST, BADGE]))], None),
        (
            [select("event", ("a", [QUEST]), ("b", [{**QUEST, "label": "Other"}]))],
            "different definitions",
        ),
        ([QUEST, select("event", ("a", [QUEST]))], "duplicate parameter name 'quest_id'"),
        (
            [select("event", ("a", [QUEST])), select("mode", ("x", [QUEST]))],
            "duplicate parameter name 'quest_id'",
        ),
        ([select("event", ("a", [QUEST, QUEST]))], "duplicate parameter name 'quest_id'"),
        (
            [
                select(
                    "event", ("a", [select("sub", ("1", [QUEST]), ("2", [QUEST]))]), ("b", [QUEST])
                )
            ],
            None,
        ),
        (
            [
                select(
                    "event",
                    ("a", [select("sub", ("1", [QUEST]))]),
                    ("b", [{**QUEST, "type": "number"}]),
                )
            ],
            "different definitions",
        ),
        (
            [{"name": "c", "type": "collection", "fields": [QUEST, select("e", ("a", [QUEST]))]}],
            "duplicate field name 'quest_id'",
        ),
        (
            [
                {
                    "name": "c",
                    "type": "collection",
                    "fields": [select("e", ("a", [QUEST]), ("b", [QUEST]))],
                }
            ],
            None,
        ),
    ],
)
def test_names_of_option_fields(parameters: list[dict[str, Any]], error: str | None) -> None:
    if error is None:
        ModuleManifest.model_validate(module(*parameters))
    else:
        with pytest.raises(ValidationError, match=error):
            ModuleManifest.model_validate(module(*parameters))


def test_describe_shows_a_shared_field_under_each_of_its_options() -> None:
    params = [
        Parameter.model_validate(
            select("event", ("a", [QUEST]), ("b", [BADGE]), ("c", [QUEST]), ("d", []))
        )
    ]
    props = parameters_schema(params)["properties"]
    assert list(props) == ["event", "quest_id", "badge_id"]
    assert props["quest_id"]["x-shown-when"] == {"event": ["a", "c"]}
    assert props["badge_id"]["x-shown-when"] == {"event": "b"}
    assert props["quest_id"]["title"] == "Quest ID"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"event": "a", "quest_id": "q"}, {"event": "a", "quest_id": "q"}),
        ({"event": "c", "quest_id": "q"}, {"event": "c", "quest_id": "q"}),
        ({"event": "b", "badge_id": "x", "quest_id": "q"}, {"event": "b", "badge_id": "x"}),
        ({"event": "d", "quest_id": "q"}, {"event": "d"}),
    ],
)
def test_only_the_chosen_options_fields_are_kept(
    raw: dict[str, Any], expected: dict[str, Any]
) -> None:
    params = [
        Parameter.model_validate(
            select("event", ("a", [QUEST]), ("b", [BADGE]), ("c", [QUEST]), ("d", []))
        )
    ]
    assert validate_parameters(params, [], raw) == expected
