"""Searches, pagination, errors in a 2xx body, connections (several secrets, app
headers and query, templated base URL, verify), app code (signer, filter) and remote
options: end to end against the fixture app tests/apps/fakeapi, served by a local fake
API on 127.0.0.1 (tests/fakeapi.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import connector
from connector.errors import RunError
from tests.conftest import run_cli
from tests.fakeapi import ACCOUNT, APP_DIR, PASSCODE, WORKSPACE, FakeAPI

ITEMS = [{"id": f"i{n}", "name": f"item {n}"} for n in range(1, 8)]


@pytest.fixture
def api(fake_api: FakeAPI) -> FakeAPI:
    fake_api.state.items = list(ITEMS)
    return fake_api


@pytest.fixture
def engine(fakeapi_registry: connector.Registry) -> Iterator[connector.Engine]:
    with connector.Engine(fakeapi_registry) as running:
        yield running


# -- searches and pagination ------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "limit", "ids", "pages"),
    [
        (7, 10, [f"i{n}" for n in range(1, 8)], 4),  # every page, has_more false ends it
        (7, 3, ["i1", "i2", "i3"], 2),  # the limit stops paging: page 3 is never asked for
        (7, 2, ["i1", "i2"], 1),
        (2, 10, ["i1", "i2"], 1),
        (0, 10, [], 1),
    ],
)
def test_search_pages_until_done_or_limit(
    api: FakeAPI, engine: connector.Engine, items: int, limit: int, ids: list[str], pages: int
) -> None:
    api.state.items = ITEMS[:items]
    bundles = engine.run("fakeapi.list_items", api.connection(), {"limit": limit, "q": "x"})
    assert [b["id"] for b in bundles] == ids
    sent = api.sent("/items")
    assert len(sent) == pages
    # mergeWithParent: each next page keeps the first request's query, plus the cursor.
    assert [r.query.get("next") for r in sent] == [None, *[str(2 * n) for n in range(1, pages)]]
    assert all(r.query["q"] == "x" and r.query["page_size"] == "2" for r in sent)
    if bundles:  # the item scope, the page's response and the app's filter
        assert bundles[0] == {"id": "i1", "name": "ITEM 1!", "page": 1}


def test_search_page_cap_is_an_error_not_silent_truncation(
    api: FakeAPI, engine: connector.Engine
) -> None:
    api.state.items = [{"id": f"i{n}", "name": "n"} for n in range(30)]  # 15 pages
    with pytest.raises(RunError) as info:
        engine.run("fakeapi.list_items", api.connection(), {"limit": 100})
    assert info.value.type == "RuntimeError"
    assert "more than 5 pages" in info.value.message
    assert len(api.sent("/items")) == 5


def test_search_repeated_cursor_is_refused(api: FakeAPI, engine: connector.Engine) -> None:
    api.state.repeat_cursor = True
    with pytest.raises(RunError) as info:
        engine.run("fakeapi.list_items", api.connection(), {"limit": 100})
    assert "repeat an earlier request" in info.value.message
    assert len(api.sent("/items")) == 2  # the first, the cursor "0", and no third


@pytest.mark.parametrize(("items", "pages"), [(7, 4), (4, 2), (1, 1)])
def test_search_follows_a_cursor_sent_in_a_header(
    api: FakeAPI, engine: connector.Engine, items: int, pages: int
) -> None:
    api.state.items = ITEMS[:items]
    bundles = engine.run("fakeapi.list_items_by_header", api.connection(), {})
    assert [b["id"] for b in bundles] == [item["id"] for item in ITEMS[:items]]
    sent = api.sent("/items")
    assert [r.headers.get("x-next") for r in sent] == [
        None,
        *[str(2 * n) for n in range(1, pages)],
    ]


def test_a_repeated_header_cursor_is_refused(api: FakeAPI, engine: connector.Engine) -> None:
    api.state.repeat_cursor = True
    with pytest.raises(RunError) as info:
        engine.run("fakeapi.list_items_by_header", api.connection(), {})
    assert "repeat an earlier request" in info.value.message
    # The first asks without a cursor, the second with "0", a third with "0" again is refused.
    assert [r.headers.get("x-next") for r in api.sent("/items")] == [None, "0"]


def test_search_merge_without_parent(api: FakeAPI, engine: connector.Engine) -> None:
    api.state.traits = {"user_id:u1": [{"a": 1, "b": 1}, {"b": 2}, {"c": 3}]}
    bundles = engine.run("fakeapi.get_traits", api.connection(), {"externalId": "user_id:u1"})
    assert bundles == [{"a": 1, "b": 2, "c": 3}]
    sent = api.sent("/profiles/user_id%3Au1/traits")  # encodeURL
    # Not merged with the parent: the next pages carry their own query, plus the app's.
    assert [r.query for r in sent] == [
        {"ws": WORKSPACE},
        {"ws": WORKSPACE, "next": "1"},
        {"ws": WORKSPACE, "next": "2"},
    ]


def test_search_remote_404_is_a_run_error(api: FakeAPI, engine: connector.Engine) -> None:
    with pytest.raises(RunError) as info:
        engine.run("fakeapi.get_traits", api.connection(), {"externalId": "user_id:nobody"})
    # The module's errors: a 404 here means the builder's id names no profile.
    assert (info.value.type, info.value.field, info.value.status) == (
        "DataError",
        "externalId",
        404,
    )
    assert info.value.message.startswith("no such profile: GET /profiles/")
    with pytest.raises(RunError) as info:  # the app's mapping, for a module without its own
        engine.options("fakeapi.send_message", "channel", api.connection(), {"team": "nope"})
    assert (info.value.type, info.value.field) == ("InvalidConfigurationError", None)


def test_search_bad_limit_is_a_data_error_before_sending(
    api: FakeAPI, engine: connector.Engine
) -> None:
    with pytest.raises(RunError) as info:
        engine.run("fakeapi.list_items", api.connection(), {"limit": 0})
    assert info.value.type == "DataError" and info.value.field == "limit"
    assert api.state.received == []


# -- errors inside a 2xx body -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [("Signed Up", None), ("bad", "DataError")],
)
def test_response_check_maps_errors_in_a_200_body(
    api: FakeAPI, engine: connector.Engine, name: str, error: str | None
) -> None:
    parameters = {"identity": "u1", "name": name, "when": "2026-03-01T00:00:00Z"}
    if error is None:
        bundles = engine.run("fakeapi.upload", api.connection(), parameters)
        assert bundles == [{"status": "success", "processed": 1, "unprocessed": []}]
    else:
        with pytest.raises(RunError) as info:
            engine.run("fakeapi.upload", api.connection(), parameters)
        assert info.value.type == error
        assert info.value.status == 200
        assert "bad event name" in info.value.message
    (sent,) = api.sent("/upload")
    assert sent.json() == {"d": [{"identity": "u1", "ts": 1772323200, "evtName": name}]}


# -- connections -------------------------------------------------------------------------


def test_two_secret_headers_app_headers_query_and_signer(
    api: FakeAPI, engine: connector.Engine
) -> None:
    engine.run("fakeapi.upload", api.connection(), {"identity": "u", "name": "n", "when": 0})
    (sent,) = api.sent("/upload")
    assert sent.headers["x-account-id"] == ACCOUNT
    assert sent.headers["x-passcode"] == PASSCODE
    assert sent.headers["x-workspace"] == WORKSPACE
    assert sent.query == {"ws": WORKSPACE}
    assert len(sent.headers["x-signature"]) == 64


def test_a_batch_request_carries_the_apps_headers_and_query(tmp_path: Path, api: FakeAPI) -> None:
    """The app's own headers and query go with its batch endpoint as with its single
    requests (and the signer signs it): a batch of three uploads is one request."""

    def batched(app: dict[str, Any]) -> None:
        app["batch"] = {"url": "/upload", "itemsKey": "d", "unwrap": True, "maxBytes": 4096}

    folder = _copy_app(tmp_path, batched)
    upload = json.loads((folder / "upload.json").read_text())
    (folder / "upload.json").write_text(json.dumps({**upload, "batchable": True}))
    events = [{"identity": f"u{i}", "name": "n", "when": 0} for i in range(3)]
    with connector.Engine(connector.load(folder, packaged=False)) as engine:
        results = list(engine.run_batch("fakeapi.upload", api.connection(), events))
    assert all(isinstance(result, list) for result in results), results
    (sent,) = api.sent("/upload")
    assert sent.headers["x-workspace"] == WORKSPACE
    assert sent.query == {"ws": WORKSPACE}
    assert len(sent.json()["d"]) == 3


def test_dry_run_shows_signer_and_redacts_every_secret(
    api: FakeAPI, engine: connector.Engine
) -> None:
    out = engine.dry_run(
        "fakeapi.upload", api.connection(), {"identity": "u", "name": "n", "when": 0}
    )
    assert out["signer"] == "fakeapi/sign.py:sign"
    assert out["headers"]["X-Signature"] == "[REDACTED]"
    assert out["headers"]["X-Account-Id"] == "[REDACTED]"
    assert out["headers"]["X-Passcode"] == "[REDACTED]"
    assert out["headers"]["X-Workspace"] == WORKSPACE
    assert out["url"].endswith("/upload?ws=" + WORKSPACE)
    text = json.dumps(out)
    assert ACCOUNT not in text and PASSCODE not in text
    assert api.state.received == []


@pytest.mark.parametrize(
    ("region", "base"),
    [("us1", "https://us1.api.fake.example"), ("eu1", "https://eu1.api.fake.example")],
)
def test_base_url_templated_from_the_region(
    engine: connector.Engine, region: str, base: str
) -> None:
    connection = {"accountId": ACCOUNT, "passcode": PASSCODE, "workspace": "w", "region": region}
    out = engine.dry_run("fakeapi.upload", connection, {"identity": "u", "name": "n", "when": 0})
    assert out["url"] == f"{base}/upload?ws=w"


@pytest.mark.parametrize(
    ("changes", "signature", "ok", "error"),
    [
        ({}, True, True, None),
        ({"passcode": "wrong-passcode"}, True, False, "InvalidAccessTokenError"),
        ({}, False, True, None),
    ],
)
def test_verify(
    api: FakeAPI,
    engine: connector.Engine,
    changes: dict[str, Any],
    signature: bool,
    ok: bool,
    error: str | None,
) -> None:
    api.state.check_signature = signature
    if ok:
        assert engine.verify("fakeapi", api.connection(**changes)) == {"ok": True}
        assert api.sent("/verify")[-1].headers["x-workspace"] == WORKSPACE
    else:
        with pytest.raises(RunError) as info:
            engine.verify("fakeapi", api.connection(**changes))
        assert info.value.type == error
        assert "wrong-passcode" not in info.value.message


def test_verify_check_refuses_a_200_that_says_no(tmp_path: Path, api: FakeAPI) -> None:
    app = _copy_app(tmp_path, lambda a: a["connection"]["verify"].update(request={"url": "/echo"}))
    registry = connector.load(app, packaged=False)
    with connector.Engine(registry) as engine, pytest.raises(RunError) as info:
        engine.verify("fakeapi", api.connection())
    assert info.value.type == "InvalidAccessTokenError"


def test_verify_cli(api: FakeAPI, tmp_path: Path) -> None:
    conn = tmp_path / "conn.json"
    conn.write_text(json.dumps(api.connection()))
    done = run_cli(
        "verify", "fakeapi", "-c", str(conn), "--manifests", str(APP_DIR), "--no-packaged"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True}
    conn.write_text(json.dumps(api.connection(passcode="nope-nope-nope")))
    done = run_cli(
        "verify", "fakeapi", "-c", str(conn), "--manifests", str(APP_DIR), "--no-packaged"
    )
    assert done.returncode == 1
    assert json.loads(done.stderr)["error"]["type"] == "InvalidAccessTokenError"


def _copy_app(tmp_path: Path, change: Any) -> Path:
    import shutil

    folder = tmp_path / "fakeapi"
    shutil.copytree(APP_DIR, folder)
    data = json.loads((folder / "app.json").read_text())
    change(data)
    (folder / "app.json").write_text(json.dumps(data))
    return folder


# -- auth types, table-driven -----------------------------------------------------------


AUTH_CASES = [
    (
        {"type": "basic", "username": "{{ connection.token }}"},
        {"authorization": "Basic dG9rLUFCQ0RFRkdISUo6"},
    ),
    (
        {
            "type": "basic",
            "username": "{{ connection.user }}",
            "password": "{{ connection.token }}",
        },
        {"authorization": "Basic YWRhOnRvay1BQkNERUZHSElK"},
    ),
    (
        {"type": "bearer", "value": "{{ connection.token }}"},
        {"authorization": "Bearer tok-ABCDEFGHIJ"},
    ),
    (
        {"type": "header", "header": "X-Api-Key", "value": "{{ connection.token }}"},
        {"x-api-key": "tok-ABCDEFGHIJ"},
    ),
    (
        {
            "type": "headers",
            "headers": {"X-A": "{{ connection.token }}", "X-B": "{{ connection.other }}"},
        },
        {"x-a": "tok-ABCDEFGHIJ", "x-b": "other-KLMNOPQRS"},
    ),
    ({"type": "none"}, {}),
]


def _auth_app(tmp_path: Path, auth: dict[str, Any]) -> connector.Registry:
    folder = tmp_path / "authapp"
    folder.mkdir()
    (folder / "app.json").write_text(
        json.dumps(
            {
                "name": "authapp",
                "label": "Auth",
                "baseUrl": "{{ connection.host }}",
                "connection": {
                    "fields": [
                        {"name": "token", "type": "text", "secret": True},
                        {"name": "other", "type": "text", "secret": True},
                        {"name": "user", "type": "text"},
                        {"name": "host", "type": "url"},
                    ],
                    "auth": auth,
                },
                "modules": ["echo.json"],
            }
        )
    )
    (folder / "echo.json").write_text(
        json.dumps(
            {
                "id": "authapp.echo",
                "label": "Echo",
                "description": "Echo.",
                "request": {"method": "GET", "url": "/echo"},
            }
        )
    )
    return connector.load(folder, packaged=False)


@pytest.mark.parametrize(("auth", "expected"), AUTH_CASES, ids=[c[0]["type"] for c in AUTH_CASES])
def test_auth_types_against_the_fake(
    tmp_path: Path, api: FakeAPI, auth: dict[str, Any], expected: dict[str, str]
) -> None:
    registry = _auth_app(tmp_path, auth)
    connection = {
        "token": "tok-ABCDEFGHIJ",
        "other": "other-KLMNOPQRS",
        "user": "ada",
        "host": api.url,
    }
    with connector.Engine(registry) as engine:
        (bundle,) = engine.run("authapp.echo", connection, {})
        dry = engine.dry_run("authapp.echo", connection, {})
    got = {
        k: v
        for k, v in bundle["headers"].items()
        if k in ("authorization", "x-api-key", "x-a", "x-b")
    }
    # The bundle is redacted: the secret forms never come back to the builder.
    assert set(got) == set(expected)
    assert "tok-ABCDEFGHIJ" not in json.dumps(bundle)
    (sent,) = api.sent("/echo")
    assert {k: sent.headers[k] for k in expected} == expected
    assert "tok-ABCDEFGHIJ" not in json.dumps(dry)


BEARER = {"type": "bearer", "value": "{{ connection.token }}"}
HEADER = {"type": "header", "header": "X-Api-Key", "value": "{{ connection.token }}"}
HEADERS = {
    "type": "headers",
    "headers": {"X-A": "{{ connection.other }}", "X-B": "{{ connection.token }}"},
}


@pytest.mark.parametrize(
    ("auth", "token", "fault"),
    [
        (BEARER, "tök-ÄBCDEFGH", "non-ASCII"),
        (HEADER, "tok-ABC€DEFG", "non-ASCII"),
        (HEADERS, "токен-секрет", "non-ASCII"),
        (HEADERS, "tok-ABC\nX-Evil: 1", "CR, LF or NUL"),
        (BEARER, "tok-ABCDEFG ", "begins or ends with a space"),
        (HEADER, "tok-ABC\x01DEFG", "control character"),
    ],
)
def test_an_auth_header_the_client_cannot_send_is_refused_naming_the_field(
    tmp_path: Path, api: FakeAPI, auth: dict[str, Any], token: str, fault: str
) -> None:
    # Refused when the connection is made, so a dry run fails as the real run would
    # (before, the dry run passed and the run crashed with a UnicodeEncodeError).
    connection = {"token": token, "other": "other-KLMNOPQRS", "user": "ada", "host": api.url}
    with connector.Engine(_auth_app(tmp_path, auth)) as engine:
        for attempt in (engine.dry_run, engine.run):
            with pytest.raises(RunError) as info:
                attempt("authapp.echo", connection, {})
            assert (info.value.type, info.value.field) == ("InvalidConfigurationError", "token")
            assert fault in info.value.message and "auth header" in info.value.message
            assert token.strip() not in json.dumps(info.value.to_dict(), ensure_ascii=False)
    assert api.state.received == []


def test_a_non_ascii_basic_auth_secret_is_sent_as_base64_of_utf8(
    tmp_path: Path, api: FakeAPI
) -> None:
    # Basic auth encodes its secrets itself: any text can be sent.
    auth = {
        "type": "basic",
        "username": "{{ connection.user }}",
        "password": "{{ connection.token }}",
    }
    connection = {"token": "pässwört", "user": "ada", "host": api.url}
    with connector.Engine(_auth_app(tmp_path, auth)) as engine:
        engine.run("authapp.echo", connection, {})
    (sent,) = api.sent("/echo")
    assert sent.headers["authorization"] == "Basic " + base64.b64encode(
        "ada:pässwört".encode()
    ).decode("ascii")


# -- remote options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "expected", "error"),
    [
        (
            {"team": "t1"},
            [{"label": "#general", "value": "c1"}, {"label": "#random", "value": "c2"}],
            None,
        ),
        ({"team": "t2"}, [], None),
        ({}, None, "InvalidConfigurationError"),  # no team yet: the API's 404
    ],
)
def test_remote_options(
    api: FakeAPI,
    engine: connector.Engine,
    parameters: dict[str, Any],
    expected: list[dict[str, Any]] | None,
    error: str | None,
) -> None:
    api.state.channels = {
        "t1": [{"id": "c1", "name": "general"}, {"id": "c2", "name": "random"}],
        "t2": [],
    }
    if error is None:
        assert (
            engine.options("fakeapi.send_message", "channel", api.connection(), parameters)
            == expected
        )
    else:
        with pytest.raises(RunError) as info:
            engine.options("fakeapi.send_message", "channel", api.connection(), parameters)
        assert info.value.type == error


def test_remote_options_unknown_field(api: FakeAPI, engine: connector.Engine) -> None:
    with pytest.raises(RunError) as info:
        engine.options("fakeapi.send_message", "text", api.connection())
    assert "expected one of: channel" in info.value.message


def test_describe_marks_remote_options(fakeapi_registry: connector.Registry) -> None:
    props = fakeapi_registry.describe("fakeapi.send_message")["parameters"]["properties"]
    assert props["channel"]["x-remote-options"] == {
        "command": "connector options fakeapi.send_message channel"
    }
    assert "x-remote-options" not in props["text"]


def test_options_cli(api: FakeAPI, tmp_path: Path) -> None:
    api.state.channels = {"t1": [{"id": "c1", "name": "general"}]}
    done = run_cli(
        "options",
        "fakeapi.send_message",
        "channel",
        "-c",
        json.dumps(api.connection()),
        "-p",
        '{"team": "t1"}',
        "--manifests",
        str(APP_DIR),
        "--no-packaged",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"label": "#general", "value": "c1"}]


def test_async_runs_page_and_check_too(api: FakeAPI, fakeapi_registry: connector.Registry) -> None:
    import asyncio

    async def main() -> tuple[list[dict[str, Any]], str]:
        async with connector.Engine(fakeapi_registry) as engine:
            bundles = await engine.arun("fakeapi.list_items", api.connection(), {"limit": 3})
            try:
                await engine.arun(
                    "fakeapi.upload", api.connection(), {"identity": "u", "name": "bad", "when": 0}
                )
            except RunError as exc:
                return bundles, exc.type
            return bundles, "no error"

    bundles, error = asyncio.run(main())
    assert [b["id"] for b in bundles] == ["i1", "i2", "i3"]
    assert error == "DataError"


@pytest.mark.parametrize("kind", ["search", "poll", "options"])
def test_an_api_echoing_a_secret_never_hands_it_over(
    api: FakeAPI, engine: connector.Engine, kind: str
) -> None:
    if kind == "search":
        api.state.traits = {"u": [{"leak": PASSCODE}, {"other": f"x {ACCOUNT} y"}]}
        out: Any = engine.run("fakeapi.get_traits", api.connection(), {"externalId": "u"})
    elif kind == "poll":
        api.state.records = [
            {"id": "r1", "event": "E", "ts": 20260301000000, "profile": {"identity": PASSCODE}}
        ]
        out = engine.poll(
            "fakeapi.watch_records", api.connection(), {"eventName": "E", "start": "all"}
        ).bundles
    else:
        api.state.channels = {"t": [{"id": ACCOUNT, "name": PASSCODE}]}
        out = engine.options("fakeapi.send_message", "channel", api.connection(), {"team": "t"})
    text = json.dumps(out)
    assert PASSCODE not in text and ACCOUNT not in text
    assert "[REDACTED]" in text


def test_verify_without_a_verify_request_says_it_checked_fields_only(tmp_path: Path) -> None:
    app = _copy_app(tmp_path, lambda a: a["connection"].pop("verify"))
    with connector.Engine(connector.load(app, packaged=False)) as engine:
        out = engine.verify(
            "fakeapi", {"accountId": ACCOUNT, "passcode": PASSCODE, "workspace": "w"}
        )
        assert out["ok"] is True and out["checked"].startswith("fields only")
        with pytest.raises(RunError) as info:  # the fields are still checked
            engine.verify("fakeapi", {"accountId": ACCOUNT})
    assert info.value.type == "InvalidConfigurationError"


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ({"X-Next": "a"}, {"X-Next": "a"}, True),
        ({"X-Next": "a"}, {"x-next": "a"}, True),  # header names are case-insensitive
        ({"X-Next": "a"}, {"X-Next": "b"}, False),
        ({}, {"X-Next": "a"}, False),
        ({"X-Next": "a", "X-Passcode": "p0"}, {"X-Next": "a", "X-Passcode": "p0"}, True),
    ],
)
def test_request_key_tells_requests_apart_by_their_headers(
    fakeapi_registry: connector.Registry,
    first: dict[str, str],
    second: dict[str, str],
    same: bool,
) -> None:
    from connector.core.connection import Connection
    from connector.core.request import PreparedRequest
    from connector.runs.pages import _request_key

    values = {"accountId": ACCOUNT, "passcode": "p0", "workspace": WORKSPACE, "host": "http://h"}
    conn = Connection(fakeapi_registry.apps["fakeapi"], values)

    def key(headers: dict[str, str]) -> str:
        request = PreparedRequest("GET", "http://h/items", headers, {"q": "1"}, None, None, "m")
        return _request_key(request, conn)

    assert (key(first) == key(second)) is same
    assert "X-Next" not in key(first) and "p0" not in key(first)  # a digest, nothing else
