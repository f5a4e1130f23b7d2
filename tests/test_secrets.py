"""The write key (and its base64 forms) never appears in anything the engine emits."""

from __future__ import annotations

import base64
import copy
import json
import logging
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connector
from connector.testing.sink import Fault, Sink
from tests.conftest import FAST_RETRY, WRITE_KEY, run_cli

FORMS = [
    WRITE_KEY,
    base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
    base64.b64encode(WRITE_KEY.encode()).decode().rstrip("="),
]


def assert_clean(text: str) -> None:
    for form in FORMS:
        assert form not in text, f"secret form {form[:6]}... leaked"


def test_bundles_dry_run_and_logs_are_clean(
    engine: connector.Engine, sink: Sink, connection: dict, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sink.inject(Fault(status=503))  # makes the transport log a retry
    outputs: list[Any] = []
    outputs.append(engine.run("segment.track", connection, {"event": "E", "userId": "u"}))
    outputs.append(engine.run("segment.identify", connection, {"userId": "u"}))
    outputs.append(
        engine.run(
            "segment.api_call",
            connection,
            {"url": "/v1/page", "method": "POST", "body": {"userId": "u"}},
        )
    )
    outputs.append(engine.dry_run("segment.track", connection, {"event": "E", "userId": "u"}))
    outputs.append(repr(engine.connection(engine.registry.get("segment.track"), connection)))
    assert_clean(repr(outputs))
    assert_clean(caplog.text)
    assert_clean(repr(sink.received()))


def test_remote_echo_of_the_key_is_redacted(registry: connector.Registry) -> None:
    """A server that echoes the Authorization header back must not leak it into bundles."""

    def echo(request: httpx.Request) -> httpx.Response:
        auth = request.headers["Authorization"]
        return httpx.Response(200, json={"echo": auth, "key": WRITE_KEY}, headers={"X-Echo": auth})

    client = httpx.Client(transport=httpx.MockTransport(echo))
    with connector.Engine(registry, client=client) as engine:
        bundles = engine.run(
            "segment.api_call", {"writeKey": WRITE_KEY}, {"url": "/v1/whatever", "method": "GET"}
        )
    assert_clean(repr(bundles))
    assert "[REDACTED]" in repr(bundles)


@pytest.mark.parametrize("status", [400, 401, 500])
def test_error_messages_are_clean(registry: connector.Registry, status: int) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status, text=f"bad key {WRITE_KEY} / {request.headers['Authorization']}"
        )

    client = httpx.Client(transport=httpx.MockTransport(echo))
    with (
        connector.Engine(registry, client=client, retry=FAST_RETRY) as engine,
        pytest.raises(connector.RunError) as info,
    ):
        engine.run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    assert_clean(str(info.value) + repr(info.value) + repr(info.value.to_dict()))
    assert "[REDACTED]" in info.value.message


def test_mapped_value_quoting_the_key_is_redacted_in_errors(engine: connector.Engine) -> None:
    with pytest.raises(connector.DataError) as info:
        engine.dry_run(
            "segment.track",
            {"writeKey": WRITE_KEY},
            {"event": "E", "userId": "u", "revenue": WRITE_KEY},
        )
    assert_clean(str(info.value))
    assert info.value.field == "revenue"


def test_module_templates_cannot_read_the_key(engine: connector.Engine) -> None:
    """Builders' mappings render over the context only: the connection is not in scope."""
    with pytest.raises(connector.DataError) as info:
        engine.dry_run(
            "segment.track",
            {"writeKey": WRITE_KEY},
            {"event": "{{ connection.writeKey }}", "userId": "u"},
        )
    assert "connection" in info.value.message
    assert_clean(str(info.value))


def test_invalid_connection_error_is_clean(engine: connector.Engine) -> None:
    with pytest.raises(connector.InvalidConfigurationError) as info:
        engine.dry_run(
            "segment.track",
            {"writeKey": WRITE_KEY, "host": f"ftp://{WRITE_KEY}"},
            {"event": "E", "userId": "u"},
        )
    assert_clean(str(info.value))
    assert_clean(json.dumps(info.value.to_dict()))


