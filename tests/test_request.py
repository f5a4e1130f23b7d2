"""Unit tests for connector.core.request: URL joining, header checks, query and body encoding."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from connector.core.request import (
    ALLOWED_METHODS,
    check_headers,
    encode_body,
    join_url,
    largest_fields,
    normalize_query,
)
from connector.errors import DataError

BASE = "https://api.example"
AUTH = {"Authorization": "Basic c2VjcmV0LXdyaXRlLWtleTo="}

# -- join_url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        pytest.param(BASE, "/v1/track", "https://api.example/v1/track", id="absolute-path"),
        pytest.param(BASE, "v1/track", "https://api.example/v1/track", id="relative-gets-slash"),
        pytest.param(BASE, "/v1/x?y=1", "https://api.example/v1/x?y=1", id="query"),
        pytest.param(
            BASE,
            "/v1/x?y=a%2Bb&z=%C3%A9",
            "https://api.example/v1/x?y=a%2Bb&z=%C3%A9",
            id="encoded-query",
        ),
        pytest.param(BASE, "  /v1/track  ", "https://api.example/v1/track", id="stripped"),
        pytest.param(BASE, "/", "https://api.example/", id="root"),
        pytest.param(
            BASE,
            "/v1/search?q=Ada%20Lovelace&n=%0A",
            "https://api.example/v1/search?q=Ada%20Lovelace&n=%0A",
            id="encoded-space-and-newline-in-query",
        ),
        pytest.param(
            BASE,
            "/v1/users/a%40b.example",
            "https://api.example/v1/users/a%40b.example",
            id="encoded-at-later-segment",
        ),
        pytest.param(
            BASE, "/v1/a.b/..c/x.", "https://api.example/v1/a.b/..c/x.", id="dots-inside-segments"
        ),
        pytest.param(
            "https://api.example/proxy/segment",
            "/v1/track",
            "https://api.example/proxy/segment/v1/track",
            id="base-path-prefix-kept",
        ),
        pytest.param(
            "http://127.0.0.1:8080",
            "v1/batch",
            "http://127.0.0.1:8080/v1/batch",
            id="base-with-port",
        ),
    ],
)
def test_join_url_allowed(base: str, path: str, expected: str) -> None:
    url = join_url(base, path, "url")
    assert url == expected
    assert isinstance(url, str)
    parsed, origin = httpx.URL(url), httpx.URL(base)
    assert (parsed.scheme, parsed.host, parsed.port) == (origin.scheme, origin.host, origin.port)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        pytest.param("https://evil.example/x", "absolute URLs are refused", id="absolute"),
        pytest.param("HTTP://evil.example/x", "absolute URLs are refused", id="absolute-upper"),
        pytest.param("javascript:x", "absolute URLs are refused", id="javascript-scheme"),
        pytest.param("mailto:a@b.example", "absolute URLs are refused", id="mailto-scheme"),
        pytest.param("//evil.example/x", "'//host' would change the host", id="scheme-relative"),
        pytest.param("/%2f%2fevil", "'//host' would change the host", id="encoded-slashes"),
        pytest.param("/%2F%2Fevil", "'//host' would change the host", id="encoded-upper"),
        pytest.param(
            "/%252f%252fevil", "'//host' would change the host", id="double-encoded-slashes"
        ),
        pytest.param(
            "@evil.example/x", "'@' in the first segment would read as credentials", id="at-host"
        ),
        pytest.param("/@evil.example/x", "'@' in the first segment", id="slash-at-host"),
        pytest.param("%40evil.example/x", "'@' in the first segment", id="encoded-at"),
        pytest.param(
            "\\\\evil", "spaces, control characters and backslashes are refused", id="backslashes"
        ),
        pytest.param("/v1\\..\\x", "backslashes", id="backslash-traversal"),
        pytest.param("/v1 /x", "spaces, control characters and backslashes", id="space"),
        pytest.param("/v1\r\nX: y", "spaces, control characters", id="crlf"),
        pytest.param("/v1\tx", "spaces, control characters", id="tab"),
        pytest.param("/v1/%0d%0aX:%20y", "spaces, control characters", id="encoded-crlf"),
        pytest.param("/v1/users/Ada%20L", "spaces, control characters", id="encoded-space-path"),
        pytest.param("/v1/%5c%5cx", "backslashes", id="encoded-backslash-path"),
        pytest.param("/v1/x\x00", "spaces, control characters", id="nul"),
        pytest.param("/v1/x\x7f", "spaces, control characters", id="del"),
        pytest.param("/v1/../x", "'.' and '..' segments are refused", id="dot-dot"),
        pytest.param("/v1/./x", "'.' and '..' segments are refused", id="dot"),
        pytest.param("/v1/..", "'.' and '..' segments are refused", id="trailing-dot-dot"),
        pytest.param("../x", "'.' and '..' segments are refused", id="leading-dot-dot"),
        pytest.param("/v1/%2e%2e/x", "'.' and '..' segments are refused", id="encoded-dot-dot"),
        pytest.param("/v1/%2E%2E/x", "'.' and '..' segments", id="encoded-dot-dot-upper"),
        pytest.param("/v1/%252e%252e/x", "'.' and '..' segments", id="double-encoded-dot-dot"),
        pytest.param("/v1/x#frag", "fragments are refused", id="fragment"),
        # Issue 10: forms some servers decode into a dot segment or a separator.
        pytest.param("/x/..;/y", "'.' and '..' segments", id="dot-dot-semicolon"),
        pytest.param("/x/..;jsessionid=1/y", "'.' and '..' segments", id="dot-dot-params"),
        pytest.param("/x/%2e%2e%3b/y", "'.' and '..' segments", id="encoded-dot-dot-semicolon"),
        pytest.param("/x/%c0%ae%c0%ae/y", "not valid UTF-8", id="overlong-dots"),
        pytest.param("/x/%C0%AE./y", "not valid UTF-8", id="overlong-dot-upper"),
        pytest.param("/x%c0%afy", "not valid UTF-8", id="overlong-slash"),
        pytest.param("/x/%e0%80%ae/y", "not valid UTF-8", id="overlong-three-bytes"),
        pytest.param("/x/%25c0%25ae/y", "not valid UTF-8", id="double-encoded-overlong"),
        pytest.param("/x/\uff0e\uff0e/y", "'.' and '..' segments", id="full-width-dots"),
        pytest.param("/x/%EF%BC%8E%EF%BC%8E/y", "'.' and '..'", id="encoded-full-width-dots"),
        pytest.param("/x\uff0f..\uff0fy", "'.' and '..' segments", id="full-width-slashes"),
        pytest.param("/x/\u2025/y", "'.' and '..' segments", id="two-dot-leader"),
        pytest.param("/x\uff3c..", "backslashes", id="full-width-backslash"),
        pytest.param("/\uff20evil.example", "'@' in the first segment", id="full-width-at"),
        pytest.param("/x/\ud800", "lone surrogate", id="lone-surrogate"),
    ],
)
def test_join_url_refused(path: str, reason: str) -> None:
    with pytest.raises(DataError) as info:
        join_url(BASE, path, "url")
    exc = info.value
    assert exc.field == "url"
    assert exc.message.startswith(f"URL {path.strip()!r} is not allowed: ")
    assert reason in exc.message
    assert exc.message.endswith("give a path relative to the base URL, such as /v1/track")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("\n", id="newline-only"),
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
        pytest.param(["/v1/track"], id="list"),
        pytest.param({"path": "/v1"}, id="dict"),
        pytest.param(b"/v1/track", id="bytes"),
    ],
)
def test_join_url_needs_non_empty_text(path: Any) -> None:
    with pytest.raises(DataError) as info:
        join_url(BASE, path, "parameters.url")
    assert info.value.field == "parameters.url"
    assert info.value.message == "the URL path must be non-empty text"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/v1/x?next=https://app.example/done", id="url-in-query-value"),
        pytest.param("/v1/x?next=ftp://files.example/", id="other-url-in-query-value"),
    ],
)
def test_join_url_allows_a_url_in_the_query(path: str) -> None:
    assert join_url(BASE, path, "url") == BASE + path


def test_join_url_field_may_be_none() -> None:
    with pytest.raises(DataError) as info:
        join_url(BASE, "https://evil.example/", None)
    assert info.value.field is None


def test_join_url_is_stable_across_calls() -> None:
    assert join_url(BASE, "/v1/track", "a") == join_url(BASE, "/v1/track", "b")
    for field in ("first", "second"):
        with pytest.raises(DataError) as info:
            join_url(BASE, "//evil.example", field)
        assert info.value.field == field


# -- check_headers -------------------------------------------------------------------------------


def test_check_headers_stringifies_values() -> None:
    out = check_headers(
        {
            "X-Text": "a b",
            "X-Int": 5,
            "X-Float": 1.5,
            "X-True": True,
            "X-None": None,
            "X-Obj": {"a": 1},
            "X-List": [1, "b"],
            "Content-Type": "application/json",
        },
        AUTH,
        "headers",
    )
    assert out == {
        "X-Text": "a b",
        "X-Int": "5",
        "X-Float": "1.5",
        "X-True": "true",
        "X-None": "",
        "X-Obj": '{"a": 1}',
        "X-List": '[1, "b"]',
        "Content-Type": "application/json",
    }
    assert all(isinstance(v, str) for v in out.values())


@pytest.mark.parametrize(
    "name",
    ["X-Request-Id", "x_custom", "Accept", "X-A.B", "!#$%&'*+-.^_`|~09AZaz"],
)
def test_check_headers_accepts_token_names(name: str) -> None:
    assert check_headers({name: "v"}, AUTH, "headers") == {name: "v"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("Bad Header", id="space"),
        pytest.param("X:Y", id="colon"),
        pytest.param("", id="empty"),
        pytest.param("X-A\r\nX-B", id="crlf"),
        pytest.param("X(A)", id="parens"),
        pytest.param("X/A", id="slash"),
        pytest.param("Ünïcode", id="non-ascii"),
        pytest.param(5, id="non-str"),
    ],
)
def test_check_headers_refuses_non_token_names(name: Any) -> None:
    with pytest.raises(DataError) as info:
        check_headers({name: "v"}, AUTH, "headers")
    assert info.value.field == "headers"
    assert info.value.message == f"header name {name!r} is not a valid HTTP token"


def test_check_headers_refuses_a_name_with_a_trailing_newline() -> None:
    with pytest.raises(DataError) as info:
        check_headers({"X-A\n": "v"}, AUTH, "headers")
    assert info.value.field == "headers"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        pytest.param("a\x0bb", "has a value with the control character '\\x0b'", id="vt"),
        pytest.param("a\x0cb", "has a value with the control character '\\x0c'", id="ff"),
        pytest.param("a\x01", "has a value with the control character '\\x01'", id="soh"),
        pytest.param("a\x7fb", "has a value with the control character '\\x7f'", id="del"),
        pytest.param("\t", "has a value of only spaces or tabs", id="lone-tab"),
        pytest.param("  ", "has a value of only spaces or tabs", id="spaces"),
        pytest.param(
            " a", "has a value that begins or ends with a space or tab", id="leading-space"
        ),
        pytest.param(
            "\ta", "has a value that begins or ends with a space or tab", id="leading-tab"
        ),
        pytest.param(
            "a ", "has a value that begins or ends with a space or tab", id="trailing-space"
        ),
    ],
)
def test_check_headers_refuses_what_http_does_not_allow(value: str, rule: str) -> None:
    """Issue 10: refused up front as bad input, never sent raw nor left to fail in the
    HTTP client as a retryable network error. The value is not quoted (it may be a
    secret); the header is named."""
    with pytest.raises(DataError) as info:
        check_headers({"X-A": value}, AUTH, "headers")
    assert info.value.field == "headers"
    assert info.value.message == f"header 'X-A' {rule}"


@pytest.mark.parametrize("value", ["", "a b", "a\tb", "!~", 'say "hi"'])
def test_check_headers_allows_inner_spaces_and_tabs(value: str) -> None:
    assert check_headers({"X-A": value}, AUTH, "headers") == {"X-A": value}


def test_check_headers_refuses_names_that_differ_only_in_case() -> None:
    """Issue 10: both were sent. Refused, not merged: which one won would be a silent
    rule of ours (docs/reliability.md)."""
    with pytest.raises(DataError) as info:
        check_headers({"content-type": "a/b", "X-A": "1", "Content-Type": "c/d"}, AUTH, "h")
    assert info.value.field == "h"
    assert info.value.message == (
        "headers 'content-type' and 'Content-Type' differ only in case, and HTTP header "
        "names are case-insensitive: keep one"
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("a\r\nX-Evil: 1", id="crlf-injection"),
        pytest.param("a\nb", id="lf"),
        pytest.param("a\rb", id="cr"),
        pytest.param("a\x00b", id="nul"),
        pytest.param(["a\nb"], id="lf-inside-json-is-escaped-so-ok"),
    ],
)
def test_check_headers_refuses_cr_lf_nul_values(value: Any) -> None:
    if isinstance(value, list):
        # json.dumps escapes the newline, so a structured value cannot smuggle one.
        assert check_headers({"X-A": value}, AUTH, "headers") == {"X-A": '["a\\nb"]'}
        return
    with pytest.raises(DataError) as info:
        check_headers({"X-A": value}, AUTH, "headers")
    assert info.value.field == "headers"
    assert info.value.message == "header 'X-A' has a value with CR, LF or NUL characters"


@pytest.mark.parametrize(
    "name", ["Authorization", "authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"]
)
def test_check_headers_refuses_the_auth_header(name: str) -> None:
    with pytest.raises(DataError) as info:
        check_headers({"X-Ok": "1", name: "Bearer mine"}, AUTH, "headers")
    exc = info.value
    assert exc.field == "headers"
    assert exc.message == (
        f"header {name!r} is set by the connection; remove it (auth is added for you)"
    )
    assert AUTH["Authorization"] not in exc.message
    assert "Bearer mine" not in exc.message


def test_check_headers_reserved_names_come_from_the_connection() -> None:
    assert check_headers({"Authorization": "x"}, {}, None) == {"Authorization": "x"}
    with pytest.raises(DataError):
        check_headers({"x-api-key": "mine"}, {"X-API-Key": "secret"}, None)


def test_check_headers_values_are_sendable() -> None:
    try:
        out = check_headers({"X-Name": "José"}, AUTH, "headers")
    except DataError as exc:
        assert exc.field == "headers"
        return
    httpx.Request("POST", "https://api.example/v1/track", headers=out)


# -- normalize_query ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(None, {}, id="none"),
        pytest.param({}, {}, id="empty"),
        pytest.param({"a": "x"}, {"a": "x"}, id="text"),
        pytest.param({"a": 1, "b": 1.5}, {"a": "1", "b": "1.5"}, id="numbers"),
        pytest.param({"t": True, "f": False}, {"t": "true", "f": "false"}, id="booleans"),
        pytest.param({"o": {"x": 1}}, {"o": '{"x": 1}'}, id="object-as-json"),
        pytest.param(
            {"l": [1, True, "a", {"b": 2}]},
            {"l": ["1", "true", "a", '{"b": 2}']},
            id="list-repeats",
        ),
        pytest.param({"n": [["a"]]}, {"n": ['["a"]']}, id="nested-list"),
        pytest.param({1: "a"}, {"1": "a"}, id="non-text-key"),
    ],
)
def test_normalize_query(query: Any, expected: dict[str, Any]) -> None:
    assert normalize_query(query, "qs") == expected


@pytest.mark.parametrize("query", ["a=1", ["a", "1"], 5])
def test_normalize_query_needs_an_object(query: Any) -> None:
    with pytest.raises(DataError) as info:
        normalize_query(query, "qs")
    assert info.value.field == "qs"
    assert info.value.message == "the query string must be an object of names and values"


@pytest.mark.parametrize(
    "query",
    [pytest.param({"a": None}, id="value"), pytest.param({"a": [1, None]}, id="list-item")],
)
def test_normalize_query_does_not_send_python_none(query: dict[str, Any]) -> None:
    out = normalize_query(query, "qs")
    flat = [v for value in out.values() for v in (value if isinstance(value, list) else [value])]
    assert "None" not in flat


# -- encode_body ---------------------------------------------------------------------------------


def test_encode_body_none_is_no_body() -> None:
    headers: dict[str, str] = {}
    assert encode_body(None, headers, "body") == (None, None, False)
    assert headers == {}


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        pytest.param({"a": 1, "b": [1, 2], "c": None}, b'{"a":1,"b":[1,2],"c":null}', id="object"),
        pytest.param([1, "é"], '[1,"é"]'.encode(), id="list-utf8"),
        pytest.param({"nested": {"x": True}}, b'{"nested":{"x":true}}', id="nested"),
        pytest.param(0, b"0", id="number"),
    ],
)
def test_encode_body_structured_is_compact_json(body: Any, raw: bytes) -> None:
    headers: dict[str, str] = {}
    content, parsed, _ = encode_body(body, headers, "body")
    assert content == raw
    assert parsed is body
    assert headers == {"Content-Type": "application/json"}


def test_encode_body_keeps_an_existing_content_type() -> None:
    headers = {"content-type": "application/vnd.api+json"}
    content, _, _ = encode_body({"a": 1}, headers, "body")
    assert content == b'{"a":1}'
    assert headers == {"content-type": "application/vnd.api+json"}


@pytest.mark.parametrize(
    ("body", "headers_in", "parsed", "headers_out"),
    [
        pytest.param(
            '{"a": 1}', {}, {"a": 1}, {"Content-Type": "application/json"}, id="json-text-no-type"
        ),
        pytest.param(
            '{"a": 1}',
            {"Content-Type": "application/json"},
            {"a": 1},
            {"Content-Type": "application/json"},
            id="json-text-json-type",
        ),
        pytest.param(b"[1, 2]", {}, [1, 2], {"Content-Type": "application/json"}, id="json-bytes"),
        pytest.param("hello", {}, None, {}, id="plain-text-no-type"),
        pytest.param(
            "not json {",
            {"Content-Type": "text/plain"},
            None,
            {"Content-Type": "text/plain"},
            id="text-plain-passes-raw",
        ),
        pytest.param(
            "a=1&b=2",
            {"Content-Type": "application/x-www-form-urlencoded"},
            None,
            {"Content-Type": "application/x-www-form-urlencoded"},
            id="form",
        ),
    ],
)
def test_encode_body_text_passes_as_is(
    body: str | bytes, headers_in: dict[str, str], parsed: Any, headers_out: dict[str, str]
) -> None:
    headers = dict(headers_in)
    content, parsed_out, _ = encode_body(body, headers, "body")
    assert content == (body.encode() if isinstance(body, str) else body)
    assert parsed_out == parsed
    assert headers == headers_out


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param("not json {", "application/json", id="json-type"),
        pytest.param("{'single': 'quotes'}", "application/json; charset=utf-8", id="charset"),
        pytest.param("", "application/vnd.segment+json", id="empty-vendor-json"),
        pytest.param(b"\xff\xfe{", "application/json", id="bad-bytes"),
    ],
)
def test_encode_body_invalid_json_text_with_json_type(body: str | bytes, content_type: str) -> None:
    with pytest.raises(DataError) as info:
        encode_body(body, {"Content-Type": content_type}, "body")
    assert info.value.field == "body"
    assert info.value.message == (
        f"the body is not valid JSON but the content type is {content_type!r}"
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param({"price": math.nan}, "price is NaN, which JSON cannot hold", id="nan"),
        pytest.param({"n": [math.inf]}, "n[0] is an infinity", id="inf-in-list"),
        pytest.param({"s": {1, 2}}, "not JSON serializable", id="set"),
        pytest.param({"g": iter([1])}, "not JSON serializable", id="iterator"),
    ],
)
def test_encode_body_refuses_non_json(body: Any, detail: str) -> None:
    headers: dict[str, str] = {}
    with pytest.raises(DataError) as info:
        encode_body(body, headers, "body")
    assert info.value.field == "body"
    assert info.value.message.startswith("the body cannot be sent as JSON: ")
    assert detail in info.value.message
    assert headers == {}


@pytest.mark.parametrize(
    "body",
    [pytest.param('{"a": NaN}', id="nan"), pytest.param("[Infinity]", id="infinity")],
)
def test_encode_body_text_with_nan_is_not_json(body: str) -> None:
    with pytest.raises(DataError):
        encode_body(body, {"Content-Type": "application/json"}, "body")


# -- largest_fields --------------------------------------------------------------------------------


def test_largest_fields_names_nested_culprits_first() -> None:
    body = {
        "type": "track",
        "event": "Order Completed",
        "properties": {"blob": "x" * 1000, "small": 1},
        "context": {},
    }
    assert largest_fields(body) == [
        ("properties.blob", 1002),
        ("event", len(json.dumps("Order Completed"))),
        ("type", 7),
    ]


def test_largest_fields_top_and_sizes_in_utf8_bytes() -> None:
    body = {"a": "é" * 10, "b": {"c": [1, 2, 3]}, "d": None, "e": {}}
    assert largest_fields(body, top=5) == [
        ("a", 22),
        ("b.c", 7),
        ("d", 4),
        ("e", 2),
    ]
    assert largest_fields(body, top=1) == [("a", 22)]


def test_largest_fields_looks_only_one_level_down() -> None:
    body = {"properties": {"deep": {"blob": "x" * 100}}}
    assert largest_fields(body) == [("properties.deep", len('{"blob":""}') + 100)]


@pytest.mark.parametrize("body", [None, "text", [1, 2], 5])
def test_largest_fields_of_a_non_object_is_empty(body: Any) -> None:
    assert largest_fields(body) == []


def test_allowed_methods() -> None:
    assert frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}) == (
        ALLOWED_METHODS
    )


def test_literal_request_heads_are_reused_but_never_shared() -> None:
    """A module whose method, URL, headers and query are literal is checked once per
    connection; every prepared run still gets its own headers and query to keep."""
    import connector

    engine = connector.Engine(connector.load())
    connection = {"writeKey": "wk_0123456789abcdef", "host": "http://127.0.0.1:9"}
    track = {"event": "E", "userId": "u"}
    first = engine.prepare("segment.track", connection, track)
    first.request.headers["X-Scribbled"] = "yes"
    first.request.query["scribbled"] = "yes"
    second = engine.prepare("segment.track", connection, track)
    assert second.request.url == first.request.url == "http://127.0.0.1:9/v1/track"
    assert "X-Scribbled" not in second.request.headers
    assert second.request.query == {}
    assert second.request.headers["Content-Type"] == "application/json"
    assert engine.registry.get("segment.track").static_head
    # A templated URL (the API call's) is rendered and checked on every run.
    api_call = engine.registry.get("segment.api_call")
    assert not api_call.static_head
    with pytest.raises(DataError, match=r"would leave the base URL|not allowed"):
        engine.prepare("segment.api_call", connection, {"url": "//evil.example/v1/track"})
    ok = engine.prepare("segment.api_call", connection, {"url": "/v1/settings"})
    assert ok.request.url == "http://127.0.0.1:9/v1/settings"


@pytest.mark.parametrize(
    ("value", "by_stdlib"),
    [
        ({"a": 1, "b": "x", "c": [1.5, True]}, False),
        ({"a": None}, True),  # null: the standard library rechecks (orjson writes NaN so)
        ({"a": 2**64 + 1}, True),  # over 64 bits: orjson refuses it
    ],
)
def test_encode_says_what_the_standard_library_wrote(value: Any, by_stdlib: bool) -> None:
    """``encode``'s flag says orjson wrote it, and then orjson reads it back as equal."""
    import orjson

    from connector.core.jsondata import dumps, encode

    out, by_orjson = encode(value)
    assert type(out) is bytes and by_orjson is not by_stdlib and out == dumps(value)
    if not by_stdlib:
        assert orjson.loads(out) == value
    assert json.loads(out) == json.loads(json.dumps(value))


