"""Template functions in the manner of Make's IML: dates, hashes, encodings, lists.

Builders and integrators know Make's functions (``formatDate(now; "YYYY-MM-DD")``,
``sha256(text; "hex"; key)``); here they are Jinja filters with the same names and
the same date format tokens (Moment.js's, as Make uses them): ``{{ now |
formatDate("YYYY-MM-DD", "Europe/Paris") }}``. Each is pure, refuses results over the
sandbox's output limit, and has an example in docs/manifests.md ("Functions") that a
test renders.

Dates are read as the engine reads them everywhere (ISO 8601, epoch seconds or
milliseconds; see :func:`connector.core.types.parse_datetime`) or with an explicit
format (``parseDate``). Where a function returns a date it returns ISO 8601 text in UTC
with milliseconds, what the rest of the engine writes.

The filters are registered into the sandbox by ``sandbox.py`` (:data:`FUNCTIONS`); an
app's own filters (``code.filters``) through :func:`register_filter`.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac as _hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connector.core.types import format_datetime, parse_datetime

__all__ = ["FUNCTIONS", "format_date", "parse_date", "register_filter"]

#: Largest text or list a function may return (the sandbox's MAX_OUTPUT).
_MAX_OUTPUT = 1_000_000

_MONTHS = list(calendar.month_name)[1:]
_DAYS = list(calendar.day_name)  # Monday first, as datetime.weekday()
# Longest tokens first, so "MMMM" is not read as "MM" twice.
_TOKENS = re.compile(
    r"\[[^\]]*\]|YYYY|YY|MMMM|MMM|MM|M|DDDD|DD|Do|D|dddd|ddd|HH|H|hh|h|mm|m|ss|s|SSS|A|a|ZZ|Z|X|x"
)


def _zone(name: Any) -> tzinfo:
    text = str(name or "UTC")
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {text!r}, expected an IANA name such as Europe/Paris"
        ) from None


def _offset(moment: datetime, colon: bool) -> str:
    delta = moment.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _format_token(token: str, m: datetime) -> str:
    if token.startswith("["):
        return token[1:-1]
    hour12 = m.hour % 12 or 12
    table: dict[str, Callable[[], str]] = {
        "YYYY": lambda: f"{m.year:04d}",
        "YY": lambda: f"{m.year % 100:02d}",
        "MMMM": lambda: _MONTHS[m.month - 1],
        "MMM": lambda: _MONTHS[m.month - 1][:3],
        "MM": lambda: f"{m.month:02d}",
        "M": lambda: str(m.month),
        "DDDD": lambda: f"{m.timetuple().tm_yday:03d}",
        "DD": lambda: f"{m.day:02d}",
        "Do": lambda: _ordinal(m.day),
        "D": lambda: str(m.day),
        "dddd": lambda: _DAYS[m.weekday()],
        "ddd": lambda: _DAYS[m.weekday()][:3],
        "HH": lambda: f"{m.hour:02d}",
        "H": lambda: str(m.hour),
        "hh": lambda: f"{hour12:02d}",
        "h": lambda: str(hour12),
        "mm": lambda: f"{m.minute:02d}",
        "m": lambda: str(m.minute),
        "ss": lambda: f"{m.second:02d}",
        "s": lambda: str(m.second),
        "SSS": lambda: f"{m.microsecond // 1000:03d}",
        "A": lambda: "AM" if m.hour < 12 else "PM",
        "a": lambda: "am" if m.hour < 12 else "pm",
        "Z": lambda: _offset(m, True),
        "ZZ": lambda: _offset(m, False),
        "X": lambda: str(int(m.timestamp())),
        "x": lambda: str(int(m.timestamp() * 1000)),
    }
    return table[token]()


def format_date(value: Any, fmt: Any = "YYYY-MM-DDTHH:mm:ss.SSS[Z]", zone: Any = "UTC") -> str:
    """``formatDate(date; format; timezone)``: a date as text in a Moment.js format.

    ``{{ "2026-03-01T12:30:00Z" | formatDate("DD.MM.YYYY HH:mm", "Europe/Berlin") }}``
    is ``01.03.2026 13:30``; ``X`` is epoch seconds, ``x`` milliseconds; text in
    ``[brackets]`` is written as is.
    """
    moment = parse_datetime(value).astimezone(_zone(zone))
    text = str(fmt)
    if len(text) > 200:
        raise ValueError("a date format is at most 200 characters")
    out, end = [], 0
    for match in _TOKENS.finditer(text):
        out.append(text[end : match.start()])
        out.append(_format_token(match.group(), moment))
        end = match.end()
    out.append(text[end:])
    return "".join(out)


_PARSE_PATTERNS = {
    "YYYY": r"(?P<YYYY>\d{4})",
    "YY": r"(?P<YY>\d{2})",
    "MMMM": r"(?P<MMMM>[A-Za-z]+)",
    "MMM": r"(?P<MMM>[A-Za-z]{3})",
    "MM": r"(?P<MM>\d{2})",
    "M": r"(?P<M>\d{1,2})",
    "DD": r"(?P<DD>\d{2})",
    "D": r"(?P<D>\d{1,2})",
    "Do": r"(?P<Do>\d{1,2})(?:st|nd|rd|th)",
    "HH": r"(?P<HH>\d{2})",
    "H": r"(?P<H>\d{1,2})",
    "hh": r"(?P<hh>\d{2})",
    "h": r"(?P<h>\d{1,2})",
    "mm": r"(?P<mm>\d{2})",
    "m": r"(?P<m>\d{1,2})",
    "ss": r"(?P<ss>\d{2})",
    "s": r"(?P<s>\d{1,2})",
    "SSS": r"(?P<SSS>\d{1,6})",
    "A": r"(?P<A>AM|PM|am|pm)",
    "a": r"(?P<a>AM|PM|am|pm)",
    "Z": r"(?P<Z>Z|[+-]\d{2}:?\d{2})",
    "ZZ": r"(?P<ZZ>Z|[+-]\d{2}:?\d{2})",
    "X": r"(?P<X>-?\d+(?:\.\d+)?)",
    "x": r"(?P<x>-?\d+)",
    "dddd": r"[A-Za-z]+",
    "ddd": r"[A-Za-z]{3}",
    "DDDD": r"(?P<DDDD>\d{3})",
}


@lru_cache(maxsize=256)
def _parser(fmt: str) -> re.Pattern[str]:
    parts, end = [], 0
    for match in _TOKENS.finditer(fmt):
        parts.append(re.escape(fmt[end : match.start()]))
        token = match.group()
        parts.append(re.escape(token[1:-1]) if token.startswith("[") else _PARSE_PATTERNS[token])
        end = match.end()
    parts.append(re.escape(fmt[end:]))
    try:
        return re.compile("".join(parts))
    except re.error:
        raise ValueError(f"date format {fmt!r} repeats a token") from None


def _month(name: str) -> int:
    for i, month in enumerate(_MONTHS, start=1):
        if month.lower().startswith(name.lower()) and len(name) >= 3:
            return i
    raise ValueError(f"unknown month {name!r}")


def parse_date(value: Any, fmt: Any = None, zone: Any = "UTC") -> str:
    """``parseDate(text; format; timezone)``: text in a Moment.js format as a date
    (ISO 8601 in UTC). Without a format, ISO 8601 or epoch as everywhere else; a
    text without an offset is read in ``timezone``.

    ``{{ "20260301123000" | parseDate("YYYYMMDDHHmmss") }}`` is
    ``2026-03-01T12:30:00.000Z``.
    """
    if fmt is None:
        return format_datetime(parse_datetime(value))
    text, pattern = str(value).strip(), str(fmt)
    if len(pattern) > 200:
        raise ValueError("a date format is at most 200 characters")
    match = _parser(pattern).fullmatch(text)
    if match is None:
        raise ValueError(f"date {text[:60]!r} does not match the format {pattern!r}")
    g = {k: v for k, v in match.groupdict().items() if v is not None}
    if "X" in g:
        return format_datetime(datetime.fromtimestamp(float(g["X"]), tz=UTC))
    if "x" in g:
        return format_datetime(datetime.fromtimestamp(int(g["x"]) / 1000, tz=UTC))
    year = int(g["YYYY"]) if "YYYY" in g else 2000 + int(g["YY"]) if "YY" in g else 1970
    if "MMMM" in g or "MMM" in g:
        month = _month(g.get("MMMM") or g["MMM"])
    else:
        month = int(g.get("MM") or g.get("M") or 1)
    day = int(g.get("DD") or g.get("D") or g.get("Do") or 1)
    hour = int(g.get("HH") or g.get("H") or g.get("hh") or g.get("h") or 0)
    meridiem = (g.get("A") or g.get("a") or "").lower()
    if meridiem == "pm" and hour < 12:
        hour += 12
    elif meridiem == "am" and hour == 12:
        hour = 0
    micro = int((g.get("SSS") or "0").ljust(6, "0")[:6])
    moment = datetime(year, month, day, hour, int(g.get("mm") or g.get("m") or 0))
    moment = moment.replace(second=int(g.get("ss") or g.get("s") or 0), microsecond=micro)
    if "DDDD" in g:
        moment = moment.replace(month=1, day=1) + timedelta(days=int(g["DDDD"]) - 1)
    offset = g.get("Z") or g.get("ZZ")
    if offset:
        aware = datetime.fromisoformat(moment.isoformat() + ("+00:00" if offset == "Z" else offset))
    else:
        aware = moment.replace(tzinfo=_zone(zone))
    return format_datetime(aware)


def _add(unit: str) -> Callable[[Any, Any], str]:
    def add(value: Any, amount: Any) -> str:
        moment = parse_datetime(value)
        n = float(amount)
        if unit == "months" or unit == "years":
            months = int(n) * (12 if unit == "years" else 1)
            total = moment.year * 12 + moment.month - 1 + months
            year, month = divmod(total, 12)
            day = min(moment.day, calendar.monthrange(year, month + 1)[1])
            return format_datetime(moment.replace(year=year, month=month + 1, day=day))
        return format_datetime(moment + timedelta(**{unit: n}))

    add.__doc__ = f"``add{unit.capitalize()}(date; n)``: the date plus n {unit} (n may be < 0)."
    return add


def _epoch(value: Any) -> int:
    """``{{ date | epoch }}``: epoch seconds (``formatDate(date; "X")`` as a number)."""
    return int(parse_datetime(value).timestamp())


def _epoch_ms(value: Any) -> int:
    """``{{ date | epochMs }}``: epoch milliseconds."""
    return round(parse_datetime(value).timestamp() * 1000)


def _from_epoch(value: Any, unit: Any = "s") -> str:
    """``{{ 1772368200 | fromEpoch }}`` (``"ms"`` for milliseconds): ISO 8601 UTC."""
    number = float(value)
    seconds = number / 1000 if str(unit) == "ms" else number
    return format_datetime(datetime.fromtimestamp(seconds, tz=UTC))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _encode_digest(digest: bytes, encoding: Any) -> str:
    kind = str(encoding or "hex")
    if kind == "hex":
        return digest.hex()
    if kind == "base64":
        return base64.b64encode(digest).decode("ascii")
    if kind == "base64url":
        return base64.urlsafe_b64encode(digest).decode("ascii")
    raise ValueError(f"unknown encoding {kind!r}, expected one of: hex, base64, base64url")


def _hash(name: str) -> Callable[..., str]:
    def digest(value: Any, encoding: Any = "hex", key: Any = None) -> str:
        data = _bytes(value)
        if key is not None:
            mac = _hmac.new(_bytes(key), data, getattr(hashlib, name)).digest()
            return _encode_digest(mac, encoding)
        return _encode_digest(hashlib.new(name, data).digest(), encoding)

    digest.__doc__ = f"``{name}(text; encoding; key)``: {name} of the text, HMAC with a key."
    return digest


def _hmac_filter(value: Any, key: Any, algorithm: Any = "sha256", encoding: Any = "hex") -> str:
    """``{{ body | hmac(secret, "sha1", "base64") }}``: an HMAC (sha1, sha256, sha512)."""
    name = str(algorithm).lower().replace("-", "")
    if name not in ("sha1", "sha256", "sha512", "md5"):
        raise ValueError(f"unknown algorithm {algorithm!r}, expected one of: sha1, sha256, sha512")
    mac = _hmac.new(_bytes(key), _bytes(value), getattr(hashlib, name)).digest()
    return _encode_digest(mac, encoding)


def _base64_decode(value: Any) -> str:
    """``{{ "aGk=" | base64decode }}``: the text a base64 value holds (UTF-8)."""
    text = str(value).strip()
    data = base64.b64decode(
        text + "=" * (-len(text) % 4), altchars=b"-_" if "-" in text or "_" in text else None
    )
    return data.decode("utf-8")


def _base64url(value: Any) -> str:
    """``{{ text | base64url }}``: URL-safe base64 without padding (JWT style)."""
    return base64.urlsafe_b64encode(_bytes(value)).decode("ascii").rstrip("=")


def _encode_url(value: Any) -> str:
    """``encodeURL``: percent-encodes everything but letters, digits and ``-_.~``
    (JavaScript's encodeURIComponent, as Make's)."""
    return quote(str(value), safe="-_.~!*'()")


def _decode_url(value: Any) -> str:
    """``decodeURL``: the inverse of encodeURL."""
    return unquote(str(value))


def _check_size(items: list[Any]) -> list[Any]:
    if len(items) > _MAX_OUTPUT:
        raise OverflowError(f"result would exceed {_MAX_OUTPUT} items")
    return items


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping | str):
        return [value]
    return list(value)


def _flatten(value: Any, depth: Any = 1) -> list[Any]:
    """``flatten(array; depth)``: nested lists opened ``depth`` levels."""
    out: list[Any] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list | tuple) and level > 0:
                walk(list(item), level - 1)
            else:
                out.append(item)
            if len(out) > _MAX_OUTPUT:
                raise OverflowError(f"result would exceed {_MAX_OUTPUT} items")

    walk(_as_list(value), int(depth))
    return out


def _distinct(value: Any, key: Any = None) -> list[Any]:
    """``distinct(array; key)``: items without repeats (by ``key`` for objects), first kept."""
    seen: list[Any] = []
    out: list[Any] = []
    for item in _as_list(value):
        mark = item.get(key) if key is not None and isinstance(item, Mapping) else item
        if mark in seen:
            continue
        seen.append(mark)
        out.append(item)
    return out


def _pluck(value: Any, key: Any) -> list[Any]:
    """``map(array; key)`` in Make: each object's ``key`` (missing ones skipped)."""
    parts = str(key).split(".")
    out = []
    for item in _as_list(value):
        for part in parts:
            item = item.get(part) if isinstance(item, Mapping) else None
        if item is not None:
            out.append(item)
    return out