def test_a_connection_error_names_every_faulty_field(engine: connector.Engine) -> None:
    """A form shows every connection field at fault at once, as for parameters: the
    error names the first, and ``faults`` lists each with its rule, secrets redacted
    (the bad host quotes the write key)."""
    cases = [
        ({"region": "mars"}, [("writeKey", "required"), ("region", "enum")]),
        (
            {"writeKey": WRITE_KEY, "region": "mars", "host": f"ftp://{WRITE_KEY}"},
            [("region", "enum"), ("host", "format")],
        ),
    ]
    for values, expected in cases:
        with pytest.raises(connector.InvalidConfigurationError) as info:
            engine.dry_run("segment.track", values, {"event": "E", "userId": "u"})
        error = info.value.to_dict()
        assert [(f["field"], f["rule"]) for f in error["faults"]] == expected
        assert error["field"] == expected[0][0]
        assert error["message"] == error["faults"][0]["message"]
        assert all(f["message"].startswith("connection: field ") for f in error["faults"])
        assert_clean(json.dumps(error))


def test_other_run_errors_list_no_faults(engine: connector.Engine) -> None:
    """Only errors about fields carry ``faults``: the shape of the others is unchanged."""
    error = connector.RemoteRuntimeError("the remote failed", status=500).to_dict()
    assert error == {
        "type": "RuntimeError",
        "message": "the remote failed",
        "field": None,
        "status": 500,
    }


def test_inputs_are_never_mutated(engine: connector.Engine, sink: Sink, connection: dict) -> None:
    parameters = {
        "userId": "{{ hook.id }}",
        "traits": {"firstName": "Ada", "lastName": "L", "address": {"city": "X"}},
        "customTraits": [{"key": "plan", "value": "pro"}],
        "context": {"ip": "203.0.113.1"},
    }
    context = {"hook": {"id": "u-1", "nested": {"list": [1, 2, {"a": None}]}}}
    before = copy.deepcopy((connection, parameters, context))
    engine.run("segment.identify", connection, parameters, context)
    with pytest.raises(connector.DataError):
        engine.run("segment.identify", connection, {**parameters, "userId": ""}, context)
    assert (connection, parameters, context) == before


def test_log_records_are_redacted(
    engine: connector.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a log line that quotes the key (say, remote text) reaches handlers redacted."""
    engine.dry_run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    caplog.set_level(logging.DEBUG, logger="connector")
    from connector.core.logs import get_logger

    get_logger("connector.core.transport").warning("remote said: %s", WRITE_KEY)  # as engine code
    assert_clean(caplog.text)
    assert "[REDACTED]" in caplog.text


def test_reprs_of_prepared_runs_hide_the_auth_header(engine: connector.Engine) -> None:
    prepared = engine.prepare(
        "segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"}
    )
    assert_clean(repr(prepared) + repr(prepared.request) + str(prepared))


def test_bundles_never_alias_engine_state_or_input(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    props = {"nested": {"a": 1}}
    [bundle] = engine.run(
        "segment.track", connection, {"event": "E", "userId": "u", "customProperties": props}
    )
    bundle["context"]["library"]["name"] = "scribbled"
    bundle["properties"]["nested"]["a"] = 2
    [again] = engine.run("segment.track", connection, {"event": "E", "userId": "u"})
    assert again["context"]["library"]["name"] == "connector"
    assert props == {"nested": {"a": 1}}


def test_batch_bundles_never_alias_each_other_or_engine_state(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    inputs = [{"event": "E", "userId": f"u{i}"} for i in range(3)]
    first, second, third = engine.run_batch("segment.track", connection, inputs)
    assert isinstance(first, list) and isinstance(second, list) and isinstance(third, list)
    first[0]["context"]["library"]["name"] = "scribbled"
    first[0]["success"] = "scribbled"
    assert second[0]["context"]["library"]["name"] == "connector"
    assert second[0]["success"] is True
    [again] = engine.run("segment.track", connection, {"event": "E", "userId": "u"})
    assert again["context"]["library"]["name"] == "connector"


def test_batch_bundles_quoting_the_key_are_redacted(
    engine: connector.Engine, sink: Sink, connection: dict
) -> None:
    """One bundle of a batch quotes the key: it alone is redacted, the others are
    copied as they are (the batch's one-pass copy falls back item by item)."""
    inputs = [
        {"event": "E", "userId": "u1"},
        {"event": f"key is {WRITE_KEY}", "userId": "u2"},
        {"event": "E", "userId": "u3", "customProperties": {"coupon": None}},
    ]
    results = list(engine.run_batch("segment.track", connection, inputs))
    assert [type(r) for r in results] == [list, list, list]
    assert results[1][0]["event"] == "key is [REDACTED]"
    assert WRITE_KEY not in repr(results)
    assert results[0][0]["userId"] == "u1"
    assert results[2][0]["properties"] == {"coupon": None}


@pytest.mark.parametrize(
    "write_key",
    ['cl\u00e9"secret123', "tab\tsecret123\u00e9", 'cl\\\u00e9-secret"123', "plain-secret-123"],
)
def test_keys_that_json_escapes_are_redacted_single_and_batch(
    registry: connector.Registry, write_key: str
) -> None:
    """A key with non-ASCII text and a character JSON escapes is found as orjson writes
    it too (raw UTF-8, escaped quote), in single and batch bundles."""
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"success": True}))
    )
    connection = {"writeKey": write_key, "host": "http://127.0.0.1:9"}
    run = {"event": "E", "userId": "u", "customProperties": {"note": f"key {write_key}"}}
    with connector.Engine(registry, client=client) as engine:
        single = engine.run("segment.track", connection, run)
        batch = list(engine.run_batch("segment.track", connection, [run, run]))
    for bundles in (single, *batch):
        assert isinstance(bundles, list)
        assert bundles[0]["properties"]["note"] == "key [REDACTED]"
        assert write_key not in repr(bundles)


