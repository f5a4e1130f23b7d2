"""Parameter types: one coercer per type, in a registry.

Coercion follows Make: a mapped value is usually text, so ``"19.99"`` for a number
field becomes ``19.99`` and ``"true"`` for a boolean becomes ``True``; a value that
cannot be read as the type is a :class:`~connector.errors.DataError` naming the field.

Dates accept ISO 8601 (with or without offset; no offset means UTC), epoch seconds and
epoch milliseconds, and always come out as ISO 8601 UTC with milliseconds
(``2026-11-25T09:41:15.123Z``), the form Segment documents.

Each coercer takes the raw value and the field path (for messages) and returns the
coerced value. Structural types (collection, array, select, keyvalue) are walked by
:mod:`connector.core.validation`, which calls back into this registry for leaves.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.core.redaction import redact_text
from connector.errors import DataError

__all__ = [
    "COERCERS",
    "FORMATS",
    "coerce_scalar",
    "format_datetime",
    "iso_seconds",
    "parse_datetime",
    "time_zone",
    "utc_now_iso",
]

Coercer = Callable[[Any, str], Any]

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_INTEGER = re.compile(r"^[-+]?\d+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
# Epoch values above this are milliseconds (year 2286 in seconds).
_EPOCH_MS_THRESHOLD = 10_000_000_000


_SECOND: tuple[int, str] = (-1, "")
_MILLISECOND: tuple[int, str] = (-1, "")


def iso_seconds(timestamp: float) -> str:
    """A Unix timestamp as ISO 8601 UTC to the second (``2024-05-01T12:00:00Z``): how the
    incomplete store and the service show when something was created or received."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def utc_now_iso() -> str:
    """Now, as :func:`format_datetime` writes it. This runs for every message, dozens of
    times a millisecond in batch runs: the text is made once a millisecond (its seconds
    part once a second). Each cache is one tuple, so threads never see half an update."""
    global _SECOND, _MILLISECOND
    now = time.time()
    millisecond = int(now * 1000)
    cached = _MILLISECOND
    if cached[0] == millisecond:
        return cached[1]
    second = millisecond // 1000
    prefix = _SECOND
    if prefix[0] != second:
        prefix = _SECOND = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    text = f"{prefix[1]}.{millisecond - second * 1000:03d}Z"
    _MILLISECOND = (millisecond, text)
    return text


def _describe(value: Any) -> str:
    # Redacted whole, then cut: a cut first could leave half a key that no longer
    # matches any of its forms.
    text = redact_text(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    raise DataError(
        f"field {field!r} must be text, got {type(value).__name__}", field=field, rule="type"
    )


def _number(value: Any, field: str) -> float | int:
    if isinstance(value, bool):
        raise DataError(
            f"field {field!r} must be a number, got a boolean", field=field, rule="type"
        )
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"field {field!r} must be a finite number", field=field, rule="type")
        return value
    if isinstance(value, str) and _NUMBER.match(value):
        text = value.strip()
        if _INTEGER.match(text):
            try:
                return int(text)  # every digit kept: float() would round past 2**53
            except ValueError:  # over Python's 4,300-digit limit for int()
                raise DataError(
                    f"field {field!r} is a number too large", field=field, rule="type"
                ) from None
        number = float(text)
        if math.isfinite(number):
            # "1e3" is a whole number written with an exponent: keep it an int.
            return int(number) if number.is_integer() and "." not in text else number
    raise DataError(
        f"field {field!r} must be a number, got {_describe(value)}", field=field, rule="type"
    )


def _integer(value: Any, field: str) -> int:
    number = _number(value, field)
    if isinstance(number, float):
        if not number.is_integer():
            raise DataError(
                f"field {field!r} must be a whole number, got {_describe(value)}",
                field=field,
                rule="type",
            )
        return int(number)
    return number


