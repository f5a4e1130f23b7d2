"""The write key never leaves the engine in any form, whatever it is made of.

A property test over keys drawn from the characters encoders treat specially (quotes,
backslashes, ``%``, ``+``, spaces, non-ASCII, beyond the BMP) mixed with letters, mapped
everywhere a builder can map one (parameters, custom property names and values,
context, api_call headers, URL path and query, bodies as objects and as JSON text), in
runs that succeed, fail remotely (the fake remote echoes the whole request back in its
error), fail on input, or are kept as incomplete executions. Every output is searched
for the key in each escaped form the test computes itself (not the engine's patterns):
bundles, dry runs, exceptions, log records (httpx's and httpcore's included),
every column of every stored row, ``connector incomplete list``/``show``, and what
``connector run`` prints on stdout and stderr.
"""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import json
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import connector
from connector.format.manifest import RetrySpec
from connector.runs.incomplete import IncompleteStore
from connector.tools.cli import main

_RETRY = RetrySpec(attempts=2, backoff=0.001, maxBackoff=0.002)


class _Echo(BaseHTTPRequestHandler):
    """A fake of the remote: answers ``fail-NNN`` found anywhere in the request with
    status NNN and the whole request (line, headers, body) as its text; anything else
    with 200 and the same, as JSON."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        raw = self.requestline.encode() + b"\r\n" + bytes(self.headers) + body
        found = re.search(rb"fail-(\d{3})", raw)
        status = int(found.group(1)) if found else 200
        if found:
            payload, kind = raw, "text/plain; charset=utf-8"
        else:
            text = raw.decode("utf-8", "replace")
            payload, kind = json.dumps({"success": True, "echo": text}).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def leak_forms(key: str) -> set[str]:
    """The key as the usual writers escape it, once and twice: what must never show."""
    once = {
        key,
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        orjson.dumps(key).decode()[1:-1],
        repr(key)[1:-1],
        ascii(key)[1:-1],
        quote(key, safe=""),
        quote(key),
        quote_plus(key),
    }
    forms = set(once)
    for form in once:
        forms |= {
            json.dumps(form)[1:-1],
            json.dumps(form, ensure_ascii=False)[1:-1],
            repr(form)[1:-1],
            quote(form, safe=""),
            quote_plus(form),
        }
    forms |= {_lower_hex(form) for form in forms}
    for suffix in (":", ""):
        raw = (key + suffix).encode()
        forms.add(base64.b64encode(raw).decode().rstrip("="))
        forms.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    return forms


def assert_no_leak(key: str, where: str, text: str) -> None:
    for form in leak_forms(key):
        assert form not in text, f"the key leaked into {where} as {form!r}: {text[:2000]}"


_SPECIAL = ['"', "\\", "%", "'", " ", "+", "é", "ü", "€", "😀", "/", "&", "="]
_LETTERS = list("abcdXYZ0189")
keys = st.text(st.sampled_from(_SPECIAL + _LETTERS), min_size=8, max_size=20).filter(
    # Enough letters that the key cannot occur by chance (eight spaces would, in any
    # indented text, and eight zeros in a hex address).
    lambda k: sum(c.isascii() and c.isalpha() for c in k) >= 3 and len(set(k)) >= 4
)
PLACES = ["event", "userId", "messageId", "propertyValue", "propertyName", "context", "header",
          "path", "pathEncoded", "query", "body", "bodyText"]  # fmt: skip
OUTCOMES = ["ok", "fail-400", "fail-422", "fail-503", "input"]


def _parameters(module: str, key: str, places: set[str], outcome: str) -> tuple[dict, dict]:
    """A module's parameters with the key mapped into ``places``; half of them read it
    from the context through a template, as a builder's mapping does."""
    context: dict[str, Any] = {"ctx": {"k": key}}
    value = "{{ ctx.k }}"
    marker = "" if outcome in ("ok", "input") else outcome
    if module == "segment.track":
        properties: dict[str, Any] = {}
        if "propertyValue" in places:
            properties["note"] = value
        if "propertyName" in places:
            properties[key] = "v"
        parameters: dict[str, Any] = {
            "event": value if "event" in places else "Signed Up",
            "userId": (key if "userId" in places else "u-1") + marker,
            "customProperties": properties,
        }
        if "context" in places:
            parameters["context"] = {"ip": value}
        if "messageId" in places:
            parameters["messageId"] = value
        if outcome == "input":
            parameters["currency"] = key  # not ISO 4217: refused, quoting the value
        return parameters, context
    path = "/v1/echo"
    if "pathEncoded" in places:
        path += "/{{ ctx.k | urlencode }}"
    elif "path" in places:
        path += "/" + key  # raw: most such keys are refused as a path, quoting it
    parameters = {
        "url": path + ("/" + marker if marker else ""),
        "method": "POST",
        "headers": {"X-Key": value} if "header" in places else {},
        "qs": {"k": value} if "query" in places else {},
    }
    if "bodyText" in places:
        parameters["body"] = json.dumps({"data": {"k": key}})
    elif "body" in places:
        parameters["body"] = {"data": {"k": value}}
    else:
        parameters["body"] = {"data": 1}
    if outcome == "input":
        parameters["method"] = "TRACE " + key  # not one of the options: refused
    return parameters, context