def _keys(value: Any) -> list[Any]:
    """``keys(object)``: the object's keys."""
    if not isinstance(value, Mapping):
        raise TypeError("keys expects an object")
    return list(value)


def _contains(value: Any, needle: Any) -> bool:
    """``contains(array or text; value)``."""
    if isinstance(value, str):
        return str(needle) in value
    return needle in _as_list(value)


def _slice(value: Any, start: Any, end: Any = None) -> list[Any]:
    """``slice(array; start; end)``: items from ``start`` to before ``end``."""
    return _as_list(value)[int(start) : None if end is None else int(end)]


def _remove(value: Any, *values: Any) -> list[Any]:
    """``remove(array; value1; ...)``: the array without those values."""
    return [item for item in _as_list(value) if item not in values]


def _add_items(value: Any, *values: Any) -> list[Any]:
    """``add(array; value1; ...)``: the array with the values appended."""
    return _check_size([*_as_list(value), *values])


def _to_array(value: Any) -> list[dict[str, Any]]:
    """``toArray(object)``: ``[{"key", "value"}, ...]`` (a keyvalue field's shape)."""
    if not isinstance(value, Mapping):
        raise TypeError("toArray expects an object")
    return [{"key": k, "value": v} for k, v in value.items()]


def _to_collection(value: Any, key: Any = "key", val: Any = "value") -> dict[str, Any]:
    """``toCollection(array; key; value)``: an object from a list of key/value objects."""
    out: dict[str, Any] = {}
    for item in _as_list(value):
        if isinstance(item, Mapping) and key in item:
            out[str(item[key])] = item.get(val)
    return out


