"""Expressions the fast path runs without a render budget, and where that stops.

An expression whose only calls are the literal size guard and the unguarded linear
filters (merge, compact) cannot exhaust a budget when it builds at most
UNBUDGETED_UNITS literals: each literal is refused past the output limit on its own.
The fast path then arms no budget; past that count it arms one, as Jinja's render
always does. Either way, results and errors are Jinja's, at the very edge of the work
budget too.
"""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from connector.templating import budget
from connector.templating.limits import MAX_OUTPUT
from connector.templating.sandbox import UNBUDGETED_UNITS
from connector.templating.templates import CompiledTemplate

#: A text that makes ``{'k': X}`` weigh exactly the output limit (1 item + its text).
HEAVY_TEXT = "y" * (MAX_OUTPUT - 1)
WORK_LIMIT_LITERALS = budget.MAX_RENDER_WORK // MAX_OUTPUT


def _merged(literals: int) -> str:
    """``{'k0': x} | merge({'k1': x}, ...)``: ``literals`` literals, each also one
    operand of one merge (which charges its one item), only unguarded filters."""
    parts = [f"{{'k{i}': x}}" for i in range(literals)]
    if literals == 1:
        return "{{ " + parts[0] + " | merge }}"
    return "{{ " + parts[0] + " | merge(" + ", ".join(parts[1:]) + ") }}"


def render_outcome(render: Any, scope: dict[str, Any]) -> tuple[str, Any]:
    """A render's outcome, comparable between the fast path and Jinja: the length of
    what it made, or its OverflowError's message."""
    try:
        value = render(scope)
    except OverflowError as exc:
        return "error", str(exc)
    return "value", len(value)


@pytest.mark.parametrize(
    "literals",
    [1, UNBUDGETED_UNITS, WORK_LIMIT_LITERALS, WORK_LIMIT_LITERALS + 1],
    ids=["one", "nineteen", "budget-exactly-spent", "budget-overrun"],
)
def test_heavy_literals_agree_with_jinja_at_the_work_limit(literals: int) -> None:
    template = CompiledTemplate(_merged(literals))
    assert template._fast is not None
    # Each literal one under the output limit's weight, and one item as merge's operand:
    # each spends exactly the limit's worth.
    scope = {"x": HEAVY_TEXT[1:]}
    fast = render_outcome(template._fast, scope)
    jinja = render_outcome(template.render_jinja, scope)
    assert fast == jinja
    if literals > WORK_LIMIT_LITERALS:
        assert fast[0] == "error" and "characters and items of work" in fast[1]
    else:
        assert fast == ("value", literals)


def test_a_literal_over_the_output_limit_is_refused_without_a_budget() -> None:
    template = CompiledTemplate("{{ {'a': x} | compact }}")
    scope = {"x": HEAVY_TEXT + "y"}
    assert render_outcome(template._fast, scope) == render_outcome(template.render_jinja, scope)
    assert render_outcome(template._fast, scope)[0] == "error"


@pytest.mark.parametrize(
    ("source", "armed"),
    [
        ("{{ {'a': x} | compact | merge(y) }}", False),  # a Segment body's shape
        ("{{ x }}", False),  # calls nothing
        ("{{ x | upper }}", True),  # a guarded filter spends
        ("{{ x is string }}", True),  # so does a test
        ("{{ [x] ~ 'a' }}", True),  # and the concat guard
        (_merged(UNBUDGETED_UNITS + 1), True),  # too many literals to leave it out
    ],
    ids=["linear", "read", "guarded-filter", "test", "concat", "many-literals"],
)
def test_which_expressions_run_within_a_budget(source: str, armed: bool) -> None:
    """Observed from outside: a render that arms a budget leaves the context's budget
    disarmed (set), one that needs none never touches it."""
    template = CompiledTemplate(source)
    assert template._fast is not None

    def render() -> Any:
        template._fast({"x": "abc", "y": {"b": 1}})
        return budget.current()

    left = contextvars.Context().run(render)  # an empty context: no budget yet
    assert (left is not None) is armed


@pytest.mark.parametrize(
    "source",
    ["{{ ([]) | min }}", "{{ x | max }}", "{{ x | first }}", "{{ x | last }}"],
    ids=["min-literal", "max", "first", "last"],
)
def test_an_undefined_result_fails_on_both_paths(source: str) -> None:
    """first, last, min and max of an empty sequence give an undefined value: the fast
    path refuses it as Jinja's render does (the differential property test found
    ``([]) | min`` returned as a value)."""
    from jinja2.exceptions import UndefinedError

    template = CompiledTemplate(source)
    assert template._fast is not None
    for render in (template._fast, template.render_jinja):
        with pytest.raises(UndefinedError):
            render({"x": []})
