"""Instant triggers: signature, parsing, filters, errors, the format, and a real host.

The end-to-end test runs a tiny HTTP server as a host would: it receives Segment's
webhook POST on 127.0.0.1, hands the raw headers and body bytes to the engine, and
answers 200, 401 or 400 from the outcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import connector
from connector.errors import RunError
from connector.format.manifest import SignatureSpec
from connector.runs.trigger import receive, sign
from tests.conftest import WRITE_KEY, run_cli, write_app
from tests.fakes._server import FakeAPI, Reply, Request

ROOT = Path(__file__).resolve().parent.parent
MODULE = "segment.watch_events"
SECRET = "whsec_Test_0a1b2c3d4e"
CONNECTION = {"writeKey": WRITE_KEY, "sharedSecret": SECRET}

TRACK = {"type": "track", "event": "Order Completed", "userId": "u-1", "properties": {"n": 1}}
SIGNUP = {"type": "track", "event": "Signed Up", "userId": "u-2"}
IDENTIFY = {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}}
GROUP = {"type": "group", "userId": "u-1", "groupId": "org-1"}


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Headers as Segment's Webhooks destination sends them."""
    digest = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return {"Content-Type": "application/json", "X-Signature": digest}


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


def deliver(engine: connector.Engine, data: Any, **parameters: Any) -> list[dict[str, Any]]:
    body = encode(data)
    return engine.handle_webhook(MODULE, CONNECTION, parameters, signed(body), body)


# -- splitting and filtering -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "parameters", "expected"),
    [
        (TRACK, {}, [TRACK]),
        ([TRACK, IDENTIFY], {}, [TRACK, IDENTIFY]),
        ({"batch": [TRACK, IDENTIFY, GROUP]}, {}, [TRACK, IDENTIFY, GROUP]),
        ({"batch": []}, {}, []),
        ([], {}, []),
        ({"batch": [TRACK, IDENTIFY, GROUP]}, {"types": ["group", "identify"]}, [IDENTIFY, GROUP]),
        ([TRACK, SIGNUP, IDENTIFY], {"events": ["Signed Up"]}, [SIGNUP, IDENTIFY]),
        ([TRACK, SIGNUP, IDENTIFY], {"types": ["track"], "events": ["Signed Up"]}, [SIGNUP]),
        ([TRACK, SIGNUP], {"types": [], "events": []}, [TRACK, SIGNUP]),
        ({"type": "page", "name": "Home", "userId": "u"}, {"types": ["track"]}, []),
    ],
)
def test_events_are_split_and_filtered(
    engine: connector.Engine, data: Any, parameters: dict[str, Any], expected: list[Any]
) -> None:
    assert deliver(engine, data, **parameters) == expected


def test_headers_may_be_pairs_in_any_case(engine: connector.Engine) -> None:
    body = encode(TRACK)
    pairs = [("content-type", "application/json"), ("x-signature", signed(body)["X-Signature"])]
    assert engine.handle_webhook(MODULE, CONNECTION, {}, pairs, body) == [TRACK]
    upper = {"X-SIGNATURE": signed(body)["X-Signature"].upper()}  # hex in either case
    assert engine.handle_webhook(MODULE, CONNECTION, {}, upper, body) == [TRACK]


def test_the_signature_covers_the_exact_bytes(engine: connector.Engine) -> None:
    """Same JSON, other bytes (spacing): the signature of one does not fit the other."""
    body = encode(TRACK)
    spaced = json.dumps(TRACK, indent=2).encode()
    with pytest.raises(connector.InvalidAccessTokenError):
        engine.handle_webhook(MODULE, CONNECTION, {}, signed(body), spaced)
    assert engine.handle_webhook(MODULE, CONNECTION, {}, signed(spaced), spaced) == [TRACK]


def test_text_body_is_read_as_utf8(engine: connector.Engine) -> None:
    text = json.dumps({"type": "track", "event": "Café", "userId": "u"}, ensure_ascii=False)
    bundles = engine.handle_webhook(MODULE, CONNECTION, {}, signed(text.encode()), text)
    assert bundles[0]["event"] == "Café"


# -- refusals: no bundle, a clear error --------------------------------------------------