def test_a_bundle_is_the_same_whichever_copy_it_takes(registry: connector.Registry) -> None:
    """Values JSON has no type for but orjson writes (a date, a UUID) come out as the
    one-pass copy writes them, also when the bundle needs the slower walk (a secret or a
    null in it), in single and batch runs alike: never the caller's object."""
    import datetime
    import uuid

    answers = iter([b"ok", b'{"success": true}'] * 10)  # a text answer: success is null
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=next(answers)))
    )
    connection = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9"}
    odd = {"day": datetime.date(2024, 1, 2), "id": uuid.UUID(int=7)}
    runs = [
        {"event": "E", "userId": "u", "messageId": "m", "customProperties": dict(odd)},
        {"event": f"E {WRITE_KEY}", "userId": "u", "customProperties": dict(odd)},
    ]
    expected = {"day": "2024-01-02", "id": str(uuid.UUID(int=7))}
    with connector.Engine(registry, client=client) as engine:
        singles = [engine.run("segment.track", connection, r) for r in runs]
        batch = list(engine.run_batch("segment.track", connection, runs))
    for bundles in (*singles, *batch):
        assert isinstance(bundles, list)
        assert bundles[0]["properties"] == expected


def test_a_batch_answer_quoting_the_key_is_redacted_in_every_bundle(
    registry: connector.Registry,
) -> None:
    """The merged object comes from the answer, once per batch: a key in it is replaced
    in each bundle, and no bundle is made from raw bytes that would keep it."""
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"success": WRITE_KEY}))
    )
    connection = {"writeKey": WRITE_KEY, "host": "http://127.0.0.1:9"}
    runs = [{"event": f"E{i}", "userId": "u"} for i in range(40)]  # more than one chunk
    with connector.Engine(registry, client=client) as engine:
        results = list(engine.run_batch("segment.track", connection, runs))
    assert all(isinstance(r, list) and r[0]["success"] == "[REDACTED]" for r in results)
    assert [r[0]["event"] for r in results] == [f"E{i}" for i in range(40)]  # type: ignore[index]


# -- issue 10, section 4: every form, every output ---------------------------------------

#: A key with the characters JSON, URL encoding and repr each escape.
ODD_KEY = 'wk"Quote\\Back%Pct é+Sp'