def _boolean(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise DataError(
        f"field {field!r} must be a boolean (true/false), got {_describe(value)}",
        field=field,
        rule="type",
    )


def parse_datetime(value: Any) -> datetime:
    """Read ISO 8601 text, epoch seconds or epoch milliseconds as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, bool):
        raise ValueError("a boolean is not a date")
    if isinstance(value, str) and _NUMBER.match(value):
        value = float(value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        seconds = value / 1000 if abs(value) >= _EPOCH_MS_THRESHOLD else value
        return datetime.fromtimestamp(seconds, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("z", "Z")):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"cannot read {type(value).__name__} as a date")


def format_datetime(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a ``Z``."""
    u = moment.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}."
        f"{u.microsecond // 1000:03d}Z"
    )


def _format_error(field: str, value: Any, what: str) -> DataError:
    """A value of the right kind but not of the field's format (only built on failure,
    so the coercers' happy path pays no extra call)."""
    return DataError(
        f"field {field!r} must be {what}, got {_describe(value)}", field=field, rule="format"
    )


def _date(value: Any, field: str) -> str:
    try:
        return format_datetime(parse_datetime(value))
    except (ValueError, OverflowError, OSError):
        raise _format_error(
            field, value, "a date (ISO 8601, or epoch seconds or milliseconds)"
        ) from None


def _email(value: Any, field: str) -> str:
    text = _text(value, field).strip()
    if not _EMAIL.match(text):
        raise _format_error(field, value, "an email address")
    return text


def _url(value: Any, field: str) -> str:
    text = _text(value, field).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _format_error(field, value, "an absolute http(s) URL")
    return text


def _any(value: Any, field: str) -> Any:
    return value


#: Scalar coercers by parameter type. Structural types are handled by validation.
COERCERS: dict[str, Coercer] = {
    "text": _text,
    "number": _number,
    "integer": _integer,
    "boolean": _boolean,
    "date": _date,
    "email": _email,
    "url": _url,
    "any": _any,
}


def coerce_scalar(type_name: str, value: Any, field: str) -> Any:
    try:
        coercer = COERCERS[type_name]
    except KeyError:
        raise KeyError(
            f"unknown parameter type {type_name!r}, expected one of: {', '.join(COERCERS)}"
        ) from None
    return coercer(value, field)


# ISO 4217 active codes (2024), for the 'currency' format.
_ISO_4217 = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BOV",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHE",
        "CHF",
        "CHW",
        "CLF",
        "CLP",
        "CNY",
        "COP",
        "COU",
        "CRC",
        "CUC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MXV",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SLL",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "USN",
        "UYI",
        "UYU",
        "UYW",
        "UZS",
        "VED",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XAG",
        "XAU",
        "XBA",
        "XBB",
        "XBC",
        "XBD",
        "XCD",
        "XCG",
        "XDR",
        "XOF",
        "XPD",
        "XPF",
        "XPT",
        "XSU",
        "XTS",
        "XUA",
        "XXX",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
        "ZWL",
    ]
)


def _currency(value: Any) -> str | None:
    if isinstance(value, str):
        code = value.upper()
        if code in _ISO_4217:
            return code
    return None


#: An IANA zone name's shape: ``Area/Location`` parts of letters, digits, ``_+-``.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]{1,30}(?:/[A-Za-z0-9_+-]{1,30}){0,2}")


def time_zone(name: Any) -> tzinfo:
    """The time zone an IANA name (or UTC, Z, GMT; UTC when empty) names.

    Raises ValueError for anything else. The name's shape is checked before the zone
    database is asked, and the database's own OSErrors (``Europe`` is a directory, a
    300-character name is too long for the file system) are the same ValueError: an
    unknown zone is bad input, never an unexpected fault.
    """
    text = str(name or "UTC")
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    if _ZONE_NAME.fullmatch(text):
        try:
            return ZoneInfo(text)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise ValueError(f"unknown time zone {text[:60]!r}, expected an IANA name such as Europe/Paris")


def _timezone(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        time_zone(value)
    except ValueError:
        return None
    return value


#: Named formats: each returns the normalised value, or None when the value is invalid.
FORMATS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "currency": (_currency, "an ISO 4217 currency code such as USD or EUR"),
    "timezone": (_timezone, "an IANA time zone such as Europe/Paris, or UTC"),
}
