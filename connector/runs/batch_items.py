"""A batch item while its request is out: what it holds, and how its bundles are made.

A batch holds thousands of items between preparing them and the answer, so what an item
keeps alive matters (every object costs cache misses and garbage-collector passes on the
items after it; figures in docs/performance.md). A :class:`PendingItem` holds only what
its output template needs: the body, the run, the parameters only if the template names
them, and the request head only when it differs from the batch's.

Most action modules' output is ``{{ request.body | merge(X) }}``: what was sent, plus
something from the answer. When X reads only what all items of a batch share (the
response, the connection, the engine and app), it is rendered once per batch response.
Each bundle is then the template's own result, ``{**body, **X}``. And when the body is a
JSON object the engine serialised with orjson (:func:`~connector.core.jsondata.encode` says
which wrote it), the item holds only the body's bytes. Those bytes are untracked by the
collector. The bundle's JSON is then those bytes with X's members added, and the
redacting copy (scan, then one parse) reads that JSON directly, without a render or a
serialisation per item.

Everything else takes the general path: the output template rendered per item, then
:meth:`~connector.core.connection.Redactor.data_many`. That includes a secret anywhere in a
chunk, a null in X (for that response's items), an X that fails or is no object, and a
body the standard library wrote. Tests hold every path to the bundles a single run
gives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from connector.core.jsondata import find_null
from connector.core.prepare import output_bundles
from connector.errors import RunError

if TYPE_CHECKING:
    from connector.core.connection import Connection
    from connector.core.prepare import Message
    from connector.core.registry import LoadedModule

__all__ = ["BatchResult", "BundleMaker", "BundlesJSON", "PendingItem", "release"]

#: One result per input: the output bundles, or the error of that input.
BatchResult = list[dict[str, Any]] | RunError


class BundlesJSON(NamedTuple):
    """An input's output bundles as the JSON text of their list, for a host that only
    writes them out (``run --batch``): made from the message's bytes, never parsed. It
    reads back as the bundles :class:`BundleMaker` would otherwise give (a property
    test holds the two to each other)."""

    data: bytes


#: The scope names whose values every item of a batch shares.
_PER_BATCH = frozenset({"response", "connection", "engine", "app"})
#: What an output template that never reads ``parameters`` is given in their place.
_UNREAD: Mapping[str, Any] = MappingProxyType({})
#: A slot's body is in its content's bytes (see PendingItem).
_IN_CONTENT: Any = object()
#: Makes a BundlesJSON without its generated ``__new__`` (one per item).
_tuple_new = tuple.__new__


@dataclass(slots=True)
class PendingItem:
    """One input's place in the output order, and what it keeps while its batch is out
    (slotted: a batch holds thousands)."""

    result: BatchResult | BundlesJSON | None = None
    #: The rendered body; or ``_IN_CONTENT``, and its bytes in ``content``.
    body: Any = None
    content: bytes | None = None
    run: Mapping[str, Any] | None = None
    parameters: Mapping[str, Any] | None = None
    #: ``(method, url, headers without auth)`` when it differs from the batch's usual.
    head: tuple[str, str, dict[str, str]] | None = None
    #: The batch's response, once answered: the output bundles are made from it only
    #: when the result is about to be yielded.
    view: dict[str, Any] | None = None


def release(slot: PendingItem) -> None:
    """Let go of what the slot kept for its output."""
    slot.body = slot.content = slot.run = slot.parameters = slot.head = None


class BundleMaker:
    """What one batch run's items keep for their bundles, and the bundles made."""

    def __init__(self, module: LoadedModule, conn: Connection, as_json: bool = False) -> None:
        self.module = module
        self.conn = conn
        #: Whether bundles made from bytes are handed over as their JSON
        #: (:class:`BundlesJSON`) instead of parsed: for a host that writes them out.
        self.as_json = as_json
        #: Whether items keep their parameters (only if the output names them).
        self.keeps_parameters = module.output_reads_parameters
        names = module.output_merged_names
        #: Whether the output is ``request.body | merge(X)`` with X the same for every
        #: item of a batch response (rendered once per response).
        self.merge_per_batch = names is not None and names <= _PER_BATCH
        #: ... over a body the engine serialises (an object or list in the manifest):
        #: bundles of object bodies can then be made from the body's bytes.
        self.from_content = self.merge_per_batch and module.body_is_json
        self._view: dict[str, Any] | None = None
        self._merged: dict[str, Any] | None = None
        self._merged_json: bytes | None = None
        #: X's keys as they open a member (``"key":``), to find a body that has one too.
        self._merged_keys: tuple[bytes, ...] = ()

    def hold_for_output(self, slot: PendingItem, message: Message, content: bytes) -> None:
        """Keep what the item's output needs while its batch is out (``content`` is the
        message as the batch sends it)."""
        if self.from_content and message.by_orjson and type(message.json_body) is dict:
            # orjson wrote it: read back, it is what the copy makes of the body
            slot.body, slot.content = _IN_CONTENT, content
        else:
            slot.body = message.json_body
        slot.run = message.run
        if self.keeps_parameters:
            slot.parameters = message.parameters

    def make_bundles(
        self, chunk: list[PendingItem], method: str, url: str, headers_shown: dict[str, str]
    ) -> None:
        """Give each answered slot of ``chunk`` its result: its bundles, redacted and
        copied in one pass, or its own error. ``method``, ``url`` and ``headers_shown`` (headers
        without auth) are the batch's usual request head."""
        rendered: list[list[Any]] = []
        done: list[PendingItem] = []
        # The chunk's bundles as one JSON text, ``[[b1],[b2],...]``, in parts joined
        # once: each bundle is its body's bytes without the closing brace (a view, not
        # a copy), then X's members and the separator.
        parts: list[bytes | memoryview] = [b"[["]
        from_bytes: list[tuple[PendingItem, bytes, dict[str, Any]]] = []
        #: Per item of from_bytes, its bundle's JSON in pieces (as_json only).
        pieces: list[tuple[bytes | memoryview, ...]] = []
        last_view: dict[str, Any] | None = None
        merged_json: bytes | None = None
        members = b""
        for slot in chunk:
            view, slot.view = slot.view, None
            assert view is not None and slot.run is not None
            if slot.body is _IN_CONTENT:
                content = slot.content
                assert content is not None
                if view is not last_view:  # a chunk's items nearly always share one
                    last_view, merged_json = view, self._merged_bytes(view)
                    members = _members(merged_json)
                if merged_json is not None:
                    release(slot)
                    if content == b"{}":
                        parts += (merged_json, b"],[")
                        if self.as_json:
                            pieces.append((merged_json,))
                    else:
                        body = memoryview(content)[:-1]
                        parts += (body, members, b"],[")
                        if self.as_json:
                            pieces.append((body, members))
                    from_bytes.append((slot, content, view))
                    continue
                slot.body = orjson.loads(content)  # as the copy makes it (see keep)
            if self.merge_per_batch and type(slot.body) is dict:
                merged = self._merged_object(view)
                if merged is not None:
                    rendered.append([{**slot.body, **merged}])  # the template's result
                    release(slot)
                    done.append(slot)
                    continue
            head = slot.head
            request = {
                "method": method if head is None else head[0],
                "url": url if head is None else head[1],
                "headers": headers_shown if head is None else head[2],
                "body": slot.body,
            }
            parameters = slot.parameters if slot.parameters is not None else _UNREAD
            run = slot.run
            release(slot)
            try:
                rendered.append(
                    output_bundles(self.module, self.conn, parameters, run, request, view)
                )
            except RunError as exc:
                slot.result = exc
                continue
            done.append(slot)
        if from_bytes:
            # No null to look for: orjson wrote these bodies without one (encode hands
            # anything with "null" in it to the standard library, and says so), and
            # X's JSON was checked once (see _merged_object). Secrets are looked for in
            # all of it, X's members included.
            parts[-1] = b"]]"
            joined = b"".join(parts)
            if self.conn.redact.clean_bytes(joined) and self.as_json:
                keys: tuple[bytes, ...] = ()
                last_view = None
                for (slot, content, view), own in zip(from_bytes, pieces, strict=True):
                    data = b"".join((b"[", *own, b"]"))
                    if view is not last_view:
                        last_view = view
                        self._merged_object(view)  # X's keys, for the check below
                        keys = self._merged_keys
                    for key in keys:
                        if key in content:
                            # A key of both would be written twice: parsed, it is the
                            # merge's own result (first place, last value), written once.
                            slot.result = orjson.loads(data)
                            break
                    else:
                        slot.result = _tuple_new(BundlesJSON, (data,))
            elif self.conn.redact.clean_bytes(joined):
                for (slot, _, _), bundles in zip(from_bytes, orjson.loads(joined), strict=True):
                    slot.result = bundles
            else:  # a secret somewhere: the general copy, which replaces it
                for slot, content, view in from_bytes:
                    merged = self._merged_object(view)
                    assert merged is not None
                    rendered.append([{**orjson.loads(content), **merged}])
                    done.append(slot)
        for slot, bundles in zip(done, self.conn.redact.data_many(rendered), strict=True):
            slot.result = bundles

    def _merged_object(self, view: dict[str, Any]) -> dict[str, Any] | None:
        """X of the output ``request.body | merge(X)``, rendered once per response;
        None when it fails or is no object: every item then takes the general path,
        which reports the failure as its own."""
        if view is not self._view:
            self._view, self._merged_json = view, None
            request = {"method": "", "url": "", "headers": {}, "body": {}}
            try:
                [merged] = output_bundles(self.module, self.conn, _UNREAD, {}, request, view)
            except (RunError, ValueError):
                merged = None
            self._merged = merged if isinstance(merged, dict) else None
            if self._merged is not None:
                # As the redacting copy would write it. What orjson refuses, or JSON
                # with a null (orjson writes NaN so), takes the general path.
                with contextlib.suppress(TypeError, ValueError, RecursionError):
                    written = orjson.dumps(self._merged, default=str)
                    if find_null(written) is None:
                        self._merged_json = written
                        self._merged_keys = tuple(
                            orjson.dumps(str(key)) + b":" for key in self._merged
                        )
        return self._merged

    def _merged_bytes(self, view: dict[str, Any]) -> bytes | None:
        """X as JSON, or None (then the general path)."""
        self._merged_object(view)  # refreshes _merged_json with it
        return self._merged_json


def _members(merged: bytes | None) -> bytes:
    """What follows a body's members for ``{**body, **merged}`` as JSON: X's members
    and the closing brace. A key of both then appears twice, and JSON readers (orjson,
    like a dict being filled) keep its first place and its last value: the merge's own
    result."""
    if merged is None or merged == b"{}":
        return b"}"
    return b"," + merged[1:]
