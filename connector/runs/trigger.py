"""Instant triggers: one webhook delivery in, one output bundle per event out.

The host owns the HTTP server (it knows its URLs, TLS and routing); the engine owns
what a delivery means. A host hands over the raw request as it arrived, headers and
body *bytes*, because a signature is computed over the exact bytes the sender posted:
a body parsed and serialised again would no longer match.

:func:`receive` goes through these steps, and a failing step is an error with no
bundle at all (a host answers 401 or 400 and the sender retries or gives up), never a
partial result:

1. the module must be a trigger, the parameters (the builder's filters) valid, and
   the connection's shared secret set (InvalidConfigurationError otherwise);
2. the body must fit ``webhook.maxBodyBytes`` (DataError);
3. the signature header must equal the HMAC of the body under the shared secret,
   compared in constant time (InvalidAccessTokenError). Nothing is parsed before this,
   so unauthenticated input never reaches the JSON parser or the templates;
4. the body must be JSON: an array or an object's ``itemsKey`` list is a batch, any
   other object one event; every event an object with the ``requiredKeys`` (DataError);
5. ``webhook.filter`` keeps the events the builder asked for, and ``output.bundle``
   shapes each kept one. Bundles are redacted like an action's.

The shared secret never appears in a bundle, an error or a log: errors name the header
and the connection field, not values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from connector.core.connection import Connection
from connector.core.jsondata import MAX_DEPTH, loads_strict, too_deep
from connector.core.prepare import ENGINE_INFO, check_parameters, render_part
from connector.core.registry import LoadedModule
from connector.core.values import Values
from connector.errors import DataError, InvalidAccessTokenError, InvalidConfigurationError
from connector.format.manifest import SignatureSpec, WebhookSpec

__all__ = ["Headers", "lenient", "receive", "sign"]

#: Headers as a host has them: a mapping (any case) or (name, value) pairs.
Headers = Mapping[str, str] | Iterable[tuple[str, str]]

_DIGESTS = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512}


def sign(signature: SignatureSpec, secret: str, body: bytes) -> str:
    """The header value a sender sharing ``secret`` puts on ``body``.

    Used to check deliveries, and by fixtures and tests to sign the deliveries they
    make up, so both sides compute it one way.
    """
    mac = hmac.new(secret.encode("utf-8"), body, _DIGESTS[signature.algorithm]).digest()
    text = mac.hex() if signature.encoding == "hex" else base64.b64encode(mac).decode("ascii")
    return signature.prefix + text


def receive(
    module: LoadedModule,
    connection: Mapping[str, Any] | None,
    parameters: Mapping[str, Any] | None,
    headers: Headers,
    body: bytes | bytearray | memoryview | str,
    *,
    checked: Connection | None = None,
) -> list[dict[str, Any]]:
    """The output bundles of one delivery to a trigger; raises a RunError subclass.

    ``connection`` is the app's connection values (as for a run); ``checked`` lets the
    engine pass the Connection it built (and cached) from them. ``body`` is the raw
    request body; text is taken as UTF-8.
    """

    manifest = module.manifest
    webhook = manifest.webhook
    if webhook is None:
        raise InvalidConfigurationError(
            f"module {module.id} is an {manifest.kind} module, not a trigger: run it instead"
        )
    conn = checked or Connection(module.app, connection)
    values = check_parameters(module, conn, parameters)
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if len(raw) > webhook.max_body_bytes:
        raise DataError(
            f"the webhook body is {len(raw):,} bytes, over the limit of "
            f"{webhook.max_body_bytes:,} bytes",
            field="body",
        )
    if webhook.signature is not None:
        _verify(webhook.signature, _secret(webhook.signature, connection), headers, raw)
    events = split_events(webhook, parse_body(raw))
    scope: dict[str, Any] = {
        "parameters": values,
        "connection": conn.public,
        "engine": ENGINE_INFO,
        "app": module.app.info,
    }
    bundles: list[dict[str, Any]] = []
    for event in events:
        scope["event"] = _lenient(event)
        keep = module.webhook_filter
        if keep is not None and not render_part(module, "filter", keep, scope, conn):
            continue
        output = render_part(module, "output", module.output, scope, conn)
        for bundle in output if isinstance(output, list) else [output]:
            bundles.append(conn.redact.data(bundle if bundle is not None else {}))
    return bundles


def _secret(signature: SignatureSpec, connection: Mapping[str, Any] | None) -> str:
    value = (connection or {}).get(signature.secret)
    if not isinstance(value, str) or not value.strip():
        raise InvalidConfigurationError(
            f"connection field {signature.secret!r} (the webhook's shared secret) is required "
            "to check deliveries: set it to the shared secret configured at the sender",
            field=signature.secret,
        )
    return value


def _header(headers: Headers, name: str) -> str | None:
    """The one value of header ``name`` (any case); a repeated one is refused."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found = [str(v) for k, v in pairs if str(k).lower() == name.lower()]
    if len(found) > 1:
        raise InvalidAccessTokenError(
            f"the {name} header appears {len(found)} times: a delivery carries one signature",
            field=name,
        )
    return found[0] if found else None


