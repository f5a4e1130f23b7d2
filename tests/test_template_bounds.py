"""Regression tests of issue 10, section 1: every operation of a render is bounded.

Each case below ran unbounded before (minutes, hours or gigabytes at the issue's sizes;
at the sizes used here it finished, with a result over the limits). Now each is refused
with an OverflowError before the work or the allocation, and the render stays within
its deadline.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from connector.templating import budget
from connector.templating.limits import MAX_INT_BITS, MAX_OUTPUT, MAX_ROUND_DIGITS
from connector.templating.templates import RENDER_FAILURES, CompiledTemplate

#: What a refused render may take beyond the deadline (one bounded operation).
MARGIN = 1.5


def render(source: str, scope: dict[str, Any] | None = None) -> Any:
    return CompiledTemplate(source).render(scope or {})


@pytest.mark.parametrize(
    ("source", "scope"),
    [
        # CPU inside a filter: round computes 10 ** precision.
        pytest.param("{{ 5 | round(-10**6) }}", {}, id="round-huge-negative-precision"),
        pytest.param("{{ 5 | round(10**6, 'ceil') }}", {}, id="round-ceil-huge-precision"),
        pytest.param("{{ x | round(-1000000) }}", {"x": 5}, id="round-precision-as-a-literal"),
        # sort | reverse | list over big inputs: each is charged to the work budget.
        pytest.param(
            "{{ a" + " | sort | reverse | list" * 10 + " | length }}",
            {"a": list(range(100_000))},
            id="sort-reverse-list-chain",
        ),
        # Memory: a {% set %} block's capture is size-checked.
        pytest.param(
            "{% set a = s %}" + "{% set a %}{{ a }}{{ a }}{% endset %}" * 5 + "{{ a | length }}",
            {"s": "x" * 100_000},
            id="set-block-doubling",
        ),
        pytest.param(
            "{% set a %}{{ s }}{{ s }}{{ s }}{% endset %}{{ a | length }}",
            {"s": "x" * 400_000},
            id="set-block-over-the-limit",
        ),
        pytest.param(
            "{% macro m() %}{{ s }}{{ s }}{{ s }}{% endmacro %}{{ m() | length }}",
            {"s": "x" * 400_000},
            id="macro-capture",
        ),
        # Bytes: every method that grows its result is checked before it allocates.
        pytest.param("{{ (1).to_bytes(2000000, 'big') | length }}", {}, id="to_bytes"),
        pytest.param("{{ ('a'.encode() * 2000001) | length }}", {}, id="encode-times-n"),
        pytest.param("{{ (2000001 * 'a'.encode()) | length }}", {}, id="n-times-encode"),
        pytest.param("{{ (b + b + b) | length }}", {"b": b"x" * 400_000}, id="bytes-plus"),
        pytest.param("{{ 'a'.encode().zfill(2000000) | length }}", {}, id="bytes-zfill"),
        pytest.param("{{ 'a'.encode().rjust(2000000) | length }}", {}, id="bytes-rjust"),
        pytest.param("{{ 'a'.encode().ljust(2000000) | length }}", {}, id="bytes-ljust"),
        pytest.param("{{ 'a'.encode().center(2000000) | length }}", {}, id="bytes-center"),
        pytest.param(
            "{{ b.replace(a, aaa) | length }}",
            {"b": b"a" * 600_000, "a": b"a", "aaa": b"aaa"},
            id="bytes-replace",
        ),
        pytest.param(
            "{{ ('\t' * 1000).encode().expandtabs(3000) | length }}", {}, id="bytes-expandtabs"
        ),
        pytest.param(
            "{{ ','.encode().join([b, b, b]) | length }}",
            {"b": b"x" * 400_000},
            id="bytes-join",
        ),
        pytest.param(
            "{{ (f % a) | length }}", {"f": b"%2000000s", "a": b"a"}, id="bytes-percent-format"
        ),
        # Chained str.translate: each call multiplies the size.
        pytest.param(
            "{{ 'aa'.translate(t).translate(t) | length }}",
            {"t": {97: "a" * 1000}},
            id="translate-chain",
        ),
        pytest.param(
            "{{ ('a' * 2000).translate(t) | length }}", {"t": {97: "a" * 1000}}, id="translate"
        ),
        # int(base=...) making integers over the bit limit.
        pytest.param("{{ (s | int(base=16)) > 0 }}", {"s": "f" * 250_000}, id="int-base-16"),
        pytest.param("{{ (s | int(0, 2)) > 0 }}", {"s": "1" * 200_000}, id="int-base-2"),
        pytest.param("{{ (s | int(0, 0)) > 0 }}", {"s": "0x" + "f" * 250_000}, id="int-base-0"),
        # Refused before the issue (by the loop deadline, the output cap or the ``*``
        # check), kept to show they still are.
        pytest.param("{{ 5.5 | round(10**6, 'floor') }}", {}, id="round-floor-huge-precision"),
        pytest.param(
            "{% for i in range(100) %}{% set b = a | sort | reverse | list %}{% endfor %}",
            {"a": list(range(100_000))},
            id="sort-reverse-list-loop",
        ),
        pytest.param(
            "{% filter upper %}{{ s }}{{ s }}{{ s }}{% endfilter %}",
            {"s": "x" * 400_000},
            id="filter-block-capture",
        ),
        pytest.param(
            "{{ (s | int(base=16) * s | int(base=16)) > 0 }}", {"s": "f" * 20_000}, id="int-product"
        ),
    ],
)
def test_unbounded_operations_are_refused(source: str, scope: dict[str, Any]) -> None:
    start = time.monotonic()
    with pytest.raises(OverflowError):
        render(source, scope)
    assert time.monotonic() - start < budget.MAX_RENDER_SECONDS + MARGIN


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        pytest.param("{{ 1234 | round(-2) }}", {}, 1200, id="round-negative-precision"),
        pytest.param("{{ 5 | round(-30000) }}", {}, 0, id="round-at-its-limit"),
        pytest.param("{{ 2.675 | round(2, 'floor') }}", {}, 2.67, id="round-floor"),
        pytest.param("{{ 'ff' | int(base=16) }}", {}, 255, id="int-base-16"),
        pytest.param("{{ 'zz' | int(base=36) }}", {}, 1295, id="int-base-36"),
        pytest.param("{{ ('1' * 5000) | int }}", {}, 0, id="int-past-python-digit-limit"),
        pytest.param(
            "{{ (s | int(base=16)).bit_length() }}",
            {"s": "f" * (MAX_INT_BITS // 4)},
            MAX_INT_BITS,
            id="int-at-the-bit-limit",
        ),
        pytest.param("{{ a | sort | reverse | list | first }}", {"a": [3, 1, 2]}, 3, id="sort"),
        pytest.param(
            "{% set a %}{{ s }}{{ s }}{% endset %}{{ a | length }}",
            {"s": "x" * 500_000},
            "1000000",
            id="set-block-at-the-limit",
        ),
        pytest.param("{{ (1).to_bytes(4, 'big') }}", {}, b"\x00\x00\x00\x01", id="to_bytes"),
        pytest.param("{{ 'ab'.encode().zfill(4) }}", {}, b"00ab", id="bytes-zfill"),
        pytest.param(
            "{{ b.replace(x, y) }}",
            {"b": b"axa", "x": b"x", "y": b"yy"},
            b"ayya",
            id="bytes-replace",
        ),
        pytest.param("{{ ','.encode().join([b, b]) }}", {"b": b"q"}, b"q,q", id="bytes-join"),
        pytest.param("{{ 'abc'.translate({97: 'xy'}) }}", {}, "xybc", id="translate"),
        pytest.param("{{ ('\t').expandtabs(4) }}", {}, "    ", id="expandtabs"),
    ],
)
def test_bounded_operations_within_their_limits(
    source: str, scope: dict[str, Any], expected: Any
) -> None:
    assert render(source, scope) == expected


def test_round_limit_is_the_digits_of_the_largest_integer() -> None:
    assert render(f"{{{{ x | round(-{MAX_ROUND_DIGITS}) }}}}", {"x": 7}) == 0
    with pytest.raises(OverflowError, match="precision"):
        render(f"{{{{ x | round(-{MAX_ROUND_DIGITS + 1}) }}}}", {"x": 7})


def test_a_set_block_is_refused_before_it_is_joined() -> None:
    """The issue's case at its own size: 8 doublings of a 1,000,000-character text
    built 256,000,000 characters (532 MB). Now the first doubling is refused, before
    Jinja joins the capture."""
    source = "{% set a = s %}" + "{% set a %}{{ a }}{{ a }}{% endset %}" * 8 + "{{ a | length }}"
    tracemalloc.start()
    try:
        with pytest.raises(OverflowError, match="captured block"):
            render(source, {"s": "x" * MAX_OUTPUT})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * MAX_OUTPUT  # well under one doubling of the 1 MB text


def test_work_budget_counts_heavy_steps_of_a_loop() -> None:
    """Each step is small enough; together they are refused by the work budget."""
    source = "{% for i in range(1000) %}{{ '' if s | upper else '' }}{% endfor %}"
    with pytest.raises(OverflowError, match="characters and items of work"):
        render(source, {"s": "x" * MAX_OUTPUT})


def test_deadline_holds_inside_a_filter_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """A chain of filters without loop or call is still stopped at the deadline: every
    heavy filter checks it before it runs (light ones are many only in loops, which
    check it at every iteration)."""
    monkeypatch.setattr(budget, "MAX_RENDER_SECONDS", 0.0)
    with pytest.raises(OverflowError, match="seconds"):
        render("{{ a | list | list }}", {"a": list(range(budget.HEAVY + 1))})
    with pytest.raises(OverflowError, match="seconds"):
        render("{% for x in a %}{{ x | string }}{% endfor %}", {"a": [1, 2]})


def test_deeply_nested_expression_is_a_template_error() -> None:
    """Python refuses code nested a few hundred levels; that is a template error the
    caller reports, not a crash."""
    source = "{{ a" + " | list" * 300 + " }}"
    with pytest.raises(RENDER_FAILURES):
        render(source, {"a": [1]})


def test_fast_path_budget_is_its_own_per_thread() -> None:
    """The fast path re-arms one budget list per context in place; a context copied
    into another thread (asyncio.to_thread does) gets a list of its own, so two threads
    never reset each other's render."""
    import contextvars
    import threading

    mine = budget.arm()
    budget.disarm(mine)
    context = contextvars.copy_context()
    theirs: list[list[float]] = []
    thread = threading.Thread(target=lambda: theirs.append(context.run(budget.arm)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine
    assert budget.arm() is mine


def test_nothing_is_refused_outside_a_render_after_a_fast_path_render() -> None:
    template = CompiledTemplate("{{ x | upper }}")
    assert template._fast is not None
    assert template.render({"x": "a"}) == "A"
    budget.charge(10 * budget.MAX_RENDER_WORK)  # outside any render: not counted
    budget.spend()


@pytest.mark.parametrize(
    ("source", "scope"),
    [
        pytest.param("{{ x | dictsort }}", {"x": b"ab"}, id="dictsort-of-bytes"),
        pytest.param("{{ x | truncate(0) }}", {"x": "abc"}, id="truncate-assertion"),
        pytest.param("{{ 'a'.encode('no-such-codec') }}", {}, id="unknown-codec"),
    ],
)
def test_whatever_a_filter_raises_is_a_render_failure(source: str, scope: dict[str, Any]) -> None:
    """Found by the property test: Jinja's own filters raise AttributeError and
    AssertionError for values of the wrong kind; callers must get a template fault
    they report, never an exception they do not expect."""
    with pytest.raises(RENDER_FAILURES):
        render(source, scope)


def test_linear_filters_run_unguarded_but_loops_of_them_hit_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """merge and compact skip the filter guard (linear, and never larger than their
    inputs): a loop of them is still stopped at the deadline, on both paths."""
    from connector.templating.sandbox import _merge, environment

    assert environment().filters["merge"] is _merge
    monkeypatch.setattr(budget, "MAX_RENDER_SECONDS", 0.0)
    big = {str(i): i for i in range(1000)}
    with pytest.raises(OverflowError, match="seconds"):
        render(
            "{% for i in range(3) %}{{ d | merge(d) | compact | length }}{% endfor %}", {"d": big}
        )