def test_prepared_content_is_plain_bytes_for_hosts() -> None:
    """A message the standard library wrote (it holds a null) reaches hosts as plain
    bytes, which orjson reads (it refuses subclasses)."""
    import orjson

    import connector

    with connector.Engine(connector.load()) as engine:
        prepared = engine.prepare(
            "segment.track",
            {"writeKey": "wk_0123456789", "host": "http://127.0.0.1:9"},
            {"event": "E", "userId": "u", "customProperties": {"gone": None}},
        )
    content = prepared.request.content
    assert type(content) is bytes
    assert orjson.loads(content)["properties"] == {"gone": None}


@pytest.mark.parametrize(
    "value",
    [
        {"nullable": 1},
        {"a": "annulled"},
        {"a": "null"},
        {"a": ["x", {"b": "\u006eull"}]},
        {"a": None},
        {"a": math.nan},
    ],
)
def test_json_orjson_wrote_never_holds_null(value: Any) -> None:
    """What batch runs rely on (connector.runs.batch_items): only the standard library
    writes JSON with "null" anywhere in it, and encode says so (or refuses it)."""
    from connector.core.jsondata import encode

    try:
        out, by_orjson = encode(value)
    except ValueError:
        assert value == {"a": math.nan} or math.isnan(value["a"])  # NaN: refused
        return
    assert b"null" in out  # every value here writes "null" somewhere
    assert not by_orjson


