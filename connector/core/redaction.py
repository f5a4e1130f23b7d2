"""Redaction: every form a secret can take in text, and the one chokepoint it passes.

A connection's secrets (the write key, the auth header built from it) can reach text
the engine emits in many shapes: raw; base64 of ``key:``; inside a JSON string (``"``
and ``\\`` escaped, or ``\\u00e9``), inside a JSON string inside a JSON string (a body
kept as text, then stored as JSON: every backslash doubled again); URL-encoded in a
path or query (``%22``, ``%c3%a9`` or ``%C3%A9``, a space as ``%20`` or ``+``, and
``%2522`` when encoded twice); or as Python's ``repr`` writes it (``\\'``, ``\\xe9``).
Listing each combination would never end, so a :class:`Redactor` matches each
*character* of a secret under those layers at once, in any combination: a ``"`` is a
run of backslashes (raw or ``%5C``) then ``"``, ``%22``, ``\\u0022`` or ``\\x22``. The
depth is bounded, for linear time on hostile text: runs of up to 128 backslashes (seven
layers of JSON or repr escaping) and up to 16 layers of URL encoding. ASCII letters and
digits are the exception: no encoder escapes them, so they match only as themselves,
and a secret's longest run of them is a cheap literal pre-check before the pattern runs
at all.

The chokepoint: each Redactor, once built, registers itself here (weakly: it lives as
long as its connection). :func:`redact_text` and :func:`redact_data` apply every live
one; the engine routes through them every text that leaves it: error messages
(:class:`connector.errors.RunError`), every log record of its own loggers and of httpx
and httpcore (:mod:`connector.core.logs`), each column of the incomplete-executions
store, and the CLI's stdout and stderr. A process that prints after its connections
are gone (the CLI reports an error after the engine closed) calls
:func:`pin_redactors` first, so they are kept for its lifetime.

Secrets shorter than eight characters are not searched for: a short one (``test``)
would match ordinary words in the data and change what builders receive.
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from connector.core.jsondata import find_null

__all__ = [
    "REDACTED",
    "RedactingWriter",
    "Redactor",
    "fewest_anchors",
    "pin_redactors",
    "redact_data",
    "redact_text",
    "secret_pattern",
]

REDACTED = "[REDACTED]"
#: Secrets shorter than this are not searched for in text (see the module docstring).
MIN_SECRET = 8
#: Shortest literal run of letters and digits used as a pre-check; a secret form with
#: none as long is matched by its pattern alone.
_MIN_ANCHOR = 4

#: How deep the escaping layers go that are searched. URL encoding: 16 layers of ``%25``.
#: Backslashes: a run of up to 128 (seven layers of JSON or repr escaping make 127 of
#: one). Bounded so that hostile text (a run of 100,000 backslashes) costs linear time:
#: the regex engine tries a match at each position of a run.
_URL_DEPTH = 16
_BACKSLASH_RUN = 128
#: One percent sign at any URL-encoding depth (%, %25, %2525, ...).
_PCT = rf"%(?:25){{0,{_URL_DEPTH}}}"
#: One backslash, as itself or URL-encoded (%5C, %255C, ...).
_BS = rf"(?:\\|{_PCT}5[cC])"
#: A run of backslashes, possessive (never gives one back: see _char_pattern).
_RUN = rf"{_BS}{{0,{_BACKSLASH_RUN}}}+"
#: Where a match may not start: inside a run of backslashes (its first one starts it),
#: raw or URL-encoded up to three times (deeper runs cost the bound above per position).
_NOT_IN_RUN = r"(?<!\\)(?<!%5[cC])(?<!%255[cC])(?<!%25255[cC])"
#: Escapes with a letter of their own (JSON: \b \f \n \r \t; repr: \n \r \t, \x0b ...).
_NAMED = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t", "\v": "v", "\a": "a"}
_ALNUM = re.compile(r"[A-Za-z0-9]+")


def _hex(number: int, width: int) -> str:
    """``number`` as ``width`` hex digits, each matching either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in f"{number:0{width}x}")


def _char_pattern(char: str) -> str:
    """A regex matching ``char`` under JSON, URL and repr layers (to the bounds above): a run of
    backslashes (each raw or URL-encoded), then the character as itself,
    percent-encoded, or as the rest of a backslash escape (``u00e9``, ``x22``, ``n``).

    The run is possessive (``*+``): it never gives a backslash back, so a long run in
    hostile text costs linear time, never a backtracking search over its splits. So
    the escapes' own backslash is part of the run, and ``u00e9`` after no backslash
    matches too (an over-match that only ever redacts more)."""
    if char.isascii() and char.isalnum():
        return char  # no encoder escapes letters and digits
    if char == "\\":
        return _BS + _RUN  # \, \\, %5C, %5C%5C, %255C, ...
    code = ord(char)
    # The character itself, or the percent-encoding of each of its UTF-8 bytes (upper
    # or lower hex, %25 layers).
    alternatives = [re.escape(char)]
    utf8 = char.encode("utf-8", "surrogatepass")
    alternatives.append("".join(_PCT + _hex(byte, 2) for byte in utf8))
    # \uXXXX (JSON, ascii()), as a surrogate pair beyond the BMP; \xXX and \UXXXXXXXX
    # (repr, ascii()); the named escapes.
    if code <= 0xFFFF:
        alternatives.append("u" + _hex(code, 4))
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        alternatives.append("u" + _hex(high, 4) + _RUN + "u" + _hex(low, 4))
        alternatives.append("U" + _hex(code, 8))
    if code <= 0xFF:
        alternatives.append("x" + _hex(code, 2))
    if char in _NAMED:
        alternatives.append(_NAMED[char])
    if char == " ":
        alternatives.append(r"\+")  # form encoding
        alternatives.append(_PCT + "2[bB]")  # ... then URL-encoded
    return _RUN + "(?:" + "|".join(alternatives) + ")"


