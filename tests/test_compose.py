"""compose_request (the next pages', remote options' and verify requests) builds the
same checked request as a module's own first request from the same rendered parts: a
differential property test against Engine.prepare, errors included."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import connector
from connector.core.compose import compose_request
from connector.core.prepare import check_parameters
from connector.errors import RunError
from tests.conftest import write_app

CONNECTION = {"token": "tok-ABCDEFGHIJ", "ws": "blue", "host": "http://127.0.0.1:9/base"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> connector.Registry:
    parts = ("method", "url", "headers", "query", "body")
    raw = {
        "id": "diff.raw",
        "label": "Raw",
        "description": "Every part from a parameter.",
        "parameters": [{"name": p, "type": "any"} for p in parts],
        "request": {p: "{{ parameters." + p + " }}" for p in parts},
    }
    fields = [
        {"name": "token", "type": "text", "secret": True},
        {"name": "ws", "type": "text"},
        {"name": "host", "type": "url"},
    ]
    folder = write_app(
        tmp_path_factory.mktemp("apps"),
        "diff",
        {"raw.json": raw},
        baseUrl="{{ connection.host }}",
        connection={
            "fields": fields,
            "auth": {"type": "bearer", "value": "{{ connection.token }}"},
        },
        headers={"X-Ws": "{{ connection.ws }}"},
        query={"ws": "{{ connection.ws }}"},
    )
    return connector.load(folder, packaged=False)


_text = st.text(alphabet=st.characters(codec="ascii", exclude_categories=["Cs"]), max_size=8)
_parts = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "post", "PUT", "DELETE", "FETCH", ""]),
        "url": st.one_of(
            st.sampled_from(["/a", "/a/b?x=1", "a", "//evil", "/../x", "http://x/y", ""]),
            _text.map(lambda t: "/" + t),
        ),
        "headers": st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["X-A", "x-ws", "Authorization", "Bad Name", "Content-Type"]),
                st.one_of(_text, st.integers(0, 9)),
                max_size=3,
            ),
        ),
        "query": st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["q", "ws", "n"]),
                st.one_of(_text, st.none(), st.booleans()),
                max_size=3,
            ),
        ),
        "body": st.one_of(
            st.none(), st.dictionaries(st.sampled_from(["a", "b"]), _text, max_size=2), _text
        ),
    }
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=_parts)
@example(
    parts={
        "method": "post",
        "url": "/a/b?x=1",
        "headers": {"X-A": "1", "x-ws": "mine"},
        "query": {"q": "z", "ws": "mine"},
        "body": {"a": "b"},
    }
)
def test_compose_matches_a_modules_request(
    registry: connector.Registry, parts: dict[str, Any]
) -> None:
    with connector.Engine(registry) as engine:
        try:
            expected: Any = engine.prepare("diff.raw", CONNECTION, parts).request
        except RunError as exc:
            expected = exc.type
        module = registry.get("diff.raw")
        conn = engine.connection(module, CONNECTION)
        # The same rendered values: the parameters as checked (an empty text is absent).
        try:
            values = check_parameters(module, conn, parts)
        except RunError as exc:  # a mapping that is no template: no request either way
            assert expected == exc.type
            return
        try:
            got: Any = compose_request("diff.raw", conn, values)
        except RunError as exc:
            got = exc.type
    if isinstance(expected, str) or isinstance(got, str):
        assert got == expected
        return
    assert (got.method, got.url, got.headers, got.query, got.content) == (
        expected.method,
        expected.url,
        expected.headers,
        expected.query,
        expected.content,
    )


def test_the_explicit_example_builds_a_request(registry: connector.Registry) -> None:
    """Not every example is an error: this one is a request, app headers and query in."""
    with connector.Engine(registry) as engine:
        conn = engine.connection(registry.get("diff.raw"), CONNECTION)
        parts = {
            "method": "post",
            "url": "/a/b?x=1",
            "headers": {"X-A": "1"},
            "query": {"q": "z"},
            "body": {"a": "b"},
        }
        request = compose_request("diff.raw", conn, parts)
    assert (request.method, request.url) == ("POST", "http://127.0.0.1:9/base/a/b?x=1")
    assert request.headers == {
        "X-Ws": "blue",
        "X-A": "1",
        "Content-Type": "application/json",
        "Authorization": "Bearer tok-ABCDEFGHIJ",
    }
    assert request.query == {"ws": "blue", "q": "z"}
    assert request.content == b'{"a":"b"}'