def test_dumps_writes_number_keys_as_text_and_refuses_other_keys() -> None:
    from connector.core.jsondata import dumps

    assert dumps({1: "a", 2.5: "b", None: "c"}) == b'{"1":"a","2.5":"b","null":"c"}'
    with pytest.raises(TypeError):
        dumps({(1, 2): "x"})
    with pytest.raises(ValueError):
        dumps({"a": math.inf})


# -- issue 10: refused before anything is sent or stored ---------------------------------


@pytest.mark.parametrize(
    ("parameters", "field", "rule"),
    [
        pytest.param({"headers": {"X-A": "a\x0bb"}}, "headers", "control character", id="vt"),
        pytest.param({"headers": {"X-A": " a"}}, "headers", "begins or ends", id="lead-space"),
        pytest.param({"headers": {"X-A": "\t"}}, "headers", "only spaces or tabs", id="tab"),
        pytest.param(
            {"headers": {"accept": "a/b", "Accept": "c/d"}}, "headers", "differ only in case",
            id="case-twins",
        ),
        pytest.param({"qs": {"a": "b\ud800"}}, "qs", "lone surrogate", id="query-surrogate"),
        pytest.param({"qs": {"a\udc00": "b"}}, "qs", "lone surrogate", id="query-name"),
        pytest.param({"body": "x\ud800"}, "body", "lone surrogate", id="body-text-surrogate"),
        pytest.param({"url": "/x/..;/y"}, "url", "'.' and '..'", id="dot-dot-semicolon"),
        pytest.param({"url": "/x/%c0%ae%c0%ae/y"}, "url", "not valid UTF-8", id="overlong"),
    ],
)  # fmt: skip
def test_unsafe_api_calls_are_data_errors_and_nothing_is_sent_or_stored(
    registry: Any, tmp_path: Any, parameters: dict[str, Any], field: str, rule: str
) -> None:
    import connector
    from connector.runs.incomplete import IncompleteStore

    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={})

    store = IncompleteStore(tmp_path / "store.sqlite")
    client = httpx.Client(transport=httpx.MockTransport(answer))
    with (
        connector.Engine(registry, client=client, incomplete=store) as engine,
        pytest.raises(DataError) as info,
    ):
        engine.run(
            "segment.api_call",
            {"writeKey": "wk_test_1234567"},
            {"url": "/v1/x", "method": "POST", **parameters},
        )
    assert info.value.field == field
    assert rule in info.value.message
    assert sent == []
    assert len(store) == 0
    store.close()


