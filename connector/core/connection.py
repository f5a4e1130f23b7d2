"""Connections: a user's connection values, checked once and turned into what runs need.

A :class:`Connection` holds the validated fields, the base URL, the precomputed auth
headers and a :class:`Redactor` that knows every form in which the secrets could leak
(raw, base64 of ``key:``, the whole header value). Secret values are kept out of the
connection's ``public`` view, which is the only one module templates see, and out of
``repr``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from connector.core.auth import build_auth_headers
from connector.core.jsondata import find_null
from connector.core.logs import register_redactor
from connector.core.registry import LoadedApp
from connector.core.validation import Values, validate_parameters
from connector.errors import DataError, InvalidConfigurationError
from connector.templating.templates import RENDER_FAILURES, describe_error

__all__ = ["REDACTED", "Connection", "Redactor", "RequestHead"]

REDACTED = "[REDACTED]"
#: Secrets shorter than this are not searched for in text: a short one ("test") would
#: match ordinary words in the data ("Contest") and change what builders receive.
_MIN_SECRET = 8


#: A request's method, URL, headers (auth not included) and query, rendered and checked.
RequestHead = tuple[str, str, dict[str, str], dict[str, Any]]


_NOT_CLEAN = object()


class Redactor:
    """Replaces every known secret form in text and in JSON-like data."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < _MIN_SECRET:
                continue
            forms.add(secret)
            for suffix in (":", ""):
                raw = (secret + suffix).encode()
                forms.add(base64.b64encode(raw).decode("ascii"))
                forms.add(base64.urlsafe_b64encode(raw).decode("ascii"))
                forms.add(base64.b64encode(raw).decode("ascii").rstrip("="))
            # As JSON writers escape it inside a string: the standard library's ASCII
            # escapes, its raw UTF-8, and orjson's (raw UTF-8, `"`, `\` and control
            # characters escaped), which is what bundles and messages are scanned in.
            forms.add(json.dumps(secret)[1:-1])
            forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
            forms.add(orjson.dumps(secret)[1:-1].decode())
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)))
            if forms
            else None
        )
        # For detecting (not replacing) a secret, a form that contains another form is
        # redundant ("Basic <b64>" contains "<b64>"): scan for the minimal set only.
        minimal = [f for f in forms if not any(o != f and o in f for o in forms)]
        self._byte_forms = tuple(f.encode() for f in minimal)
        if self._pattern is not None:
            register_redactor(self)

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)

    def data(self, value: Any) -> Any:
        """A fresh copy of ``value`` with secrets replaced in every string, keys included.

        Always a copy: bundles handed to hosts never share objects with the engine (its
        templates' scope) or with the caller's input, so editing one changes nothing else.
        """
        copy = self._clean_copy(value)
        return self._walk(value) if copy is _NOT_CLEAN else copy

    def clean_bytes(self, data: bytes) -> bool:
        """Whether ``data`` (serialised JSON) holds no form of a secret."""
        return not any(form in data for form in self._byte_forms)

    def data_many(self, values: list[Any]) -> list[Any]:
        """``[self.data(v) for v in values]``, in one pass when all are clean (a batch
        run's output bundles: one serialise, scan and parse for the whole batch)."""
        copies = self._clean_copy(values)
        return [self.data(v) for v in values] if copies is _NOT_CLEAN else copies

    def _clean_copy(self, value: Any) -> Any:
        """One C-speed pass: serialise, scan, and when clean parse back as the copy;
        ``_NOT_CLEAN`` when a secret form (or a NaN, which orjson writes as null, or
        anything orjson refuses) needs the walk."""
        try:
            dumped = orjson.dumps(value, default=str)
            if self.clean_bytes(dumped) and find_null(dumped) is None:
                return orjson.loads(dumped)
        except (TypeError, ValueError, RecursionError, orjson.JSONEncodeError):
            pass
        return _NOT_CLEAN

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self(value) if self._pattern is not None else value
        if isinstance(value, Mapping):
            return {self._walk(str(k)): self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v) for v in value]
        if value is None or isinstance(value, bool | int | float):
            return value  # as is: NaN and integers over 64 bits are why the walk runs
        # Anything else (a date, a UUID, a dataclass, an object of the caller's): what
        # the one-pass copy gives for it, so a bundle does not change with the path its
        # copy took, and never hands back an object of the caller's.
        try:
            return self._walk(orjson.loads(orjson.dumps(value, default=str)))
        except (TypeError, ValueError, RecursionError):
            return self(str(value))


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
        secret_values = [
            str(v)
            for k, v in (values or {}).items()
            if k in app.secret_fields and isinstance(v, str | int | float)
        ]
        try:
            validated = validate_parameters(spec.fields, [], values or {})
        except DataError as exc:
            raise InvalidConfigurationError(
                f"connection: {Redactor(secret_values)(exc.message)}", field=exc.field
            ) from None
        self.public = Values((k, v) for k, v in validated.items() if k not in app.secret_fields)
        try:
            self.auth_headers = build_auth_headers(spec.auth, validated)
            base = app.base_url.render({"connection": self.public})
        except RENDER_FAILURES as exc:
            raise InvalidConfigurationError(
                f"connection: {Redactor(secret_values)(describe_error(exc))}"
            ) from None
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


def _check_base_url(text: str) -> str:
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise InvalidConfigurationError(f"base URL {text!r} is invalid: {exc}") from None
    if url.scheme not in ("http", "https") or not url.hostname:
        raise InvalidConfigurationError(
            f"base URL {text!r} must be an absolute http(s) URL", field="host"
        )
    if url.username is not None or url.query or url.fragment:
        raise InvalidConfigurationError(
            f"base URL {text!r} must not carry credentials, a query or a fragment", field="host"
        )
    return text.rstrip("/")
