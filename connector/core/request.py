"""Building the HTTP request from rendered parts, and refusing unsafe ones.

The URL a module renders is a *path* under the app's base URL. It can never change
the scheme, host or port: absolute URLs, ``//host``, ``@host``, backslashes, control
characters and dot segments are all refused, in every form a server might decode them
from: percent-encoded once or twice, overlong UTF-8 (``%c0%ae``), full-width
(U+FF0E, U+FF0F, by Unicode compatibility folding) or with ``;parameters`` (``..;``).
Header names must be HTTP tokens and values visible ASCII with inner spaces and tabs
only, so a mapped value cannot smuggle a header or fail inside the HTTP client; two
names that differ only in case are refused. The auth header belongs
to the engine: a module or builder that sets it gets a DataError, never a silent
override. All of this happens before anything is sent.
"""

from __future__ import annotations

import functools
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from connector.core.jsondata import encode, loads_strict
from connector.errors import DataError

__all__ = [
    "ALLOWED_METHODS",
    "PreparedRequest",
    "check_headers",
    "encode_body",
    "join_url",
    "largest_fields",
    "non_finite_path",
    "normalize_query",
]

ALLOWED_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Headers that route or frame the request: set by httpx from the URL and body only, so
#: a mapped value can neither redirect credentials (Host) nor smuggle a request.
_TRANSPORT_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: RFC 9110 field-value: visible characters, with spaces and tabs only between them.
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20\x09\x21-\x7e]*[\x21-\x7e])?)?")
_CONTROL = re.compile(r"[\x00-\x20\x7f\\]")


class PreparedRequest(NamedTuple):
    """A request ready to send. ``headers`` include auth: never print it unredacted.

    A NamedTuple: immutable, and built for every message, ~1 µs cheaper than a frozen
    dataclass."""

    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, Any]
    content: bytes | None
    json_body: Any
    module_id: str
    message_id: str | None = None
    timeout: float | None = None

    def __repr__(self) -> str:
        # Headers carry the auth value: a repr (logs, error trackers) never shows them.
        return (
            f"PreparedRequest(method={self.method!r}, url={self.url!r}, "
            f"module_id={self.module_id!r}, message_id={self.message_id!r})"
        )


def join_url(base: str, path: Any, field: str | None) -> str:
    """``base`` + ``path``, where ``path`` may not leave the base URL."""
    if not isinstance(path, str) or not path.strip():
        raise DataError("the URL path must be non-empty text", field=field)
    return _join_url(base, path, field)


@functools.lru_cache(maxsize=4096)
def _join_url(base: str, path: str, field: str | None) -> str:
    # Cached: a module's URL is usually a literal, and parsing twice costs ~50 µs.
    # Errors are not cached (lru_cache does not store exceptions).
    path = path.strip()
    reason = _unsafe_path_reason(path)
    if reason:
        raise DataError(
            f"URL {path!r} is not allowed: {reason}; give a path relative to the base URL, "
            "such as /v1/track",
            field=field,
        )
    if not path.startswith("/"):
        path = "/" + path
    url = base + path
    base_url, full = urlsplit(base), urlsplit(url)
    try:
        same = (full.scheme, full.hostname, full.port) == (
            base_url.scheme,
            base_url.hostname,
            base_url.port,
        )
    except ValueError:  # a port that is not a number
        same = False
    if not same:
        raise DataError(f"URL {path!r} would leave the base URL", field=field)
    return str(url)