def _odd_forms(key: str) -> list[str]:
    import json
    from urllib.parse import quote

    once = [key, json.dumps(key)[1:-1], json.dumps(key, ensure_ascii=False)[1:-1]]
    return once + [json.dumps(f)[1:-1] for f in once] + [quote(key, safe=""), repr(key)[1:-1]]


def _failing_engine(
    registry: connector.Registry, store: Any, status: int = 503, echo: bool = False
) -> connector.Engine:
    def answer(request: httpx.Request) -> httpx.Response:
        text = f"{request.url} {request.content.decode()}" if echo else "unavailable"
        return httpx.Response(status, text=text)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    return connector.Engine(registry, client=client, retry=FAST_RETRY, incomplete=store)


def test_a_key_with_quotes_mapped_into_data_is_not_stored_and_marks_the_row(
    registry: connector.Registry, tmp_path: Any
) -> None:
    """The body is stored as JSON text inside JSON: the key in it is escaped twice."""
    import sqlite3

    from connector.runs.incomplete import IncompleteStore

    path = tmp_path / "store.sqlite"
    store = IncompleteStore(path)
    with _failing_engine(registry, store) as engine, pytest.raises(connector.RunError):
        engine.run(
            "segment.track",
            {"writeKey": ODD_KEY},
            {
                "event": "E",
                "userId": "u",
                "messageId": "{{ k }}",
                "customProperties": {"note": "{{ k }}"},
            },
            context={"k": ODD_KEY},
        )
    (row,) = store.executions()
    assert row.request.get("redacted") is True
    store.close()
    with sqlite3.connect(path) as db:
        stored = repr(db.execute("SELECT * FROM executions").fetchall())
    shown = run_cli("incomplete", "show", row.id, "--store", str(path))
    listed = run_cli("incomplete", "list", "--store", str(path))
    assert row.id in listed.stdout
    for form in _odd_forms(ODD_KEY):
        assert form not in stored
        assert form not in shown.stdout + shown.stderr + listed.stdout + listed.stderr


def test_remote_text_is_redacted_before_it_is_cut(registry: connector.Registry) -> None:
    """A key straddling the 300-character cut must not show even in part."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text="x" * 287 + WRITE_KEY + " and more text after it")

    client = httpx.Client(transport=httpx.MockTransport(answer))
    with (
        connector.Engine(registry, client=client, retry=FAST_RETRY) as engine,
        pytest.raises(connector.DataError) as info,
    ):
        engine.run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    assert WRITE_KEY[:10] not in info.value.message
    assert "[REDACTED]" in info.value.message


def test_verbose_http_client_logs_do_not_show_a_key_in_the_query(sink: Sink) -> None:
    """`-v` turns on httpx's logger, which writes each request's URL with its query."""
    import json

    result = run_cli(
        "-v", "run", "segment.api_call", "--no-store",
        "-c", json.dumps({"writeKey": WRITE_KEY, "host": sink.url}),
        "-p", json.dumps({"url": "/v1/echo", "method": "GET", "qs": {"k": WRITE_KEY}}),
    )  # fmt: skip
    assert "HTTP Request" in result.stderr  # httpx's own logger was on
    assert_clean(result.stdout + result.stderr)


def test_a_key_in_the_url_path_shows_nowhere(registry: connector.Registry, tmp_path: Any) -> None:
    from connector.runs.incomplete import IncompleteStore

    path = tmp_path / "store.sqlite"
    store = IncompleteStore(path)
    with (
        _failing_engine(registry, store, echo=True) as engine,
        pytest.raises(connector.RunError) as info,
    ):
        engine.run(
            "segment.api_call",
            {"writeKey": WRITE_KEY},
            {"url": f"/v1/items/{WRITE_KEY}", "method": "POST", "body": {"a": 1}},
        )
    assert_clean(str(info.value) + repr(info.value.to_dict()))
    (row,) = store.executions()
    assert_clean(repr(row.to_dict()))
    store.close()
    listed = run_cli("incomplete", "list", "--store", str(path))
    assert listed.returncode == 0
    assert_clean(listed.stdout + listed.stderr)
    assert "/v1/items/[REDACTED]" in listed.stdout


def test_a_base_url_with_credentials_is_not_echoed(engine: connector.Engine) -> None:
    for host in (f"https://user:{WRITE_KEY}@api.example", "https://user:pw@api.example"):
        with pytest.raises(connector.InvalidConfigurationError) as info:
            engine.dry_run(
                "segment.track",
                {"writeKey": WRITE_KEY, "host": host},
                {"event": "E", "userId": "u"},
            )
        assert "user:" not in info.value.message
        assert_clean(info.value.message)
        assert "***@api.example" in info.value.message


@pytest.mark.parametrize("field", ["writeKey", "sharedSecret", "host"])
def test_a_connection_value_with_a_lone_surrogate_is_a_configuration_error(
    engine: connector.Engine, field: str
) -> None:
    connection = {"writeKey": WRITE_KEY, field: "wk_abc\ud800def_123"}
    with pytest.raises(connector.InvalidConfigurationError) as info:
        engine.dry_run("segment.track", connection, {"event": "E", "userId": "u"})
    assert info.value.field == field
    assert "surrogate" in info.value.message


def test_log_records_of_any_logger_get_tracebacks_redacted(
    engine: connector.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The filter rewrites a record's traceback too (an exception may quote the key)."""
    from connector.core.logs import get_logger

    engine.dry_run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    caplog.set_level(logging.DEBUG)
    try:
        raise ValueError(f"bad {WRITE_KEY}")
    except ValueError:
        get_logger("connector.test").exception("failed with %s", WRITE_KEY)
        logging.getLogger("httpx").warning("url %s", f"/x?k={WRITE_KEY}")
    assert_clean(caplog.text)
    assert caplog.text.count("[REDACTED]") >= 3