AUTH, DATA = connector.InvalidAccessTokenError, connector.DataError
BAD_DELIVERIES: list[tuple[str, bytes, dict[str, str] | None, type[RunError], str, str]] = [
    # (id, body, headers or None for a valid signature, error, field, message part)
    (
        "wrong-signature",
        encode(TRACK),
        {"X-Signature": "00" * 20},
        AUTH,
        "X-Signature",
        "does not match",
    ),
    (
        "other-secret",
        encode(TRACK),
        signed(encode(TRACK), "another"),
        AUTH,
        "X-Signature",
        "does not match",
    ),
    ("missing-signature", encode(TRACK), {}, AUTH, "X-Signature", "is missing"),
    ("empty-signature", encode(TRACK), {"X-Signature": " "}, AUTH, "X-Signature", "is missing"),
    ("not-json", b"type=track", None, DATA, "body", "not valid JSON"),
    ("empty-body", b"", None, DATA, "body", "empty"),
    ("not-utf8", b"\xff\xfe{}", None, DATA, "body", "not UTF-8"),
    ("nan", b'{"type": "track", "n": NaN}', None, DATA, "body", "not valid JSON"),
    ("a-number", b"42", None, DATA, "body", "got a number"),
    ("a-string", b'"track"', None, DATA, "body", "got text"),
    ("no-type", encode({"event": "E"}), None, DATA, "type", "has no 'type'"),
    ("empty-type", encode({"type": ""}), None, DATA, "type", "has no 'type'"),
    (
        "batch-item-not-object",
        encode({"batch": [TRACK, 7]}),
        None,
        DATA,
        "batch[1]",
        "must be an object",
    ),
    (
        "batch-item-no-type",
        encode([TRACK, {"userId": "u"}]),
        None,
        DATA,
        "body[1].type",
        "has no 'type'",
    ),
    ("batch-not-list", encode({"batch": {"type": "track"}}), None, DATA, "batch", "must be a list"),
    ("too-deep", b"[" * 100_000 + b"]" * 100_000, None, DATA, "body", ""),
]


@pytest.mark.parametrize(
    ("body", "headers", "error", "field", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_DELIVERIES],
)
def test_bad_deliveries_are_refused(
    engine: connector.Engine,
    body: bytes,
    headers: dict[str, str] | None,
    error: type[RunError],
    field: str,
    message: str,
) -> None:
    with pytest.raises(error) as info:
        engine.handle_webhook(
            MODULE, CONNECTION, {}, signed(body) if headers is None else headers, body
        )
    assert info.value.field == field
    assert message in info.value.message
    assert SECRET not in str(info.value.to_dict())


def test_a_body_over_the_limit_is_refused_before_the_signature(engine: connector.Engine) -> None:
    body = b" " * (5 * 1024 * 1024 + 1)
    with pytest.raises(connector.DataError) as info:
        engine.handle_webhook(MODULE, CONNECTION, {}, {}, body)
    assert "over the limit of 5,242,880 bytes" in info.value.message


def test_a_repeated_signature_header_is_refused(engine: connector.Engine) -> None:
    body = encode(TRACK)
    good = signed(body)["X-Signature"]
    with pytest.raises(connector.InvalidAccessTokenError, match="appears 2 times"):
        engine.handle_webhook(
            MODULE, CONNECTION, {}, [("X-Signature", good), ("x-signature", good)], body
        )


@pytest.mark.parametrize(
    ("connection", "error", "field"),
    [
        ({"writeKey": WRITE_KEY}, connector.InvalidConfigurationError, "sharedSecret"),
        (
            {"writeKey": WRITE_KEY, "sharedSecret": ""},
            connector.InvalidConfigurationError,
            "sharedSecret",
        ),
        ({"sharedSecret": SECRET}, connector.InvalidConfigurationError, "writeKey"),
        ({**CONNECTION, "nope": 1}, connector.InvalidConfigurationError, "nope"),
    ],
)
def test_connection_problems_are_configuration_errors(
    engine: connector.Engine, connection: dict[str, Any], error: type[RunError], field: str
) -> None:
    body = encode(TRACK)
    with pytest.raises(error) as info:
        engine.handle_webhook(MODULE, connection, {}, signed(body), body)
    assert info.value.field == field
    assert SECRET not in info.value.message


@pytest.mark.parametrize(
    ("parameters", "field"),
    [({"types": ["purchase"]}, "types[0]"), ({"types": "track"}, "types"), ({"x": 1}, "x")],
)
def test_bad_filters_are_data_errors(
    engine: connector.Engine, parameters: dict[str, Any], field: str
) -> None:
    body = encode(TRACK)
    with pytest.raises(connector.DataError) as info:
        engine.handle_webhook(MODULE, CONNECTION, parameters, signed(body), body)
    assert info.value.field == field