def _unsafe_path_reason(path: str) -> str | None:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "it holds a lone surrogate, which UTF-8 cannot encode"
    decoded = unquote(unquote(path))
    raw_path = path.split("?", 1)[0]
    if "://" in raw_path or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):
        return "absolute URLs are refused"
    if path.startswith("//") or decoded.startswith("//"):
        return "'//host' would change the host"
    # The path is what comes before the *raw* '?': an encoded %3F or %23 is part of the
    # path, and its decoded form must not hide dot segments after it.
    before_query = _decoded_path(raw_path.split("#", 1)[0])
    if before_query is None:
        return (
            "its percent-encoding is not valid UTF-8 (overlong forms such as %c0%ae "
            "hide '.' and '/' from checks)"
        )
    # What servers may read the path as must be safe too: Unicode compatibility forms
    # folded (a full-width dot or solidus, U+FF0E or U+FF0F, is '.' or '/' to some).
    folded = unicodedata.normalize("NFKC", before_query)
    # Raw: nothing unencoded. Decoded path (not the query, where %20 is fine): no
    # control characters or backslashes that a server might read as a separator.
    if _CONTROL.search(path) or _CONTROL.search(before_query) or _CONTROL.search(folded):
        return "spaces, control characters and backslashes are refused"
    for form in (before_query, folded):
        if "@" in form.split("/", 2)[1 if form.startswith("/") else 0]:
            return "'@' in the first segment would read as credentials"
        # A segment's ';parameters' are dropped by some servers ('..;' is '..' to
        # Tomcat): a dot segment is judged without them.
        if any(seg.split(";", 1)[0] in (".", "..") for seg in form.split("/")):
            return "'.' and '..' segments are refused (also as '..;', encoded or full-width)"
    if "#" in path:
        return "fragments are refused"
    return None


def _decoded_path(path: str) -> str | None:
    """``path`` percent-decoded twice, strictly: None when the bytes are not valid UTF-8
    (Python's decoder refuses overlong forms, which lenient servers read as ASCII)."""
    try:
        once = unquote_to_bytes(path).decode("utf-8")
        return unquote_to_bytes(once).decode("utf-8")
    except UnicodeDecodeError:
        return None


def check_headers(
    headers: Mapping[str, Any], reserved: Mapping[str, str], field: str | None
) -> dict[str, str]:
    """Stringify and check header names/values; refuse the auth headers.

    A value must be what RFC 9110 allows and every HTTP stack reads the same way:
    visible ASCII, with spaces and tabs only between visible characters (no leading or
    trailing whitespace, no control character: neither sent raw nor left to fail in the
    HTTP client as a retryable network error). Two names that differ only in case are
    refused rather than merged: which one wins would be a silent rule of ours.
    """
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    folded_reserved = {name.lower() for name in reserved}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise DataError(f"header name {name!r} is not a valid HTTP token", field=field)
        lowered = name.lower()
        if lowered in _TRANSPORT_HEADERS or lowered.startswith("proxy-"):
            raise DataError(
                f"header {name!r} is set by the HTTP client (it routes or frames the "
                "request); remove it",
                field=field,
            )
        if name.lower() in folded_reserved:
            raise DataError(
                f"header {name!r} is set by the connection; remove it (auth is added for you)",
                field=field,
            )
        text = value if isinstance(value, str) else json.dumps(value) if value is not None else ""
        if not text.isascii():
            raise DataError(
                f"header {name!r} has non-ASCII characters; encode the value first "
                "(for example as base64 or percent-encoding)",
                field=field,
            )
        if not _FIELD_VALUE.fullmatch(text):
            raise DataError(f"header {name!r} {_value_fault(text)}", field=field)
        earlier = seen.get(lowered)
        if earlier is not None:
            raise DataError(
                f"headers {earlier!r} and {name!r} differ only in case, and HTTP header "
                "names are case-insensitive: keep one",
                field=field,
            )
        seen[lowered] = name
        out[name] = text
    return out


def _value_fault(text: str) -> str:
    """Which rule of a header value ``text`` breaks (the value itself is not quoted: it
    may be a secret)."""
    for char in text:
        if char in "\r\n\x00":
            return "has a value with CR, LF or NUL characters"
        if char != "\t" and not "\x20" <= char <= "\x7e":
            return f"has a value with the control character {char!r}"
    if not text.strip(" \t"):
        return "has a value of only spaces or tabs"
    return "has a value that begins or ends with a space or tab"


def normalize_query(query: Any, field: str | None) -> dict[str, Any]:
    if query is None:
        return {}
    if not isinstance(query, Mapping):
        raise DataError("the query string must be an object of names and values", field=field)
    out: dict[str, Any] = {}
    for key, value in query.items():
        if value is None:
            continue  # an unmapped value is absent, never the text "None"
        name = _encodable(str(key), "a query parameter's name", field)
        if isinstance(value, list):
            out[name] = [_encodable(_query_value(v), name, field) for v in value if v is not None]
        else:
            out[name] = _encodable(_query_value(value), name, field)
    return out


