"""Differential property test: the fast path against Jinja, on generated expressions.

The fast path (connector/templating/fastpath.py) is a second evaluator of a subset of
Jinja. It must agree with the sandboxed Jinja evaluation everywhere: on every generated
expression of that subset (filters with and without arguments, tests, literals,
comparisons, boolean operators, conditionals, ``~``, attribute and item access) over
generated scopes (None, bytes, ranges, nested dicts and lists, numbers of every kind,
NaN and infinities and huge integers included, texts), both give the same result, or
both fail with the same type of error. Where the fast path defers (``Fallback``) the
render is Jinja's by definition, so only the cases it evaluates itself are compared.
"""

from __future__ import annotations

import copy
import math
import os
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from connector.core.values import Values
from connector.templating.fastpath import Fallback
from connector.templating.templates import CompiledTemplate, environment

_ENV = environment()
FILTERS = sorted(name for name in _ENV.filters if not name.startswith("_"))
TESTS = sorted(name for name in _ENV.tests if name.isidentifier())
KEYS = ["a", "b", "items", "keys", "name", "x"]
NAMES = ["p", "q", "n", "missing"]

# -- scopes ------------------------------------------------------------------------------

numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**200, -(2**200)])
    | st.builds(pow, st.just(10), st.sampled_from([4400, 5000]))  # past str()'s digit limit
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 1e308])
)
texts = st.text(alphabet="ab-_ xX1%'\"\\é\t", max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | numbers
    | texts
    | st.binary(max_size=6)
    | st.builds(range, st.integers(-3, 3), st.integers(-3, 6))
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS), children, max_size=3).map(Values)
    ),
    max_leaves=10,
)
scopes = st.fixed_dictionaries({"p": values, "q": values, "n": numbers})

# -- expressions -------------------------------------------------------------------------


def _literal_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


constants = (
    st.integers(-3, 20).map(str)
    | st.sampled_from(["0.5", "-1.5", "1e400", "10000000000000000000000", "none", "true"])
    | st.sampled_from(["false", "'-'", "'a'", "''", "'ab-'", "'x y'", "'upper'", "'odd'"])
    | texts.map(_literal_text)
)
arguments = (
    st.integers(-3, 20).map(str)
    | st.sampled_from(["none", "true", "false", "'-'", "'a'", "','", "'upper'", "'odd'"])
    | st.sampled_from(["'a'", "'name'", "2", "16", "'ceil'", "p", "q.a", "n"])
)
keywords = st.sampled_from(
    ["base=16", "reverse=true", "attribute='a'", "case_sensitive=true", "default=1", "d=','"]
)


def _reference(draw: Any) -> str:
    node = draw(st.sampled_from(NAMES[:3] + NAMES))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["attr", "item", "index"]))
        key = draw(st.sampled_from(KEYS))
        if kind == "attr":
            node = f"{node}.{key}"
        elif kind == "item":
            node = f"{node}[{_literal_text(key)}]"
        else:
            node = f"{node}[{draw(st.integers(-2, 3))}]"
    return node


@st.composite
def expressions(draw: Any, depth: int = 0) -> str:
    if depth >= 3:
        return _reference(draw) if draw(st.booleans()) else draw(constants)
    kind = draw(
        st.sampled_from(
            [
                *("ref", "const", "filter", "filter", "filter", "test", "compare"),
                *("bool", "not", "cond", "concat", "list", "dict", "tuple"),
            ]
        )
    )
    inner = expressions(depth + 1)
    if kind == "ref":
        return _reference(draw)
    if kind == "const":
        return draw(constants)
    if kind == "filter":
        name = draw(st.sampled_from(FILTERS))
        args = draw(st.lists(arguments, max_size=2))
        kwargs = draw(st.lists(keywords, max_size=1))
        call = name if not (args or kwargs) else f"{name}({', '.join(args + kwargs)})"
        return f"({draw(inner)}) | {call}"
    if kind == "test":
        name = draw(st.sampled_from(TESTS))
        negate = draw(st.sampled_from(["is", "is not"]))
        arg = draw(st.sampled_from(["", "(2)", "('a')", "(p)", "(none)"]))
        return f"({draw(inner)}) {negate} {name}{arg}"
    if kind == "compare":
        ops = draw(
            st.lists(
                st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]),
                min_size=1,
                max_size=2,
            )
        )
        parts = [f"({draw(inner)})"]
        for op in ops:
            parts += [op, f"({draw(inner)})"]
        return " ".join(parts)
    if kind == "bool":
        op = draw(st.sampled_from(["and", "or"]))
        return f"({draw(inner)}) {op} ({draw(inner)})"
    if kind == "not":
        return f"not ({draw(inner)})"
    if kind == "cond":
        return f"({draw(inner)}) if ({draw(inner)}) else ({draw(inner)})"
    if kind == "concat":
        return f"({draw(inner)}) ~ ({draw(inner)})"
    if kind == "list":
        return "[" + ", ".join(draw(st.lists(inner, max_size=3))) + "]"
    if kind == "dict":
        items = draw(st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=3))
        return "{" + ", ".join(f"{_literal_text(k)}: {v}" for k, v in items) + "}"
    return (
        "(" + "".join(f"{item}, " for item in draw(st.lists(inner, min_size=1, max_size=2))) + ")"
    )


