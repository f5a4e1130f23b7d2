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