def _verify(signature: SignatureSpec, secret: str, headers: Headers, body: bytes) -> None:
    given = _header(headers, signature.header)
    if given is None or not given.strip():
        raise InvalidAccessTokenError(
            f"the {signature.header} header is missing: the delivery is not signed. Set the "
            f"same shared secret at the sender and in the connection field "
            f"{signature.secret!r}",
            field=signature.header,
        )
    expected = sign(signature, secret, body)
    received = given.strip()
    if signature.encoding == "hex":  # hex digits may come in either case
        received = received[: len(signature.prefix)] + received[len(signature.prefix) :].lower()
    if not hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8", "replace")):
        raise InvalidAccessTokenError(
            f"the {signature.header} header does not match the body signed with the shared "
            f"secret ({signature.algorithm}): the delivery was altered, or the sender's secret "
            f"differs from the connection field {signature.secret!r}",
            field=signature.header,
        )


def parse_body(raw: bytes) -> Any:
    """The delivery's JSON; DataError for anything else (no content echoed back)."""
    if not raw.strip():
        raise DataError("the webhook body is empty: expected a JSON event or batch", field="body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"the webhook body is not UTF-8 text (byte {exc.start})", field="body"
        ) from None
    try:
        data = loads_strict(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"the webhook body is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}",
            field="body",
        ) from None
    except ValueError as exc:
        raise DataError(f"the webhook body is not valid JSON: {exc}", field="body") from None
    if too_deep(data):
        raise DataError(
            f"the webhook body is nested too deeply (over {MAX_DEPTH} levels)", field="body"
        )
    try:
        orjson.dumps(data)  # refuses lone surrogates ("\ud800"), which no host can encode
    except orjson.JSONEncodeError:
        raise DataError(
            "the webhook body has text that is not valid Unicode (a lone surrogate)",
            field="body",
        ) from None
    return data


def split_events(webhook: WebhookSpec, data: Any) -> list[dict[str, Any]]:
    """The events of a delivery: a batch's items, or the one event it is."""
    where: str | None
    if isinstance(data, list):
        items, where = data, "body"
    elif isinstance(data, dict):
        key = webhook.items_key
        if key is not None and key in data:
            if not isinstance(data[key], list):
                raise DataError(
                    f"the webhook body's {key!r} must be a list of events, got {_kind(data[key])}",
                    field=key,
                )
            items, where = data[key], key
        else:
            items, where = [data], None
    else:
        raise DataError(
            f"the webhook body must be a JSON object (one event) or a list of events, "
            f"got {_kind(data)}",
            field="body",
        )
    for i, item in enumerate(items):
        field = f"{where}[{i}]" if where else "body"
        if not isinstance(item, dict):
            raise DataError(f"event {field!r} must be an object, got {_kind(item)}", field=field)
        for key in webhook.required_keys:
            if item.get(key) in (None, ""):
                name = f"{where}[{i}].{key}" if where else key
                raise DataError(
                    f"event {field!r} has no {key!r}: every event needs "
                    + ", ".join(repr(k) for k in webhook.required_keys),
                    field=name,
                )
    return items


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)


def _lenient(value: Any) -> Any:
    """Events as templates see them: a missing key reads as ``none``, at every level.

    Events of one delivery differ in shape (a track has ``event``, an identify has not),
    so a filter such as ``event.event in parameters.events`` must not fail on them.
    """
    if isinstance(value, dict):
        return Values((k, _lenient(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_lenient(v) for v in value]
    return value


#: Events, items and answers as templates see them (searches and polling triggers too).
lenient = _lenient