# -- comparing ---------------------------------------------------------------------------


def _same(left: Any, right: Any) -> bool:
    """Equal values of the same types all the way down (NaN equal to NaN)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple):
        return len(left) == len(right) and all(map(_same, left, right))
    return bool(left == right)


def _outcome(render: Any, scope: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", render(scope)
    except Fallback:
        raise
    except Exception as exc:  # the error's type is what both paths must share
        return "error", type(exc)


@settings(
    max_examples=int(os.environ.get("FASTPATH_EXAMPLES", "600")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(source=expressions(), scope=scopes)
def test_fast_path_agrees_with_jinja(source: str, scope: dict[str, Any]) -> None:
    try:
        template = CompiledTemplate("{{ " + source + " }}")
    except Exception:  # refused at compile time: no fast path to compare
        event("refused at compile time")
        return
    fast = template._fast
    if fast is None:
        event("outside the fast path's subset")
        return
    try:
        got = _outcome(fast, scope)
    except Fallback:
        event("deferred to Jinja at run time")
        return
    event(f"fast path: {got[0]}")
    expected = _outcome(template.render_jinja, scope)
    assert got[0] == expected[0], (source, got, expected)
    if got[0] == "error":
        assert got[1] is expected[1], (source, got, expected)
    else:
        assert _same(got[1], expected[1]), (source, got, expected)


def test_most_generated_expressions_take_the_fast_path() -> None:
    """The comparison above is worth something only if the fast path evaluates a good
    share of what is generated (it gives up on the rest)."""
    taken: list[bool] = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(source=expressions())
    def collect(source: str) -> None:
        try:
            template = CompiledTemplate("{{ " + source + " }}")
        except Exception:  # refused at compile time: not counted
            return
        taken.append(template._fast is not None)

    collect()
    assert sum(taken) > 0.5 * len(taken)


# -- reading a scope name's keys -----------------------------------------------------------


class _Holder(Mapping[str, Any]):
    """A mapping that is no dict: the fast path leaves its reads to Jinja."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class _Fields(Values):
    """Values of a subclass: not the engine's own type."""


_HELD = st.dictionaries(
    st.sampled_from(KEYS),
    scalars
    | st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2).map(Values)
    | st.dictionaries(st.sampled_from(KEYS), scalars, max_size=2),
    max_size=4,
)
#: Every kind of value a scope name may hold, each over the same keys, as how to make
#: it (a defaultdict grows when read: each evaluation is given one of its own). The
#: engine's Values, the usual case, most often.
_MAPPINGS = st.tuples(
    st.sampled_from(
        [
            *(Values, Values, Values, dict, _Fields),
            *(MappingProxyType, OrderedDict, lambda data: defaultdict(int, data), _Holder),
        ]
    ),
    _HELD,
)
holders = st.one_of(
    _MAPPINGS,
    _MAPPINGS,
    _MAPPINGS,
    st.tuples(st.just(copy.copy), scalars | st.lists(scalars, max_size=2)),
)


@st.composite
def _reads(draw: Any) -> str:
    """Reads of scope names' keys (``p.a``, ``p['items']``, ``q.x.a``), several in one
    expression: the names' holders are tested once for all of their reads."""
    reads = []
    for _ in range(draw(st.integers(1, 3))):
        node = draw(st.sampled_from(["p", "q"] * 6 + ["n", "missing"]))
        for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
            key = draw(st.sampled_from(KEYS))
            node = f"{node}.{key}" if draw(st.booleans()) else f"{node}[{_literal_text(key)}]"
        reads.append(node)
    joiner = draw(st.sampled_from([" or ", " or ", " and ", " ~ ", ", "]))
    joined = joiner.join(reads)
    return f"[{joined}]" if joiner == ", " else joined


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=_reads(), p=holders, q=holders)
def test_reading_scope_names_agrees_with_jinja(source: str, p: Any, q: Any) -> None:
    """A scope name whose keys are read (``parameters.event``) is tested once for the
    engine's Values, its ``get`` bound for all of its reads: over every kind of holder
    (Values, a Values subclass, dicts, dicts with ``__missing__``, mappings that are no
    dict, scalars, lists), names the scope lacks, and keys that are dict attributes, the
    fast path gives Jinja's result or Jinja's error."""

    def scope() -> dict[str, Any]:
        return {"p": p[0](copy.deepcopy(p[1])), "q": q[0](copy.deepcopy(q[1])), "n": 1}

    template = CompiledTemplate("{{ " + source + " }}")
    fast = template._fast
    assert fast is not None, source
    try:
        got = _outcome(fast, scope())
    except Fallback:
        event("deferred to Jinja at run time")
        return
    event(f"fast path: {got[0]}")
    expected = _outcome(template.render_jinja, scope())
    assert got[0] == expected[0], (source, scope(), got, expected)
    if got[0] == "error":
        assert got[1] is expected[1], (source, scope(), got, expected)
    else:
        assert _same(got[1], expected[1]), (source, scope(), got, expected)
