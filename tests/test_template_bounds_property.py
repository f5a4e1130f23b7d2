"""Property test of issue 10, section 1: every render is bounded in time and memory.

Templates are generated over the whole allowed surface: every filter and test of the
sandbox with arguments drawn from small and huge values, the methods of texts, bytes,
integers, lists and dicts, every operator, literals, ``range``, and the statements
(``for``, ``if``, ``set``, ``{% set %}`` blocks, macros, filter blocks), over a scope
holding large values (a 1,000,000-character text, 1 MB of bytes, a 100,000-item list,
a 99,000-bit integer). Each render must end, with a value or one of the errors callers
report (RENDER_FAILURES), within the render deadline plus a small margin, and its peak
memory (tracemalloc) must stay under a ceiling.

The deadline is lowered for this test (see DEADLINE) so that renders stopped by it cost
less; the bound checked is the same: deadline plus margin. Time is measured as this
thread's CPU time: on a busy machine a render may wait seconds for a core without doing
any work (the deadline, read from the wall clock, then stops it early), and that wait
says nothing about the bounds.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connector.templating import budget
from connector.templating.templates import RENDER_FAILURES, CompiledTemplate, environment

#: The render deadline during this test, and what a render may take beyond it: one
#: operation, each bounded by the sandbox's checks (a sort of 100,000 items is about
#: the longest one allows), on a machine that may be busy.
DEADLINE = 0.5
MARGIN = 1.5
#: Most memory one render may allocate at its peak, the scope's values excluded.
CEILING = 200_000_000

_ENV = environment()
FILTERS = sorted(name for name in _ENV.filters if not name.startswith("_"))
TESTS = sorted(name for name in _ENV.tests if name.isidentifier())

SCOPE: dict[str, Any] = {
    "s": "x" * 1_000_000,
    "t": "a-b\tc %s {0}",
    "b": b"y" * 1_000_000,
    "l": list(range(100_000)),
    "d": {"a": {"b": ["c", 1, None, 2.5]}, "items": [1, 2], "k": "v"},
    "n": 2**99_000,
    "f": 1e308,
    "m": {97: "a" * 1000},
}
NAMES = sorted(SCOPE)

numbers = st.sampled_from(
    [
        *("0", "1", "2", "-1", "3", "16", "100", "1000", "10**6", "-10**6", "10**9"),
        *("-10**9", "2**64", "0.5", "1e308", "-2", "36"),
    ]
)
texts = st.sampled_from(["'a'", "''", "'-'", "'%s'", "'{0}'", "'\\t'", "'x' * 1000000"])
#: Methods by the kind of value they belong to, with the receivers drawn for them:
#: ``{n}`` is a number, ``{t}`` a text, ``{b}`` bytes, ``{e}`` any expression.
TEXTS = ["t", "s", "'a'", "('ab' * 1000)", "(t ~ t)"]
BYTES = ["b", "'a'.encode()", "t.encode()", "(b + b)"]
INTEGERS = ["n", "(1)", "(2**64)", "(-7)"]
COLLECTIONS = ["l", "d", "[1, 2]", "{'a': 1}"]
METHODS = {
    "text": (
        TEXTS,
        [
            *("ljust({n})", "rjust({n})", "center({n})", "zfill({n})", "expandtabs({n})"),
            *("replace({t}, {t})", "replace({t}, {t}, {n})", "join({e})", "translate(m)"),
            *("translate({e})", "encode()", "encode('utf-32')", "upper()", "split()"),
            *("splitlines()", "count({t})", "startswith({t})", "format({e})", "format_map(d)"),
        ],
    ),
    "bytes": (
        BYTES,
        [
            *("ljust({n})", "rjust({n})", "center({n})", "zfill({n})", "expandtabs({n})"),
            *("replace({b}, {b})", "replace({b}, {b} * {n})", "join([{b}, {b}])", "hex()"),
            *("decode()", "translate({e})", "count({b})", "split()"),
        ],
    ),
    "integer": (INTEGERS, ["to_bytes({n}, 'big')", "bit_length()", "to_bytes({n})"]),
    "collection": (
        COLLECTIONS,
        ["keys()", "values()", "items()", "get({e})", "copy()", "index({e})", "count({e})"],
    ),
}
operators = st.sampled_from(["*", "**", "+", "-", "/", "//", "%", "~", "==", "<", "in", "and"])


@st.composite
def expressions(draw: Any, depth: int = 0) -> str:
    leaf = depth >= 3
    kind = draw(
        st.sampled_from(
            ["name", "number", "text"]
            if leaf
            else [
                *("name", "number", "text", "filter", "filter", "filter", "method", "method"),
                *("operator", "operator", "test", "range", "list", "dict", "not", "cond"),
            ]
        )
    )
    inner = expressions(depth + 1)
    if kind == "name":
        return draw(st.sampled_from(NAMES))
    if kind == "number":
        return draw(numbers)
    if kind == "text":
        return draw(texts)
    if kind == "filter":
        name = draw(st.sampled_from(FILTERS))
        args = draw(st.lists(st.one_of(numbers, numbers, texts, inner), max_size=2))
        call = f"{name}({', '.join(args)})" if args else name
        return f"({draw(inner)}) | {call}"
    if kind == "method":
        receivers, calls = METHODS[draw(st.sampled_from(sorted(METHODS)))]
        receiver = draw(st.sampled_from(receivers) | inner)
        call = draw(st.sampled_from(calls)).format(
            n=draw(numbers),
            t=draw(st.sampled_from(TEXTS) | texts),
            b=draw(st.sampled_from(BYTES)),
            e=draw(inner),
        )
        return f"({receiver}).{call}"
    if kind == "operator":
        return f"({draw(inner)}) {draw(operators)} ({draw(inner)})"
    if kind == "test":
        return f"({draw(inner)}) is {draw(st.sampled_from(TESTS))}"
    if kind == "range":
        return f"range({draw(numbers)})"
    if kind == "list":
        return "[" + ", ".join(draw(st.lists(inner, max_size=3))) + "]"
    if kind == "dict":
        return (
            "{"
            + ", ".join(f"'k{i}': {e}" for i, e in enumerate(draw(st.lists(inner, max_size=2))))
            + "}"
        )
    if kind == "not":
        return f"not ({draw(inner)})"
    return f"({draw(inner)}) if ({draw(inner)}) else ({draw(inner)})"


@st.composite
def bodies(draw: Any, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                ["output", "text"]
                if depth >= 2
                else ["output", "output", "text", "for", "set", "block", "if", "macro", "filter"]
            )
        )
        inner = bodies(depth + 1)
        if kind == "output":
            parts.append("{{ " + draw(expressions()) + " }}")
        elif kind == "text":
            parts.append(draw(st.sampled_from(["x", " ", "abc" * 100])))
        elif kind == "for":
            parts.append(
                "{% for v in " + draw(expressions()) + " %}" + draw(inner) + "{% endfor %}"
            )
        elif kind == "set":
            name = draw(st.sampled_from([*NAMES, "v"]))
            parts.append("{% set " + name + " = " + draw(expressions()) + " %}")
        elif kind == "block":
            name = draw(st.sampled_from([*NAMES, "v"]))
            parts.append("{% set " + name + " %}" + draw(inner) + "{% endset %}")
        elif kind == "if":
            parts.append("{% if " + draw(expressions()) + " %}" + draw(inner) + "{% endif %}")
        elif kind == "macro":
            parts.append(
                "{% macro w(v) %}" + draw(inner) + "{% endmacro %}"
                "{{ w(" + draw(expressions()) + ") }}{{ w(s) }}"
            )
        else:
            name = draw(st.sampled_from(["upper", "trim", "string", "urlencode", "e"]))
            parts.append("{% filter " + name + " %}" + draw(inner) + "{% endfilter %}")
    return "".join(parts)


templates = st.one_of(expressions().map(lambda e: "{{ " + e + " }}"), bodies())


_OBSERVED: list[tuple[float, int, str]] = []


@pytest.fixture(autouse=True)
def _short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "MAX_RENDER_SECONDS", DEADLINE)


@settings(
    max_examples=int(os.environ.get("TEMPLATE_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(source=templates)
def test_every_render_is_bounded_in_time_and_memory(source: str) -> None:
    tracemalloc.start()
    start = time.thread_time()
    try:
        template = CompiledTemplate(source)
        template.render(SCOPE)
        outcome = "value"
    except RENDER_FAILURES as exc:
        outcome = type(exc).__name__
    finally:
        elapsed = time.thread_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    event(outcome)
    _OBSERVED.append((elapsed, peak, source))
    assert elapsed < DEADLINE + MARGIN, (source, elapsed)
    assert peak < CEILING, (source, peak)