@pytest.mark.parametrize("name", ["httpx", "httpcore.connection", "httpcore.http11", "hpack.hpack"])
def test_the_http_clients_own_loggers_are_redacted(
    engine: connector.Engine, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    """A host's plain handler receives the HTTP client's records already redacted (a
    filter on a logger does not cover its children: each is named)."""
    engine.dry_run("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})
    from connector.core.logs import get_logger

    get_logger("connector.core.transport")  # as the first send does
    caplog.set_level(logging.DEBUG)
    logging.getLogger(name).debug("GET /x?k=%s %r", WRITE_KEY, {"auth": FORMS[1]})
    assert_clean(caplog.text)
    assert "[REDACTED]" in caplog.text


@pytest.mark.parametrize(
    ("anchors", "expected"),
    [
        ((), ()),
        (("abcdefghijklmnopq",), ("abcdefghijklmnopq",)),
        # A key's base64 forms with and without ':' share all but their end.
        (
            ("QmFzaWMgZDJ0ZlltVnVZMmhmPQ", "QmFzaWMgZDJ0ZlltVnVZMmhmPTo"),
            ("QmFzaWMgZDJ0ZlltVnVZMmhmP",),
        ),
        # A shared start shorter than twelve characters is not worth the false hits.
        (("abcdefghijkXX", "abcdefghijkYY"), ("abcdefghijkXX", "abcdefghijkYY")),
        # One that holds another is found by the other.
        (("0123456789", "xx0123456789yy"), ("0123456789",)),
    ],
)
def test_fewest_anchors_table(anchors: tuple[str, ...], expected: tuple[str, ...]) -> None:
    from connector.core.redaction import fewest_anchors

    assert sorted(fewest_anchors(anchors)) == sorted(expected)


@settings(max_examples=300, deadline=None)
@given(st.sets(st.text(alphabet="abcAB0123", min_size=4, max_size=30), max_size=8))
def test_fewest_anchors_find_whatever_the_anchors_find(anchors: set[str]) -> None:
    """Each given anchor holds one of the fewer anchors, so text that holds any given
    anchor holds a fewer one: the pre-check lets through all it let through before."""
    from connector.core.redaction import fewest_anchors

    fewer = fewest_anchors(anchors)
    assert len(fewer) <= len(anchors)
    for anchor in anchors:
        assert any(small in anchor for small in fewer), (anchor, fewer)
