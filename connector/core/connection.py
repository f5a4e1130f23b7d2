"""Connections: a user's connection values, checked once and turned into what runs need.

A :class:`Connection` holds the validated fields, the base URL, the precomputed auth
headers and a :class:`~connector.core.redaction.Redactor` that knows every form in which
the secrets could leak (raw, base64 of ``key:``, the whole header value, each escaped
at any depth). Secret values are kept out of the
connection's ``public`` view, which is the only one module templates see, and out of
``repr``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from connector.core.auth import build_auth_headers
from connector.core.redaction import REDACTED, Redactor
from connector.core.registry import LoadedApp
from connector.core.validation import validate_parameters
from connector.core.values import Values
from connector.errors import DataError, Fault, InvalidConfigurationError
from connector.templating.templates import RENDER_FAILURES, describe_error

__all__ = ["REDACTED", "Connection", "Redactor", "RequestHead"]


#: A request's method, URL, headers (auth not included) and query, rendered and checked.
RequestHead = tuple[str, str, dict[str, str], dict[str, Any]]


class Connection:
    """A validated connection for one app."""

    __slots__ = (
        "_auth_names",
        "_code_values",
        "app",
        "app_headers",
        "app_query",
        "auth_headers",
        "base_url",
        "public",
        "redact",
        "request_heads",
        "timeout",
    )

    def __init__(self, app: LoadedApp, values: Mapping[str, Any] | None) -> None:
        self.app = app
        spec = app.manifest.connection
        _check_encodable(values or {})
        secret_values = [
            str(v)
            for k, v in (values or {}).items()
            if k in app.secret_fields and isinstance(v, str | int | float)
        ]
        # Credentials written into a URL value (https://user:key@host) are secrets too,
        # for the messages below: such a base URL is refused, never echoed.
        secret_values += _url_credentials(values or {})
        try:
            validated = validate_parameters(spec.fields, [], values or {})
        except DataError as exc:
            redact = Redactor(secret_values)
            faults = [
                Fault(fault.field, fault.rule, f"connection: {redact(fault.message)}")
                for fault in exc.faults
            ]
            raise InvalidConfigurationError(
                f"connection: {redact(exc.message)}", field=exc.field, faults=faults
            ) from None
        self.public = Values((k, v) for k, v in validated.items() if k not in app.secret_fields)
        try:
            self.auth_headers = build_auth_headers(spec.auth, validated)
            base = app.base_url.render({"connection": self.public})
        except RENDER_FAILURES as exc:
            raise InvalidConfigurationError(
                f"connection: {Redactor(secret_values)(describe_error(exc))}"
            ) from None
        _check_auth_headers(self.auth_headers, validated, Redactor(secret_values))
        self._auth_names = frozenset(name.lower() for name in self.auth_headers)
        # Built once the auth headers exist: every form the secrets can take, theirs too.
        self.redact = Redactor([*secret_values, *self.auth_headers.values()])
        self.base_url = _check_base_url(str(base))
        self.app_headers, self.app_query = _app_parts(app, self.public, self.auth_headers)
        #: The whole connection, secrets included, kept only for an app's signer code.
        signer = app.code.signer if app.code is not None else None
        self._code_values = dict(validated) if signer is not None else None
        self.timeout = app.manifest.timeout
        #: Per module id with a literal request head: the module and its checked method,
        #: URL, headers and query (see prepare.request_head). Bounded by the module count.
        self.request_heads: dict[str, tuple[Any, RequestHead]] = {}

    def __repr__(self) -> str:
        return f"Connection(app={self.app.name!r}, base_url={self.base_url!r})"

    def sign(self, request: Any) -> Any:
        """``request`` with the app's signer's headers added (treated as auth: never in
        bundles, redacted in dry runs); the request itself when the app has no signer."""
        code = self.app.code
        if code is None or code.signer is None or self._code_values is None:
            return request
        from connector.core.appcode import SignerRequest

        body = request.content or b""
        view = SignerRequest(request.method, request.url, request.query, request.headers, body)
        try:
            added = code.signer(view, dict(self._code_values))
        except Exception as exc:  # the app's code failed: a configuration fault, redacted
            raise InvalidConfigurationError(
                f"the app's signer {code.signer_name} failed: "
                f"{self.redact(f'{type(exc).__name__}: {exc}')}"
            ) from None
        if not isinstance(added, Mapping):
            raise InvalidConfigurationError(
                f"the app's signer {code.signer_name} must return a mapping of headers"
            )
        return request._replace(
            headers={**request.headers, **{str(k): str(v) for k, v in added.items()}}
        )

    def is_auth_header(self, name: str) -> bool:
        """Whether ``name`` is one of the headers the connection's auth sets."""
        return name.lower() in self._auth_names

    def without_auth(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` less the auth ones: what may be shown, stored or mapped."""
        return {k: v for k, v in headers.items() if k.lower() not in self._auth_names}

    @staticmethod
    def cache_key(values: Mapping[str, Any] | None) -> Any:
        """A hashable key for these values (cheap for the usual flat connection)."""
        if not values:
            return ()
        try:
            # Insertion order, unsorted: the same values in another order only cost a
            # second cache entry, while sorting costs every run.
            key = tuple(values.items())
            hash(key)
            return key
        except TypeError:
            return json.dumps(values, sort_keys=True, default=str)


def _app_parts(
    app: LoadedApp, public: Mapping[str, Any], auth: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, Any]]:
    """The app-wide headers and query (``headers``/``query`` in app.json), rendered
    once per connection over its public fields and checked like a module's."""
    if app.headers is None and app.query is None:
        return {}, {}
    from connector._version import __version__
    from connector.core.request import check_headers, normalize_query

    scope = {
        "connection": public,
        "engine": {"name": "connector", "version": __version__},
        "app": app.info,
    }
    try:
        headers = app.headers.render(scope) if app.headers is not None else {}
        query = app.query.render(scope) if app.query is not None else {}
        return (
            check_headers(headers or {}, auth, None) if headers else {},
            normalize_query(query, None) if query else {},
        )
    except RENDER_FAILURES as exc:
        raise InvalidConfigurationError(
            f"the app's headers or query: {describe_error(exc)}"
        ) from None
    except DataError as exc:
        raise InvalidConfigurationError(f"the app's headers or query: {exc.message}") from None


def _check_encodable(values: Mapping[str, Any]) -> None:
    """Refuse text that UTF-8 cannot encode (a lone surrogate, from a broken decoder):
    it could neither be sent nor searched for, so it fails here, named, not later as a
    UnicodeEncodeError deep in auth or the HTTP client."""
    for name, value in values.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidConfigurationError(
                    f"connection: field {name!r} is not valid text: it holds a lone "
                    "surrogate, which UTF-8 cannot encode",
                    field=str(name),
                ) from None


def _check_auth_headers(
    headers: Mapping[str, str], values: Mapping[str, Any], redact: Redactor
) -> None:
    """Refuse auth headers the HTTP client cannot send (httpx encodes header values as
    ASCII; h11 refuses control characters and edge whitespace): a non-ASCII secret would
    pass a dry run, then fail the real run with a UnicodeEncodeError. Refused here, as
    the connection's fault, naming the field at fault (never quoting it: a secret)."""
    from connector.core.request import header_value_fault

    for header, value in headers.items():
        fault = header_value_fault(value)
        if fault is None:
            continue
        culprits = [
            str(name)
            for name, field_value in values.items()
            if isinstance(field_value, str)
            and field_value
            and field_value in value
            and header_value_fault(field_value) is not None
        ]
        subject = f"field {culprits[0]!r}" if culprits else "the value the auth template gives"
        raise InvalidConfigurationError(
            redact(
                f"connection: {subject} cannot be sent in the {header!r} auth header: "
                f"the header {fault}"
            ),
            field=culprits[0] if culprits else None,
        )


def _url_credentials(values: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for value in values.values():
        if isinstance(value, str) and "@" in value:
            try:
                parts = urlsplit(value.strip())
                found += [p for p in (parts.username, parts.password) if p]
                found += [parts.netloc.rpartition("@")[0]]
            except ValueError:
                continue
    return [f for f in found if f]


def _shown(text: str) -> str:
    """A base URL as error messages may quote it: without its user information."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return "(unparseable)" if "@" in text else repr(text)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    return repr(parts.geturl())


def _check_base_url(text: str) -> str:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        detail = str(exc) if "@" not in text else "not a valid URL"
        raise InvalidConfigurationError(f"base URL {_shown(text)} is invalid: {detail}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InvalidConfigurationError(
            f"base URL {_shown(text)} must be an absolute http(s) URL", field="host"
        )
    if "@" in url.netloc or url.query or url.fragment:
        raise InvalidConfigurationError(
            f"base URL {_shown(text)} must not carry credentials, a query or a fragment",
            field="host",
        )
    return text.rstrip("/")
