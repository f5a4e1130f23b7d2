"""Message checks for universal modules: what an app's message endpoints require.

An app's own modules (Segment's Track, Identify, ...) check their parameters before
anything is sent: a message needs ``userId`` or ``anonymousId``, a track its ``event``,
and it must fit in 32 KB. A universal module (Make an API Call) sends whatever body a
builder maps, to whatever path: without more, a call to ``/v1/track`` would skip every
one of those checks, and Segment answers 200 to messages it then drops. So an app
declares its message endpoints and their rules in its manifest (``messages``, see
:class:`~connector.format.manifest.MessagesSpec`), and a universal module's request to
one of them is checked here before it is sent: a message posted alone to its type's
path, and each item of a batch posted to the app's ``batch.url`` (by its type key,
within the batch's item and byte limits). The engine knows no app: the paths, keys and
limits all come from the manifest.

A path matches whatever a server might read as it: percent-decoded, without a trailing
slash, in any letter case.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from connector.core.jsondata import encode
from connector.errors import DataError
from connector.format.manifest import MessageRule, MessagesSpec

__all__ = ["check_message_request"]

#: Faults named in one error at most (a 2,500-item batch may have many).
_MAX_FAULTS = 20


def _key(path: str) -> str:
    return unquote(path.split("?", 1)[0].split("#", 1)[0]).rstrip("/").lower()


def check_message_request(
    spec: MessagesSpec,
    relative_path: str,
    batch_path: str | None,
    batch_limits: tuple[str, int, int] | None,
    body: Any,
    content: bytes | None,
    field: str | None,
) -> None:
    """Raise a DataError naming every fault when ``relative_path`` (the request's path
    under the base URL) is a message endpoint of ``spec`` and ``body`` breaks its rules.

    ``batch_path`` is the app's batch endpoint; ``batch_limits`` its items key, most
    items and most bytes. ``content`` is the body as it will be sent.
    """
    key = _key(relative_path)
    faults: list[str] = []
    batch_keys = {_key(p) for p in spec.batch_paths} | ({_key(batch_path)} if batch_path else set())
    if key in batch_keys and batch_limits is not None:
        _check_batch(spec, relative_path.split("?", 1)[0], batch_limits, body, content, faults)
    else:
        for type_name, rule in spec.types.items():
            if key == _key(rule.path):
                _check_message(spec, type_name, rule, body, "body", faults, len(content or b""))
                break
        else:
            return
    if faults:
        shown = faults[:_MAX_FAULTS]
        more = len(faults) - len(shown)
        raise DataError(
            f"the request to {relative_path.split('?', 1)[0]} is a message the app checks: "
            + "; ".join(shown)
            + (f"; and {more} more" if more else ""),
            field=field,
        )


def _check_batch(
    spec: MessagesSpec,
    path: str,
    limits: tuple[str, int, int],
    body: Any,
    content: bytes | None,
    faults: list[str],
) -> None:
    items_key, max_items, max_bytes = limits
    items = body.get(items_key) if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        faults.append(f"a batch sent to {path} must be a JSON object with a list {items_key!r}")
        return
    if len(items) > max_items:
        faults.append(
            f"body.{items_key} has {len(items):,} messages, over the limit of {max_items:,}"
        )
    if content is not None and len(content) > max_bytes:
        faults.append(f"the batch is {len(content):,} bytes, over the limit of {max_bytes:,}")
    expected = ", ".join(sorted(spec.types))
    for index, item in enumerate(items):
        where = f"body.{items_key}[{index}]"
        kind = item.get(spec.type_key) if isinstance(item, Mapping) else None
        rule = spec.types.get(kind) if isinstance(kind, str) else None
        if not isinstance(item, Mapping):
            faults.append(f"{where} must be a JSON object")
        elif rule is None:
            faults.append(
                f"{where}.{spec.type_key} is {kind!r}: unknown message type, expected one of: "
                + expected
            )
        else:
            assert isinstance(kind, str)
            _check_message(spec, kind, rule, item, where, faults, None)


def _check_message(
    spec: MessagesSpec,
    kind: str,
    rule: MessageRule,
    message: Any,
    where: str,
    faults: list[str],
    size: int | None,
) -> None:
    if not isinstance(message, Mapping):
        faults.append(f"{where} must be a JSON object, as {kind} messages are")
        return
    for name in rule.required:
        if not _has(message.get(name)):
            faults.append(f"{where}.{name} is required in {kind} messages")
    for group in rule.one_of_required:
        if not any(_has(message.get(name)) for name in group):
            names = " or ".join(f"{where}.{name}" for name in group)
            faults.append(f"{names} is required in {kind} messages")
    if spec.max_bytes is not None:
        if size is None:
            try:
                size = len(encode(message)[0])
            except (ValueError, TypeError, RecursionError):
                size = 0  # not JSON at all: the body's own check says so
        if size > spec.max_bytes:
            faults.append(
                f"{where} is {size:,} bytes, over the limit of {spec.max_bytes:,} bytes "
                f"for {kind} messages"
            )


def _has(value: Any) -> bool:
    """A value, as the modules' own required checks see one: not absent, not null, not
    empty or blank text."""
    if value is None:
        return False
    return not (isinstance(value, str) and not value.strip())