def test_secrets_in_events_are_redacted(engine: connector.Engine) -> None:
    event = {
        "type": "track",
        "event": "E",
        "userId": "u",
        "properties": {"a": SECRET, "b": WRITE_KEY},
    }
    [bundle] = deliver(engine, event)
    assert bundle["properties"] == {"a": "[REDACTED]", "b": "[REDACTED]"}


def test_a_trigger_cannot_be_run_and_an_action_receives_nothing(engine: connector.Engine) -> None:
    with pytest.raises(connector.InvalidConfigurationError, match="is a trigger"):
        engine.run(MODULE, CONNECTION, {})
    with pytest.raises(connector.InvalidConfigurationError, match="is a trigger"):
        engine.dry_run(MODULE, CONNECTION, {})
    body = encode(TRACK)
    with pytest.raises(connector.InvalidConfigurationError, match="not a trigger"):
        engine.handle_webhook("segment.track", CONNECTION, {}, signed(body), body)


# -- signing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "encoding", "prefix", "expected"),
    [
        ("hmac-sha1", "hex", "", hmac.new(b"k", b"body", hashlib.sha1).hexdigest()),
        (
            "hmac-sha256",
            "hex",
            "sha256=",
            "sha256=" + hmac.new(b"k", b"body", hashlib.sha256).hexdigest(),
        ),
        (
            "hmac-sha512",
            "base64",
            "",
            base64.b64encode(hmac.new(b"k", b"body", hashlib.sha512).digest()).decode(),
        ),
    ],
)
def test_sign(algorithm: Any, encoding: Any, prefix: str, expected: str) -> None:
    spec = SignatureSpec(
        header="X-Sig", algorithm=algorithm, encoding=encoding, prefix=prefix, secret="s"
    )
    assert sign(spec, "k", b"body") == expected


# -- the format ---------------------------------------------------------------------------


def _app(tmp_path: Path, module: dict[str, Any], secret: bool = True) -> Path:
    fields = [
        {"name": "token", "type": "text", "secret": secret},
        {"name": "account", "type": "text"},
    ]
    return write_app(
        tmp_path,
        "hooks",
        {"watch.json": module},
        connection={"fields": fields, "auth": {"type": "none"}},
    )


def _trigger(**changes: Any) -> dict[str, Any]:
    module: dict[str, Any] = {
        "id": "hooks.watch",
        "label": "Watch",
        "description": "Deliveries.",
        "kind": "trigger",
        "parameters": [{"name": "kinds", "type": "array", "items": {"name": "k", "type": "text"}}],
        "webhook": {
            "signature": {"header": "X-Hub-Signature-256", "prefix": "sha256=", "secret": "token"},
            "itemsKey": "items",
            "requiredKeys": ["kind"],
            "filter": "{{ not parameters.kinds or event.kind in parameters.kinds }}",
        },
    }
    module.update(changes)
    return module


def test_a_trigger_from_scratch_with_default_output(tmp_path: Path) -> None:
    """GitHub-style signing, an 'items' batch, and the event as the default bundle."""
    registry = connector.load(_app(tmp_path, _trigger()), packaged=False)
    body = encode({"items": [{"kind": "a", "n": 1}, {"kind": "b"}]})
    digest = "sha256=" + hmac.new(b"tok-123", body, hashlib.sha256).hexdigest()
    with connector.Engine(registry) as engine:
        bundles = engine.handle_webhook(
            "hooks.watch",
            {"token": "tok-123", "account": "acme"},
            {"kinds": ["a"]},
            {"X-Hub-Signature-256": digest},
            body,
        )
    assert bundles == [{"kind": "a", "n": 1}]
    assert registry.describe("hooks.watch")["webhook"]["signature"] == {
        "header": "X-Hub-Signature-256",
        "algorithm": "hmac-sha256",
        "encoding": "hex",
        "prefix": "sha256=",
        "secretField": "token",
    }


def test_trigger_output_template_sees_event_parameters_and_connection(tmp_path: Path) -> None:
    output = {
        "bundle": {
            "kind": "{{ event.kind }}",
            "missing": "{{ event.nope }}",
            "account": "{{ connection.account }}",
            "kinds": "{{ parameters.kinds }}",
        }
    }
    registry = connector.load(_app(tmp_path, _trigger(output=output)), packaged=False)
    module = registry.get("hooks.watch")
    body = encode({"kind": "a"})
    digest = "sha256=" + hmac.new(b"tok-123", body, hashlib.sha256).hexdigest()
    bundles = receive(
        module, {"token": "tok-123", "account": "acme"}, {}, {"x-hub-signature-256": digest}, body
    )
    assert bundles == [{"kind": "a", "account": "acme"}]