class _Records(logging.Handler):
    """What a host's own handler would receive, formatted with tracebacks."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _all_logs() -> Iterator[_Records]:
    handler = _Records()
    root = logging.getLogger()
    names = ["connector", "httpx", "httpcore"]
    levels = {name: logging.getLogger(name).level for name in names}
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _cli(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        main(list(args))
    return out.getvalue() + err.getvalue()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(
    key=keys,
    module=st.sampled_from(["segment.track", "segment.api_call"]),
    places=st.sets(st.sampled_from(PLACES), min_size=1, max_size=4),
)
def test_the_key_never_leaves_in_any_form(
    registry: connector.Registry,
    echo_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    key: str,
    module: str,
    places: set[str],
) -> None:
    for outcome in OUTCOMES:  # each key and mapping through every kind of run
        connection = {"writeKey": key, "host": echo_url}
        parameters, context = _parameters(module, key, places, outcome)
        store = tmp_path_factory.mktemp("store") / "incomplete.sqlite"
        # The CLI retries with the app's real backoff: not for the run that fails.
        cli = outcome != "fail-503"
        outputs = _outputs(registry, store, cli, module, connection, parameters, context)
        for where, text in outputs.items():
            assert_no_leak(key, f"{where} ({outcome} run)", text)
        if outcome == "fail-503" and "[REDACTED]" not in outputs["run"]:
            # Unless the input was refused, the remote echoed the key and was redacted.
            assert "DataError" in outputs["run"], outputs["run"]


def _outputs(
    registry: connector.Registry,
    store_path: Path,
    cli: bool,
    module: str,
    connection: dict[str, str],
    parameters: dict[str, Any],
    context: dict[str, Any],
) -> dict[str, str]:
    """Every text one run of ``module`` emits, by where it went (with ``cli``, that of
    a ``connector run`` of it too)."""
    outputs: dict[str, str] = {}
    with _all_logs() as logs:
        store = IncompleteStore(store_path)
        with connector.Engine(registry, retry=_RETRY, incomplete=store) as engine:
            for step in ("dry_run", "run"):
                try:
                    result: Any = getattr(engine, step)(module, connection, parameters, context)
                except connector.RunError as exc:
                    result = [str(exc), repr(exc), exc.to_dict(), exc.args]
                outputs[step] = repr(result) + json.dumps(result, ensure_ascii=False, default=str)
            if module == "segment.track":
                batch = list(engine.run_batch(module, connection, [parameters] * 2, context))
                shown = [r.to_dict() if isinstance(r, connector.RunError) else r for r in batch]
                outputs["batch"] = repr(batch) + json.dumps(shown, ensure_ascii=False)
        store.close()
        del engine
        gc.collect()  # the connection's redactor is gone: the store speaks for itself
        with sqlite3.connect(store_path) as db:
            outputs["store rows"] = repr(db.execute("SELECT * FROM executions").fetchall())
            ids = [row[0] for row in db.execute("SELECT id FROM executions")]
        outputs["incomplete list"] = _cli("incomplete", "list", "--store", str(store_path))
        for execution_id in ids:
            outputs[f"incomplete show {execution_id}"] = _cli(
                "incomplete", "show", execution_id, "--store", str(store_path)
            )
        if cli:
            outputs["connector run"] = _cli(
                "run", module, "--no-store", "-c", json.dumps(connection),
                "-p", json.dumps(parameters), "--context", json.dumps(context),
            )  # fmt: skip
    outputs["logs"] = "\n".join(logs.lines)
    return outputs