@pytest.mark.parametrize(
    ("line", "field", "path"),
    [
        pytest.param(
            '"customProperties": {"x": NaN}', "customProperties", "properties.x", id="prop"
        ),
        pytest.param('"context": {"ip": Infinity}', "context", "context.ip", id="context"),
        pytest.param(
            '"integrations": {"A": -Infinity}', "integrations", "integrations.A", id="int"
        ),
        pytest.param(
            '"customProperties": {"x": [1, {"y": NaN}]}', "customProperties", "properties.x[1].y",
            id="deep",
        ),
    ],
)  # fmt: skip
def test_a_nan_in_a_batch_line_is_reported_against_its_field(
    tmp_path: Any, line: str, field: str, path: str
) -> None:
    """Issue 10: the error named the body's first parameter ('event'), not the one that
    held the NaN. The neighbouring lines are still sent."""
    from connector.testing.sink import Sink
    from tests.conftest import run_cli

    lines = tmp_path / "events.jsonl"
    good = '{"event": "E", "userId": "u"}'
    lines.write_text(f'{good}\n{{"event": "E", "userId": "u", {line}}}\n{good}\n')
    with Sink() as sink:
        result = run_cli(
            "run", "segment.track", "--no-store", "--batch", str(lines),
            "-c", json.dumps({"writeKey": "wk_test_1234567", "host": sink.url}),
        )  # fmt: skip
        received = sink.received()
    outputs = [json.loads(out) for out in result.stdout.splitlines()]  # stderr: the summary
    errors = [out["error"] for out in outputs if "error" in out]
    assert result.stderr == "2 sent, 1 failed (line 2), 0 kept for retry\n"
    assert len(errors) == 1, outputs
    assert errors[0]["field"] == field
    assert f"{path} is " in errors[0]["message"]
    assert sum(len(request["body"]["batch"]) for request in received) == 2