@pytest.mark.parametrize(
    ("module", "secret", "path", "message"),
    [
        (_trigger(webhook=None), True, "$.webhook", "an instant_trigger needs 'webhook'"),
        (
            _trigger(kind="instant_trigger", request={"url": "/x"}),
            True,
            "$.request",
            "has no 'request'",
        ),
        # A request makes a 'trigger' a polling one, which has no webhook.
        (_trigger(request={"url": "/x"}), True, "$.webhook", "instant triggers only"),
        (_trigger(batchable=True), True, "$.batchable", "cannot be batchable"),
        ({**_trigger(kind="action"), "request": {"url": "/x"}}, True, "$.webhook", "triggers only"),
        (
            _trigger(webhook={"signature": {"header": "X", "secret": "nope"}}),
            True,
            "$.webhook.signature.secret",
            "unknown connection field 'nope', expected one of: token",
        ),
        (
            _trigger(webhook={"signature": {"header": "X", "secret": "account"}}),
            True,
            "$.webhook.signature.secret",
            "'account' is not secret",
        ),
        (_trigger(), False, "$.webhook.signature.secret", "'token' is not secret"),
        (
            _trigger(webhook={"signature": {"header": "X Sig", "secret": "token"}}),
            True,
            "$.webhook.signature.header",
            "pattern",
        ),
        (
            _trigger(webhook={"signature": {"header": "X", "secret": "token", "algorithm": "md5"}}),
            True,
            "$.webhook.signature.algorithm",
            "hmac-sha1",
        ),
        (
            _trigger(webhook={"filter": "{{ response.status }}"}),
            True,
            "$.webhook.filter",
            "unknown name 'response'",
        ),
        (
            _trigger(webhook={"filter": "{{ run.id }}"}),
            True,
            "$.webhook.filter",
            "unknown name 'run'",
        ),
        (
            _trigger(webhook={"filter": "{{ parameters.nope }}"}),
            True,
            "$.webhook.filter",
            "unknown parameter 'parameters.nope'",
        ),
        (
            _trigger(webhook={"filter": "{{ connection.token }}"}),
            True,
            "$.webhook.filter",
            "is secret",
        ),
        (_trigger(webhook={"filter": "{{ event. }}"}), True, "$.webhook.filter", "bad template"),
        (
            _trigger(output={"bundle": "{{ response.body }}"}),
            True,
            "$.output.bundle",
            "unknown name 'response'",
        ),
        (_trigger(webhook={"maxBodyBytes": 0}), True, "$.webhook.maxBodyBytes", "greater than 0"),
    ],
)
def test_trigger_manifest_errors(
    tmp_path: Path, module: dict[str, Any], secret: bool, path: str, message: str
) -> None:
    with pytest.raises(connector.ManifestError) as info:
        connector.load(_app(tmp_path, module, secret=secret), packaged=False)
    assert info.value.path == path, info.value
    assert message in info.value.message, info.value


def test_unsigned_trigger_accepts_any_delivery(tmp_path: Path) -> None:
    registry = connector.load(_app(tmp_path, _trigger(webhook={})), packaged=False)
    with connector.Engine(registry) as engine:
        bundles = engine.handle_webhook("hooks.watch", {}, {}, {}, b'[{"a": 1}]')
    assert bundles == [{"a": 1}]


def test_module_page_describes_the_webhook(registry: connector.Registry) -> None:
    from connector.tools.docs import module_page

    page = module_page(registry.get(MODULE))
    assert "Kind: trigger (instant)" in page
    assert "`X-Signature` header is the HMAC-SHA1 (hex) of the raw body" in page
    assert "`sharedSecret`" in page
    assert "connector webhook segment.watch_events" in page


# -- a real host --------------------------------------------------------------------------

HOOK_PATH = "/hooks/segment"