def _chunk(value: Any, size: Any) -> list[list[Any]]:
    """``chunk(array; size)``: the array in lists of ``size`` items."""
    n = int(size)
    if n < 1:
        raise ValueError("chunk size must be at least 1")
    items = _as_list(value)
    return [items[i : i + n] for i in range(0, len(items), n)]


#: Make-style functions, by filter name.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "formatDate": format_date,
    "parseDate": parse_date,
    "addSeconds": _add("seconds"),
    "addMinutes": _add("minutes"),
    "addHours": _add("hours"),
    "addDays": _add("days"),
    "addMonths": _add("months"),
    "addYears": _add("years"),
    "epoch": _epoch,
    "epochMs": _epoch_ms,
    "fromEpoch": _from_epoch,
    "md5": _hash("md5"),
    "sha1": _hash("sha1"),
    "sha256": _hash("sha256"),
    "sha512": _hash("sha512"),
    "hmac": _hmac_filter,
    "base64decode": _base64_decode,
    "base64url": _base64url,
    "encodeURL": _encode_url,
    "decodeURL": _decode_url,
    "flatten": _flatten,
    "distinct": _distinct,
    "pluck": _pluck,
    "keys": _keys,
    "contains": _contains,
    "slice": _slice,
    "remove": _remove,
    "add": _add_items,
    "toArray": _to_array,
    "toCollection": _to_collection,
    "chunk": _chunk,
}


def register_filter(name: str, function: Callable[..., Any]) -> None:
    """Add an app's filter to the sandbox (``code.filters``). A name the engine already
    uses is refused; the same app loaded again replaces its own."""
    from connector.templating.sandbox import EXTRA_FILTERS, environment, guard_filter

    env = environment()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"filter name {name!r} must be letters, digits and '_'")
    existing = env.filters.get(name)
    if existing is not None and getattr(existing, "_connector_app_filter", None) is None:
        raise ValueError(f"filter {name!r} is the engine's own")

    def app_filter(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    app_filter._connector_app_filter = name  # type: ignore[attr-defined]
    # Bounded as the engine's own filters are (sandbox.guard_filter): its cost charged
    # to the render's budget, its result size-checked, its failures template faults.
    env.filters[name] = guard_filter(name, app_filter)
    EXTRA_FILTERS[name] = app_filter