def _encodable(text: str, what: str, field: str | None) -> str:
    """``text``, when UTF-8 can encode it (a lone surrogate cannot: refused here, not
    as a UnicodeEncodeError inside the HTTP client)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(
            f"query parameter {what!r} is not valid text: it holds a lone surrogate"
            if what != "a query parameter's name"
            else "a query parameter's name is not valid text: it holds a lone surrogate",
            field=field,
        ) from None
    return text


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _content_type(headers: Mapping[str, str]) -> str | None:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value
    return None


def encode_body(
    body: Any, headers: dict[str, str], field: str | None
) -> tuple[bytes | None, Any, bool]:
    """The body as bytes, its parsed JSON form (for output bundles) if any, and whether
    orjson wrote the bytes from it (see :func:`connector.core.jsondata.encode`).

    Objects and lists go out as JSON; text goes out as-is, but must be valid JSON when
    the content type says JSON.
    """
    if body is None:
        return None, None, False
    if not headers and (type(body) is dict or type(body) is list):
        # The usual message: a JSON object, and no headers of the module's own.
        content, by_orjson = _json_content(body, field)
        headers["Content-Type"] = "application/json"
        return content, body, by_orjson
    content_type = _content_type(headers)
    if isinstance(body, str | bytes):
        try:
            raw = body.encode() if isinstance(body, str) else body
        except UnicodeEncodeError:
            raise DataError(
                "the body is not valid text: it holds a lone surrogate", field=field
            ) from None
        parsed: Any = None
        if content_type is None or "json" in content_type.lower():
            try:
                parsed = loads_strict(raw)
            except ValueError:
                if content_type is not None:
                    raise DataError(
                        f"the body is not valid JSON but the content type is {content_type!r}",
                        field=field,
                    ) from None
            if content_type is None and parsed is not None:
                headers["Content-Type"] = "application/json"
        return raw, parsed, False
    raw, by_orjson = _json_content(body, field)
    if content_type is None:
        headers["Content-Type"] = "application/json"
    return raw, body, by_orjson


def _json_content(body: Any, field: str | None) -> tuple[bytes, bool]:
    try:
        return encode(body)
    except RecursionError:
        raise DataError("the body is nested too deeply to send as JSON", field=field) from None
    except (ValueError, TypeError) as exc:
        where = non_finite_path(body)
        if where is not None:
            path, value = where
            raise DataError(
                f"the body cannot be sent as JSON: {path} is {value}, which JSON cannot hold",
                field=field,
            ) from None
        raise DataError(f"the body cannot be sent as JSON: {exc}", field=field) from None


def non_finite_path(value: Any) -> tuple[str, str] | None:
    """Where ``value`` first holds a NaN or an infinity, as a dotted path (``properties.x``,
    ``items[2]``; ``$`` for the value itself), and what it is; None when nowhere.
    Iterative: only called on a failure, but the value may be deep."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path or "$", "NaN" if math.isnan(item) else "an infinity"
        if isinstance(item, Mapping):
            children = [(v, f"{path}.{k}" if path else str(k)) for k, v in item.items()]
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(v, f"{path}[{i}]") for i, v in enumerate(item)]))
    return None


def largest_fields(body: Any, top: int = 3) -> list[tuple[str, int]]:
    """The biggest fields of a JSON object, in bytes; nested objects are looked into once,
    so the culprit named is ``properties.blob``, not just ``properties``."""
    sizes: list[tuple[str, int]] = []
    if isinstance(body, Mapping):
        for key, value in body.items():
            if isinstance(value, Mapping) and value:
                for sub, sub_value in value.items():
                    sizes.append((f"{key}.{sub}", _json_size(sub_value)))
            else:
                sizes.append((str(key), _json_size(value)))
    sizes.sort(key=lambda item: item[1], reverse=True)
    return sizes[:top]


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())
