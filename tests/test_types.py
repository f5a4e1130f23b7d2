"""Unit tests for connector.core.types: Make-style coercion, dates and named formats."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from connector.core.types import COERCERS, FORMATS, coerce_scalar, format_datetime, parse_datetime
from connector.errors import DataError

FIELD = "properties.price"


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        # text
        pytest.param("text", "abc", "abc", id="text-str"),
        pytest.param("text", "", "", id="text-empty"),
        pytest.param("text", 5, "5", id="text-int"),
        pytest.param("text", 1.5, "1.5", id="text-float"),
        pytest.param("text", True, "true", id="text-true"),
        pytest.param("text", False, "false", id="text-false"),
        # number
        pytest.param("number", "19.99", 19.99, id="number-decimal-text"),
        pytest.param("number", "3", 3, id="number-int-text-is-int"),
        pytest.param("number", " 7 ", 7, id="number-padded"),
        pytest.param("number", "-0.5", -0.5, id="number-negative"),
        pytest.param("number", ".5", 0.5, id="number-leading-dot"),
        pytest.param("number", "3.0", 3.0, id="number-point-zero-stays-float"),
        pytest.param("number", "1e3", 1000, id="number-exponent"),
        pytest.param("number", "+2", 2, id="number-plus-sign"),
        pytest.param("number", 3, 3, id="number-int"),
        pytest.param("number", 2.5, 2.5, id="number-float"),
        # integer
        pytest.param("integer", "3", 3, id="integer-text"),
        pytest.param("integer", "-4", -4, id="integer-negative"),
        pytest.param("integer", "3.0", 3, id="integer-point-zero"),
        pytest.param("integer", 3.0, 3, id="integer-whole-float"),
        pytest.param("integer", 12, 12, id="integer-int"),
        pytest.param("integer", "1e3", 1000, id="integer-exponent"),
        # boolean
        pytest.param("boolean", True, True, id="bool-true"),
        pytest.param("boolean", False, False, id="bool-false"),
        pytest.param("boolean", "true", True, id="bool-text-true"),
        pytest.param("boolean", "TRUE", True, id="bool-text-upper"),
        pytest.param("boolean", " yes ", True, id="bool-yes-padded"),
        pytest.param("boolean", "on", True, id="bool-on"),
        pytest.param("boolean", "1", True, id="bool-text-1"),
        pytest.param("boolean", "false", False, id="bool-text-false"),
        pytest.param("boolean", "no", False, id="bool-no"),
        pytest.param("boolean", "Off", False, id="bool-off"),
        pytest.param("boolean", "0", False, id="bool-text-0"),
        pytest.param("boolean", 1, True, id="bool-int-1"),
        pytest.param("boolean", 0, False, id="bool-int-0"),
        # email / url
        pytest.param("email", "ada@example.com", "ada@example.com", id="email"),
        pytest.param("email", "  ada@example.com ", "ada@example.com", id="email-stripped"),
        pytest.param("url", "https://example.com/a?b=1", "https://example.com/a?b=1", id="url"),
        pytest.param("url", " http://example.com ", "http://example.com", id="url-stripped"),
        # any
        pytest.param("any", {"a": [1]}, {"a": [1]}, id="any-object"),
        pytest.param("any", [1, "x"], [1, "x"], id="any-list"),
        pytest.param("any", None, None, id="any-none"),
        pytest.param("any", "text", "text", id="any-text"),
    ],
)
def test_coercion(type_name: str, value: Any, expected: Any) -> None:
    result = coerce_scalar(type_name, value, FIELD)
    assert result == expected
    assert type(result) is type(expected)


def test_any_returns_the_same_object() -> None:
    value = {"a": 1}
    assert coerce_scalar("any", value, FIELD) is value


@pytest.mark.parametrize(
    ("type_name", "value", "rule"),
    [
        pytest.param("text", {"a": 1}, "must be text, got dict", id="text-dict"),
        pytest.param("text", [1], "must be text, got list", id="text-list"),
        pytest.param("text", None, "must be text, got NoneType", id="text-none"),
        pytest.param("number", "abc", "must be a number, got 'abc'", id="number-word"),
        pytest.param("number", True, "must be a number, got a boolean", id="number-true"),
        pytest.param("number", False, "must be a number, got a boolean", id="number-false"),
        pytest.param("number", "", "must be a number", id="number-empty"),
        pytest.param("number", "1,5", "must be a number", id="number-comma"),
        pytest.param("number", "0x10", "must be a number", id="number-hex"),
        pytest.param("number", "nan", "must be a number", id="number-nan-text"),
        pytest.param("number", "inf", "must be a number", id="number-inf-text"),
        pytest.param("number", "-Infinity", "must be a number", id="number-infinity-text"),
        pytest.param("number", "1e400", "must be a number", id="number-overflowing-text"),
        pytest.param("number", math.nan, "must be a finite number", id="number-nan"),
        pytest.param("number", math.inf, "must be a finite number", id="number-inf"),
        pytest.param("number", -math.inf, "must be a finite number", id="number-minus-inf"),
        pytest.param("number", None, "must be a number", id="number-none"),
        pytest.param("number", [1], "must be a number", id="number-list"),
        pytest.param("integer", "3.5", "must be a whole number, got '3.5'", id="integer-fraction"),
        pytest.param("integer", 3.5, "must be a whole number, got 3.5", id="integer-float"),
        pytest.param("integer", True, "must be a number, got a boolean", id="integer-bool"),
        pytest.param("integer", "x", "must be a number, got 'x'", id="integer-word"),
        pytest.param("integer", math.inf, "must be a finite number", id="integer-inf"),
        pytest.param("boolean", 2, "must be a boolean (true/false), got 2", id="bool-2"),
        pytest.param("boolean", "maybe", "must be a boolean", id="bool-word"),
        pytest.param("boolean", "", "must be a boolean", id="bool-empty"),
        pytest.param("boolean", 1.0, "must be a boolean", id="bool-float"),
        pytest.param("boolean", None, "must be a boolean", id="bool-none"),
        pytest.param("email", "ada", "must be an email address, got 'ada'", id="email-no-at"),
        pytest.param("email", "ada@example", "must be an email address", id="email-no-dot"),
        pytest.param("email", "a b@example.com", "must be an email address", id="email-space"),
        pytest.param("email", "a@@example.com", "must be an email address", id="email-two-ats"),
        pytest.param("email", 5, "must be an email address", id="email-number"),
        pytest.param("url", "example.com", "must be an absolute http(s) URL", id="url-no-scheme"),
        pytest.param("url", "ftp://example.com", "must be an absolute http(s) URL", id="url-ftp"),
        pytest.param("url", "http://", "must be an absolute http(s) URL", id="url-no-host"),
        pytest.param(
            "url", "javascript:alert(1)", "must be an absolute http(s) URL", id="url-javascript"
        ),
        pytest.param("url", "/relative", "must be an absolute http(s) URL", id="url-relative"),
    ],
)
def test_coercion_errors_name_the_field_and_rule(type_name: str, value: Any, rule: str) -> None:
    with pytest.raises(DataError) as info:
        coerce_scalar(type_name, value, FIELD)
    exc = info.value
    assert exc.field == FIELD
    assert exc.type == "DataError"
    assert f"field {FIELD!r}" in exc.message
    assert rule in exc.message
    # The rule, for forms: a value of the wrong kind breaks "type"; text that is not a
    # date, an email address or a URL breaks "format" (as describe's JSON Schema says).
    expected_rule = "format" if type_name in ("date", "email", "url") else "type"
    assert exc.rule == expected_rule
    fault = {"field": FIELD, "rule": expected_rule, "message": exc.message}
    assert exc.to_dict() == {
        "type": "DataError",
        "message": exc.message,
        "field": FIELD,
        "faults": [fault],
    }


def test_long_bad_values_are_shortened_in_messages() -> None:
    with pytest.raises(DataError) as info:
        coerce_scalar("number", "x" * 500, "n")
    # repr is cut to 57 characters (the quote and 56 x) plus "...".
    assert info.value.message == "field 'n' must be a number, got '" + "x" * 56 + "..."


def test_unknown_type_is_a_key_error_listing_types() -> None:
    with pytest.raises(KeyError, match="unknown parameter type 'money', expected one of: text"):
        coerce_scalar("money", 1, "f")


def test_registry_has_one_coercer_per_scalar_type() -> None:
    assert set(COERCERS) == {"text", "number", "integer", "boolean", "date", "email", "url", "any"}


@pytest.mark.parametrize(
    ("type_name", "text", "expected"),
    [
        pytest.param("integer", "9007199254740993", 9007199254740993, id="integer-2**53+1"),
        pytest.param(
            "integer", "12345678901234567890", 12345678901234567890, id="integer-20-digits"
        ),
        pytest.param("number", "9007199254740993", 9007199254740993, id="number-2**53+1"),
    ],
)
def test_big_integer_text_keeps_every_digit(type_name: str, text: str, expected: int) -> None:
    assert coerce_scalar(type_name, text, "orderId") == expected


# -- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026-01-02T03:04:05+02:00", "2026-01-02T01:04:05.000Z", id="iso-offset"),
        pytest.param("2026-01-02T03:04:05-05:30", "2026-01-02T08:34:05.000Z", id="iso-neg-offset"),
        pytest.param("2026-01-02T03:04:05", "2026-01-02T03:04:05.000Z", id="iso-naive-is-utc"),
        pytest.param("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000Z", id="iso-z"),
        pytest.param("2026-01-02T03:04:05.123456z", "2026-01-02T03:04:05.123Z", id="iso-lower-z"),
        pytest.param("2026-01-02T03:04:05.9999Z", "2026-01-02T03:04:05.999Z", id="iso-truncates"),
        pytest.param("2026-01-02", "2026-01-02T00:00:00.000Z", id="iso-date-only"),
        pytest.param(" 2026-01-02T03:04:05Z ", "2026-01-02T03:04:05.000Z", id="iso-padded"),
        pytest.param(1764063675, "2025-11-25T09:41:15.000Z", id="epoch-seconds"),
        pytest.param(1764063675123, "2025-11-25T09:41:15.123Z", id="epoch-ms"),
        pytest.param("1764063675", "2025-11-25T09:41:15.000Z", id="epoch-seconds-text"),
        pytest.param("1764063675123", "2025-11-25T09:41:15.123Z", id="epoch-ms-text"),
        pytest.param(1764063675.5, "2025-11-25T09:41:15.500Z", id="epoch-fractional"),
        pytest.param(0, "1970-01-01T00:00:00.000Z", id="epoch-zero"),
        pytest.param(
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1))),
            "2026-01-02T02:04:05.000Z",
            id="aware-datetime",
        ),
        pytest.param(
            datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05.000Z", id="naive-datetime"
        ),
    ],
)
def test_date_coercion(value: Any, expected: str) -> None:
    assert coerce_scalar("date", value, "timestamp") == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("not a date", id="words"),
        pytest.param("", id="empty"),
        pytest.param("2026-13-01", id="month-13"),
        pytest.param("2026-02-30T00:00:00Z", id="february-30"),
        pytest.param("2026-01-02T25:00:00Z", id="hour-25"),
        pytest.param("yesterday", id="relative"),
        pytest.param(True, id="boolean"),
        pytest.param(None, id="none"),
        pytest.param([2026, 1, 2], id="list"),
        pytest.param({"year": 2026}, id="object"),
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param("nan", id="nan-text"),
        pytest.param(1e20, id="out-of-range-epoch"),
        pytest.param("9999-12-31T23:59:59-01:00", id="overflow-after-utc-shift"),
    ],
)
def test_bad_dates_are_data_errors(value: Any) -> None:
    with pytest.raises(DataError) as info:
        coerce_scalar("date", value, "traits.birthday")
    assert info.value.field == "traits.birthday"
    assert (
        "field 'traits.birthday' must be a date (ISO 8601, or epoch seconds or milliseconds)"
        in (info.value.message)
    )


def test_parse_datetime_returns_aware_datetimes() -> None:
    with_offset = parse_datetime("2026-01-02T03:04:05+02:00")
    assert with_offset.utcoffset() == timedelta(hours=2)
    assert with_offset == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    naive = parse_datetime("2026-01-02T03:04:05")
    assert naive.tzinfo is UTC
    assert parse_datetime(1764063675123) == datetime(2025, 11, 25, 9, 41, 15, 123000, tzinfo=UTC)
    assert parse_datetime(10_000_000_000) == datetime(1970, 4, 26, 17, 46, 40, tzinfo=UTC)
    assert parse_datetime(9_999_999_999) == datetime(2286, 11, 20, 17, 46, 39, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(True, "a boolean is not a date", id="bool"),
        pytest.param(math.nan, "not a finite number", id="nan"),
        pytest.param(None, "cannot read NoneType as a date", id="none"),
        pytest.param("soon", "Invalid isoformat", id="text"),
    ],
)
def test_parse_datetime_errors_are_value_errors(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_datetime(value)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        pytest.param(
            datetime(2026, 1, 2, 3, 4, 5, 999999, tzinfo=UTC),
            "2026-01-02T03:04:05.999Z",
            id="truncates-microseconds",
        ),
        pytest.param(
            datetime(2026, 1, 2, 3, 4, 5, 1000, tzinfo=UTC),
            "2026-01-02T03:04:05.001Z",
            id="pads-milliseconds",
        ),
        pytest.param(
            datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
            "2025-12-31T23:00:00.000Z",
            id="converts-to-utc-across-year",
        ),
    ],
)
def test_format_datetime(moment: datetime, expected: str) -> None:
    assert format_datetime(moment) == expected


def test_format_datetime_pads_early_years() -> None:
    assert coerce_scalar("date", "0999-01-02T00:00:00Z", "d") == "0999-01-02T00:00:00.000Z"


# -- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("usd", "USD", id="lowercase"),
        pytest.param("USD", "USD", id="upper"),
        pytest.param("Eur", "EUR", id="mixed"),
        pytest.param("jpy", "JPY", id="jpy"),
        pytest.param("XYZ", None, id="unknown-code"),
        pytest.param("US", None, id="too-short"),
        pytest.param("", None, id="empty"),
        pytest.param(" usd", None, id="padded"),
        pytest.param(840, None, id="numeric-code"),
        pytest.param(None, None, id="none"),
    ],
)
def test_currency_format(value: Any, expected: str | None) -> None:
    check, description = FORMATS["currency"]
    assert check(value) == expected
    assert description == "an ISO 4217 currency code such as USD or EUR"


def test_message_ids_are_unique_version_4_uuids_across_threads_and_forks() -> None:
    import os
    import threading
    import uuid

    from connector.core.prepare import _uuid4

    ids: list[str] = []

    def draw() -> None:
        ids.extend(_uuid4() for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == len(ids) == 8000
    for text in ids:  # every position of the 256-id batches
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # A forked child must not hand out the ids its parent has not used yet.
    _uuid4()  # the pool now holds unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, _uuid4().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_id = os.read(read, 100).decode()
    os.close(read)
    assert len(child_id) == 36
    assert child_id != _uuid4()


def test_now_is_iso_8601_utc_with_milliseconds_and_keeps_up() -> None:
    import time
    from datetime import UTC, datetime

    from connector.core.types import utc_now_iso

    before = datetime.now(UTC).replace(microsecond=0)
    stamps = []
    for _ in range(50):
        stamps.append(utc_now_iso())
        time.sleep(0.001)
    after = datetime.now(UTC)
    for text in stamps:
        assert len(text) == 24 and text.endswith("Z")
        parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert before <= parsed <= after
    assert stamps == sorted(stamps)
    assert len(set(stamps)) > 25  # a new text every millisecond, not a frozen one
