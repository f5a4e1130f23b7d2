"""Make-style template functions: every example of docs/manifests.md's Functions table
renders to the result shown there, and bad input fails as a render failure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.templating.functions import FUNCTIONS, format_date, parse_date
from connector.templating.templates import RENDER_FAILURES, compile_template

DOC = Path(__file__).resolve().parent.parent / "docs" / "manifests.md"


def _rows() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("## Functions") : text.index("## Code from modules/")]
    rows = []
    for line in table.splitlines():
        match = re.fullmatch(r"\| `(.+?)`.*? \| `(\{\{.+\}\})` \| `(.*)` \|", line)
        if match:
            rows.append((match[1], match[2].replace("\\|", "|"), match[3]))
    return rows


ROWS = _rows()


def test_every_function_has_a_documented_example() -> None:
    documented = " ".join(example for _, example, _ in ROWS)
    missing = [name for name in FUNCTIONS if not re.search(rf"\| {name}\b", documented)]
    assert missing == []


@pytest.mark.parametrize(("name", "example", "result"), ROWS, ids=[r[0] for r in ROWS])
def test_documented_example(name: str, example: str, result: str) -> None:
    rendered = compile_template("x " + example).render({})  # as text, as the doc shows
    assert rendered == "x " + result


@pytest.mark.parametrize(
    "template",
    [
        '{{ "2026-03-01" | formatDate("YYYY", "Mars/Olympus") }}',
        '{{ "not a date" | formatDate("YYYY") }}',
        '{{ "2026" | parseDate("YYYYMMDD") }}',
        '{{ "x" | hmac("k", "crc32") }}',
        '{{ "x" | sha256("base32") }}',
        "{{ 1 | keys }}",
        "{{ [1] | chunk(0) }}",
    ],
)
def test_bad_input_is_a_render_failure(template: str) -> None:
    with pytest.raises(RENDER_FAILURES):
        compile_template(template).render({})


FORMAT = "YYYY-MM-DD HH:mm:ss.SSS Z"


@given(
    st.datetimes(
        min_value=__import__("datetime").datetime(1971, 1, 1),
        max_value=__import__("datetime").datetime(2200, 1, 1),
    ),
    st.sampled_from(["UTC", "Europe/Paris", "Asia/Kolkata", "America/Los_Angeles"]),
)
def test_parse_date_reads_what_format_date_writes(moment: object, zone: str) -> None:
    iso = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"  # type: ignore[attr-defined]
    assert parse_date(format_date(iso, FORMAT, zone), FORMAT) == iso


def _unbounded_repeats(pattern: str) -> list[str]:
    """The repeats in ``pattern`` with no upper bound (``+``, ``*``, ``{n,}``)."""
    import re._constants as constants  # type: ignore[import-not-found]
    import re._parser as parser  # type: ignore[import-not-found]

    found: list[str] = []

    def walk(items: object) -> None:
        for op, arg in items:  # type: ignore[attr-defined]
            if op in (constants.MAX_REPEAT, constants.MIN_REPEAT):
                if arg[1] == constants.MAXREPEAT:
                    found.append(str(op))
                walk(arg[2])
            elif op is constants.SUBPATTERN:
                walk(arg[3])
            elif op is constants.BRANCH:
                for branch in arg[1]:
                    walk(branch)

    walk(parser.parse(pattern))
    return found


def test_parse_date_token_patterns_are_named_and_bounded() -> None:
    # Bounded by construction: each token may appear once (a named group) and matches
    # a bounded width, so how a text may split is bounded by the format alone.
    from connector.templating.functions import _PARSE_PATTERNS

    for token, pattern in _PARSE_PATTERNS.items():
        assert pattern.startswith(f"(?P<{token}>"), token
        assert _unbounded_repeats(pattern) == [], token
    assert _unbounded_repeats("[A-Za-z]+") != []  # the checker itself sees "+"


@pytest.mark.parametrize(
    ("value", "fmt", "message"),
    [
        ("a" * 51 + "1", "dddd" * 50, "repeats the token 'dddd'"),
        ("Mon Mon", "ddd ddd", "repeats the token 'ddd'"),
        ("March March", "MMMM MMMM", "repeats the token 'MMMM'"),
        ("2026 2026", "YYYY YYYY", "repeats the token 'YYYY'"),
        ("1 1000", "X x", "both X and x"),
        ("1" * 201, "X", "at most 200 characters"),
        ("Funday 01", "dddd DD", "does not match"),
    ],
)
def test_parse_date_refuses_formats_that_could_backtrack(
    value: str, fmt: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_date(value, fmt)


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("Monday, 02 March 2026", "dddd, DD MMMM YYYY", "2026-03-02T00:00:00.000Z"),
        ("mon 2 mar 2026", "ddd D MMM YYYY", "2026-03-02T00:00:00.000Z"),
        ("Mar 2nd 2026", "MMMM Do YYYY", "2026-03-02T00:00:00.000Z"),
        ("1772368200", "X", "2026-03-01T12:30:00.000Z"),
        ("1772368200000", "x", "2026-03-01T12:30:00.000Z"),
    ],
)
def test_parse_date_reads_names_and_epochs(value: str, fmt: str, expected: str) -> None:
    assert parse_date(value, fmt) == expected


def test_repeated_day_names_in_a_template_are_a_render_failure() -> None:
    value, fmt = "a" * 28 + "1", "dddd" * 27
    template = "{{ '" + value + "' | parseDate('" + fmt + "') }}"
    with pytest.raises(RENDER_FAILURES):
        compile_template(template).render({})


class _Counted:
    """An item that counts the equality comparisons made on it."""

    comparisons = 0

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        type(self).comparisons += 1
        return isinstance(other, _Counted) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


class _Unhashable(_Counted):
    __hash__ = None  # type: ignore[assignment]


def _naive_distinct(items: list[object]) -> list[object]:
    out: list[object] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, 1.0, 2.5])
    | st.text(max_size=2),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(_JSON, max_size=12), st.lists(_JSON, max_size=4))
def test_distinct_and_remove_agree_with_plain_equality(
    items: list[object], drop: list[object]
) -> None:
    # One semantics: hashing by canonical key gives what comparing with == gives.
    assert FUNCTIONS["distinct"](items) == _naive_distinct(items)
    assert FUNCTIONS["remove"](items, *drop) == [i for i in items if i not in drop]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ [1, 1.0, true, 2] | distinct | tojson }}", "[1,2]"),
        ('{{ [[1], [1], {"a": [1]}, {"a": [1.0]}] | distinct | tojson }}', '[[1],{"a":[1]}]'),
        (
            '{{ [{"id": [1]}, {"id": [1]}, {"id": 2}] | distinct("id") | tojson }}',
            '[{"id":[1]},{"id":2}]',
        ),
        ('{{ [[1], {"a": 1}, 3] | remove([1], {"a": 1.0}) | tojson }}', "[3]"),
    ],
)
def test_distinct_and_remove_compare_by_value(template: str, expected: str) -> None:
    assert compile_template(template).render({}) == expected


@pytest.mark.parametrize("name", ["distinct", "remove"])
def test_distinct_and_remove_are_linear_in_comparisons(name: str) -> None:
    # 3,000 different items: comparing each with all before it makes ~4.5 million
    # comparisons; hashing makes next to none.
    items = [_Counted(i) for i in range(3000)]
    _Counted.comparisons = 0
    args = [_Counted(-i) for i in range(1, 3000)] if name == "remove" else []
    assert len(FUNCTIONS[name](items, *args)) == 3000
    assert _Counted.comparisons <= 3000


def test_items_without_a_key_are_compared_within_a_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from connector.templating import functions

    monkeypatch.setattr(functions, "_MAX_COMPARISONS", 100)
    _Unhashable.comparisons = 0
    assert FUNCTIONS["distinct"]([_Unhashable(1), _Unhashable(1), 5]) == [_Unhashable(1), 5]
    _Unhashable.comparisons = 0
    with pytest.raises(OverflowError, match="over 100 steps"):
        FUNCTIONS["distinct"]([_Unhashable(i) for i in range(50)])
    assert _Unhashable.comparisons <= 100


@pytest.mark.parametrize(
    "zone",
    [
        "Europe",  # a directory of the zone database: IsADirectoryError
        "x" * 300,  # too long a file name: ENAMETOOLONG
        "Europe/" + "y" * 300,
        "/etc/localtime",
        "Europe/../../etc/passwd",
        "Europe/Paris/",
        "a\x00b",
        "Mars/Olympus",
    ],
)
@pytest.mark.parametrize("name", ["formatDate", "parseDate"])
def test_a_bad_time_zone_is_a_value_error_never_an_os_error(name: str, zone: str) -> None:
    args = ("2026-03-01T12:00:00", "YYYY-MM-DDTHH:mm:ss")
    with pytest.raises(ValueError, match="unknown time zone"):
        FUNCTIONS[name](*args, zone)