def secret_pattern(form: str) -> str:
    """A regex matching ``form`` in any of its escaped forms (to the bounds above). A run of
    backslashes in ``form`` is one run in the pattern (how many there are is not
    told apart: the run's pattern takes any number)."""
    form = re.sub(r"\\+", r"\\", form)
    pattern = "".join(_char_pattern(char) for char in form)
    return pattern if form[:1].isascii() and form[:1].isalnum() else _NOT_IN_RUN + pattern


def _forms(secret: str) -> set[str]:
    """The secret, and the base64 forms an auth header builds from it."""
    forms = {secret}
    for suffix in (":", ""):
        raw = (secret + suffix).encode("utf-8", "surrogatepass")
        standard = base64.b64encode(raw).decode("ascii")
        forms.update(
            (standard, standard.rstrip("="), base64.urlsafe_b64encode(raw).decode("ascii"))
        )
    return forms


#: Anchors that start alike are searched by their shared start when it is this long
#: (a secret's base64 forms with and without a trailing ``:`` differ only at their end).
_SHARED_START = 12


def fewest_anchors(anchors: Iterable[str]) -> tuple[str, ...]:
    """Anchors that find at least what ``anchors`` find, searched fewer times: text
    that holds an anchor holds each of its substrings, so a run of anchors sharing a
    start of :data:`_SHARED_START` characters or more is searched by that start, and an
    anchor that holds another is searched by the other. (Each anchor is a pre-check:
    text it finds then meets the full patterns, so finding more is never wrong.)"""
    merged: list[str] = []
    for anchor in sorted(anchors):
        if merged:
            last = merged[-1]
            shared = 0
            while shared < min(len(last), len(anchor)) and last[shared] == anchor[shared]:
                shared += 1
            if shared >= _SHARED_START:
                merged[-1] = last[:shared]
                continue
        merged.append(anchor)
    return tuple(a for a in merged if not any(b != a and b in a for b in merged))


_NOT_CLEAN = object()


class Redactor:
    """Replaces every form of the given secrets in text and in JSON-like data."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET:
                forms |= _forms(secret)
        #: The patterns' source; compiled on first need (most text fails the anchor
        #: pre-check, and compiling is the costly part of a connection's redactor).
        self._source: str | None = None
        self._pattern: re.Pattern[str] | None = None
        self._bytes_pattern: re.Pattern[bytes] | None = None
        anchors: set[str] = set()
        self._anchored = True
        if forms:
            ordered = sorted(forms, key=len, reverse=True)
            self._source = "|".join(secret_pattern(form) for form in ordered)
            for form in ordered:
                runs = _ALNUM.findall(form)
                longest = max(runs, key=len) if runs else ""
                if len(longest) >= _MIN_ANCHOR:
                    anchors.add(longest)
                else:
                    self._anchored = False  # this form is always searched in full
        self._anchors = fewest_anchors(anchors)
        self._byte_anchors = tuple(a.encode("ascii") for a in self._anchors)
        if self._source is not None:
            _register(self)

    def __call__(self, text: str) -> str:
        if self._source is None:
            return text
        if self._anchored and not any(anchor in text for anchor in self._anchors):
            return text
        pattern = self._pattern
        if pattern is None:
            pattern = self._pattern = re.compile(self._source)
        return pattern.sub(REDACTED, text)

    def clean_bytes(self, data: bytes) -> bool:
        """Whether ``data`` (serialised JSON, say) holds no form of a secret."""
        if self._source is None:
            return True
        if self._anchored and not any(anchor in data for anchor in self._byte_anchors):
            return True
        pattern = self._bytes_pattern
        if pattern is None:
            source = self._source.encode("utf-8", "surrogatepass")
            pattern = self._bytes_pattern = re.compile(source)
        return pattern.search(data) is None

    def data(self, value: Any) -> Any:
        """A fresh copy of ``value`` with secrets replaced in every string, keys included.

        Always a copy: bundles handed to hosts never share objects with the engine (its
        templates' scope) or with the caller's input, so editing one changes nothing else.
        """
        copy = self._clean_copy(value)
        return self._walk(value) if copy is _NOT_CLEAN else copy

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
            return self(value)
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


# -- the chokepoint -------------------------------------------------------------------

_LIVE: weakref.WeakSet[Redactor] = weakref.WeakSet()
_PINNED: list[Redactor] = []
_PIN = threading.Event()
_LOCK = threading.Lock()


def _register(redactor: Redactor) -> None:
    with _LOCK:
        _LIVE.add(redactor)
        if _PIN.is_set():
            _PINNED.append(redactor)


@contextlib.contextmanager
def pin_redactors() -> Iterator[None]:
    """While inside, keep every redactor built, even after its connection is gone.

    For a short-lived process (the CLI) that prints after its engine closed; a
    long-lived host does not need it, and leaving the block frees what it kept.
    """
    _PIN.set()
    try:
        yield
    finally:
        with _LOCK:
            _PIN.clear()
            _PINNED.clear()


def _live() -> list[Redactor]:
    with _LOCK:
        return list(_LIVE)


def redact_text(text: str) -> str:
    """``text`` with every live connection's secrets replaced, in every form."""
    for redactor in _live():
        text = redactor(text)
    return text


def redact_data(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with every live connection's secrets replaced in
    every string, at any depth."""
    redactors = _live()
    if not redactors:
        return value
    for redactor in redactors:
        value = redactor.data(value)
    return value


class RedactingWriter:
    """A text stream that writes through :func:`redact_text` (the CLI's stdout and
    stderr), so nothing the process prints can carry a live secret."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
