"""One semantics for the literal size guard: ``sized`` counts a usual literal (texts,
numbers, None, and lists or dicts of those one level down) inline, without the walk of
``_weight``; both must count every literal alike, and refuse the same ones."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.templating import sandbox
from connector.templating.budget import MAX_RENDER_WORK, current, render_budget
from connector.templating.limits import MAX_OUTPUT

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=5),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=20,
)
_LITERALS = st.one_of(
    st.lists(_VALUES, max_size=5),
    st.tuples(_VALUES, _VALUES),
    st.dictionaries(st.text(max_size=5), _VALUES, max_size=5),
)


def _spent(literal: Any) -> int | str:
    """The work ``sized`` charges for ``literal`` in a render, or its refusal."""
    with render_budget():
        budget = current()
        assert budget is not None
        try:
            assert sandbox.sized(literal) is literal
        except OverflowError as exc:
            return str(exc)
        return int(MAX_RENDER_WORK - budget[1])


def _walked(literal: Any) -> int | str:
    weight = sandbox._weight(literal, {}, MAX_OUTPUT + 1)
    if weight > MAX_OUTPUT:
        return f"result would exceed {MAX_OUTPUT:,} items"
    return weight


@settings(max_examples=300, deadline=None)
@given(_LITERALS)
def test_sized_counts_a_literal_as_the_walk_does(literal: Any) -> None:
    assert _spent(literal) == _walked(literal)


@pytest.mark.parametrize(
    "literal",
    [
        ["x" * (MAX_OUTPUT - 1)],
        ["x" * MAX_OUTPUT],
        {"a": ["x" * (MAX_OUTPUT // 2), "y" * (MAX_OUTPUT // 2)]},
        [[[1] * 10] * 10],  # shared nested lists count every time they appear
        {"a": {"b": {"c": "deep"}}},
        [b"bytes", range(5)],
    ],
    ids=["at-limit", "over-limit", "over-limit-nested", "shared", "deep", "bytes-and-range"],
)
def test_sized_counts_edges_as_the_walk_does(literal: Any) -> None:
    assert _spent(literal) == _walked(literal)