class Host(FakeAPI):
    """A minimal host: its own HTTP server, the engine behind one webhook URL."""

    def __init__(self, engine: connector.Engine, parameters: dict[str, Any]) -> None:
        super().__init__()
        self.engine, self.parameters = engine, parameters
        self.bundles: list[dict[str, Any]] = []
        self.route("POST", HOOK_PATH, self._deliver)

    @property
    def url(self) -> str:
        return super().url + HOOK_PATH

    def _deliver(self, request: Request, args: dict[str, str]) -> Reply:
        try:
            bundles = self.engine.handle_webhook(
                MODULE, CONNECTION, self.parameters, request.headers, request.body
            )
        except connector.InvalidAccessTokenError as exc:
            return Reply(401, exc.to_dict())
        except connector.DataError as exc:
            return Reply(400, exc.to_dict())
        self.bundles.extend(bundles)
        return Reply(200, {"received": len(bundles)})


@pytest.fixture
def host(engine: connector.Engine) -> Iterator[Host]:
    with Host(engine, {"types": ["track", "identify"]}) as running:
        yield running


def test_webhook_end_to_end(host: Host) -> None:
    batch = encode({"batch": [TRACK, GROUP, IDENTIFY]})
    single = json.dumps(SIGNUP, separators=(",", ":")).encode()
    with httpx.Client() as client:
        first = client.post(host.url, content=batch, headers=signed(batch))
        second = client.post(host.url, content=single, headers=signed(single))
        forged = client.post(host.url, content=single, headers=signed(single, "guess"))
        broken = client.post(host.url, content=b"{", headers=signed(b"{"))
    assert (first.status_code, first.json()) == (200, {"received": 2})
    assert (second.status_code, second.json()) == (200, {"received": 1})
    assert host.bundles == [TRACK, IDENTIFY, SIGNUP]
    assert forged.status_code == 401
    assert forged.json()["type"] == "InvalidAccessTokenError"
    assert broken.status_code == 400
    assert broken.json()["field"] == "body"
    for answer in (forged, broken):
        assert SECRET not in answer.text and "guess" not in answer.text


def test_cli_webhook(tmp_path: Path) -> None:
    body = tmp_path / "delivery.json"
    body.write_bytes(encode([TRACK, IDENTIFY]))
    conn = json.dumps(CONNECTION)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("webhook", MODULE, "-c", conn, *args)

    done = cli("--body", str(body), "--sign", "-p", '{"types": ["identify"]}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [IDENTIFY]
    header = "X-Signature: " + signed(body.read_bytes())["X-Signature"]
    done = cli("--body", str(body), "-H", header)
    assert json.loads(done.stdout) == [TRACK, IDENTIFY]
    done = cli("--body", str(body))
    assert done.returncode == 1
    assert json.loads(done.stderr)["error"]["type"] == "InvalidAccessTokenError"
    assert SECRET not in done.stdout + done.stderr


def test_a_deeply_nested_signed_delivery_is_a_data_error(engine: connector.Engine) -> None:
    body = ('{"type": "track", "event": "E", "properties": ' + "[" * 900 + "]" * 900 + "}").encode()
    with pytest.raises(connector.DataError) as info:
        engine.handle_webhook(MODULE, CONNECTION, {}, signed(body), body)
    assert info.value.field == "body"
    assert "nested too deeply" in info.value.message


@pytest.mark.parametrize(
    "body",
    [b'{"type": "track", "n": 1e999}', b'{"type": "track", "e": "\\ud800"}'],
    ids=["overflowing-number", "lone-surrogate"],
)
def test_json_no_host_can_use_is_a_data_error(engine: connector.Engine, body: bytes) -> None:
    with pytest.raises(connector.DataError) as info:
        engine.handle_webhook(MODULE, CONNECTION, {}, signed(body), body)
    assert info.value.field == "body"


@pytest.mark.parametrize("secret", [float("nan"), 1000, True])
def test_only_text_shared_secrets(engine: connector.Engine, secret: object) -> None:
    body = encode(TRACK)
    with pytest.raises(connector.InvalidConfigurationError):
        engine.handle_webhook(
            MODULE, {**CONNECTION, "sharedSecret": secret}, {}, signed(body, "nan"), body
        )


def test_parameters_nested_too_deeply_are_a_data_error_as_for_actions() -> None:
    """Triggers check their parameters through the same step as actions (it once
    raised the bare RecursionError here)."""
    engine = connector.Engine(connector.load())
    deep: list[Any] = []
    level = deep
    for _ in range(5000):
        level.append([])
        level = level[0]
    with pytest.raises(connector.DataError, match="could not be processed"):
        engine.handle_webhook("segment.watch_events", CONNECTION, {"events": deep}, {}, b"{}")
