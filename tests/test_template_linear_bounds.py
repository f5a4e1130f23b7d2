"""merge and compact are bounded like every other filter, on both paths.

They ran unguarded and uncharged: one expression could repeat them as often as its text
allowed (``a | merge(a, a, ...)``, ``{} | merge(a | compact, a | compact, ...)``), each
linear in a value of the scope, so a few kilobytes of template over a 100,000-key
object ran for seconds past the render's deadline or held gigabytes, on the fast path
(without a budget) and on Jinja's (whose budget they never touched) alike. Each now
refuses a result past the output limit and charges what it walks; the fast path leaves
an expression unbudgeted only when its literals and these calls together cannot
exhaust a budget.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any

import pytest

from connector.templating import budget
from connector.templating.limits import MAX_OUTPUT
from connector.templating.sandbox import UNBUDGETED_UNITS, environment
from connector.templating.templates import CompiledTemplate
from tests.test_fastpath_budget import render_outcome


def _both(source: str, scope: dict[str, Any]) -> tuple[str, Any]:
    template = CompiledTemplate(source)
    assert template._fast is not None
    fast = render_outcome(template._fast, scope)
    assert fast == render_outcome(template.render_jinja, scope)
    return fast


def _armed(source: str, scope: dict[str, Any]) -> bool:
    fast = CompiledTemplate(source)._fast
    assert fast is not None

    def render() -> Any:
        fast(scope)
        return budget.current()

    return contextvars.Context().run(render) is not None


#: An object at the output limit: every merge or compact of it is a limit's worth.
LIMIT = {f"k{i}": i for i in range(MAX_OUTPUT)}


@pytest.fixture
def no_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work, not the clock of a busy machine, decides where these renders stop."""
    monkeypatch.setattr(budget, "MAX_RENDER_SECONDS", 3600.0)


@pytest.mark.usefixtures("no_deadline")
def test_a_long_merge_runs_out_of_work_on_both_paths() -> None:
    """``a | merge(a, ... a)``: one filter, no literal, 25 million updates before."""
    source = "{{ a | merge(" + ", ".join(["a"] * 24) + ") }}"
    outcome = _both(source, {"a": LIMIT})
    assert outcome[0] == "error" and "characters and items of work" in outcome[1]


def test_merge_refuses_a_result_past_the_output_limit() -> None:
    half = MAX_OUTPUT // 2 + 1
    scope = {"a": {f"a{i}": 0 for i in range(half)}, "b": {f"b{i}": 0 for i in range(half)}}
    outcome = _both("{{ a | merge(b) }}", scope)
    assert outcome[0] == "error" and f"{MAX_OUTPUT:,}" in outcome[1]


def test_compact_refuses_a_value_past_the_output_limit() -> None:
    scope = {"a": {"x": [""] * (MAX_OUTPUT + 1)}}
    outcome = _both("{{ a | compact }}", scope)
    assert outcome[0] == "error" and f"{MAX_OUTPUT:,}" in outcome[1]


def test_compact_charges_what_it_walks() -> None:
    compact = environment().filters["compact"]
    with budget.render_budget():
        compact({"a": [1, 2, None], "b": {"c": ""}})
        assert budget.current()[1] == budget.MAX_RENDER_WORK - 2 - 3 - 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("source", "armed"),
    [
        ("{{ {'a': x} | compact | merge(y) }}", False),  # a Segment body: 4 of them
        ("{{ y | merge(" + ", ".join(["y"] * (UNBUDGETED_UNITS - 1)) + ") }}", False),
        ("{{ y | merge(" + ", ".join(["y"] * UNBUDGETED_UNITS) + ") }}", True),
        ("{{ {} | merge(" + ", ".join(["y | compact"] * 10) + ") }}", True),
    ],
    ids=["segment-body", "most-operands", "one-operand-too-many", "many-compacts"],
)
def test_merge_operands_and_compacts_count_towards_the_unbudgeted_limit(
    source: str, armed: bool
) -> None:
    assert _armed(source, {"x": "abc", "y": {"b": 1}}) is armed


@pytest.mark.usefixtures("no_deadline")
def test_the_most_an_unbudgeted_expression_may_do_agrees_with_jinja() -> None:
    """At the unbudgeted limit, every operand the output limit's weight: Jinja's budget,
    charged for each, is not exhausted either."""
    source = "{{ a | merge(" + ", ".join(["a"] * (UNBUDGETED_UNITS - 1)) + ") }}"
    assert not _armed(source, {"a": {"b": 1}})
    assert _both(source, {"a": LIMIT}) == ("value", MAX_OUTPUT)


@pytest.mark.parametrize("path", ["fast", "jinja"])
def test_a_literal_repeating_a_long_list_is_refused_without_walking_every_copy(
    path: str,
) -> None:
    """``[x, x, ... x]`` over a list of 100,000 numbers: the size guard counted every
    copy to the end (5,000 copies: half a billion items, tens of seconds of one
    literal's check, with no budget on the fast path and before the charge on Jinja's)
    before it compared the count with the limit. It stops once past the limit: the
    render ends within its deadline (of its CPU time, as the property test measures)."""
    template = CompiledTemplate("{{ [" + ", ".join(["x"] * 5000) + "] }}")
    assert template._fast is not None
    render = template._fast if path == "fast" else template.render_jinja
    start = time.process_time()
    with pytest.raises(OverflowError, match="exceed"):
        render({"x": list(range(100_000))})
    assert time.process_time() - start < budget.MAX_RENDER_SECONDS + 1.5
