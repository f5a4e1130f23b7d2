"""Batch runs: many bundles through one module, packed into the app's batch endpoint.

When a scenario processes a list, running a module once per item costs one request
per item. For a ``batchable`` module of an app with a ``batch`` spec, the engine
instead prepares each item exactly as a single run would (same checks, same errors),
then packs the prepared bodies into ``{"batch": [...], ...}`` requests up to the app's
limits (for Segment: 2,500 messages and 500 KB a request, 32 KB a message).

Guarantees:

* One result per input, in input order: the item's output bundles, or its error.
  An item that fails its checks (including the per-message size limit) gets its
  DataError and the rest are still sent.
* Streaming: inputs are read lazily and results are yielded as soon as their batch is
  answered, so memory stays flat in the number of bundles.
* A batch that fails after its retries gives every item in it the same error; nothing
  is dropped silently.

An app whose one endpoint already takes a list (LiveLike's ``{"events": [...]}``) sets
``unwrap``: each message body is then ``{itemsKey: [items]}`` as a single run sends it,
and the batch sends those items, not the bodies.

The bodies are joined as bytes (each item was serialised once, when prepared), so
packing costs no second serialisation. What an item keeps while its batch is out, and
how its output bundles are made then, is :mod:`connector.runs.batch_items`.
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connector.core.jsondata import dumps
from connector.core.prepare import prepare_message, prepared_from
from connector.core.request import PreparedRequest, join_url
from connector.core.types import utc_now_iso
from connector.errors import DataError, InvalidConfigurationError, RunError
from connector.runs.batch_items import BatchResult, Outputs, _Slot, drop
from connector.templating.templates import RENDER_FAILURES, describe_error

if TYPE_CHECKING:
    import asyncio

    import httpx

    from connector.core.engine import Engine, Prepared

__all__ = ["BatchResult", "abatch", "batch"]

#: Results waiting behind an unsent batch before it is sent early (bounds memory).
_MAX_PENDING = 10_000


@dataclass
class _Packer:
    """Accumulates prepared items until the next one would break a limit."""

    max_items: int
    max_bytes: int
    overhead: int
    items: list[_Slot] = field(default_factory=list)
    #: The items' serialised messages, joined as they are when the batch is sent.
    contents: list[bytes] = field(default_factory=list)
    size: int = 0

    def fits(self, content: bytes) -> bool:
        if not self.items:
            return True
        return (
            len(self.items) < self.max_items
            and self.overhead + self.size + len(self.items) + len(content) <= self.max_bytes
        )

    def add(self, slot: _Slot, content: bytes) -> None:
        self.items.append(slot)
        self.contents.append(content)
        self.size += len(content)

    def take(self) -> tuple[list[_Slot], list[bytes]]:
        taken = self.items, self.contents
        self.items, self.contents, self.size = [], [], 0
        return taken


class _BatchPlan:
    """What is fixed for one batch run: module, connection, endpoint, limits."""

    def __init__(
        self,
        engine: Engine,
        module_id: str,
        connection: Mapping[str, Any] | None,
    ) -> None:
        module = engine.registry.get(module_id)
        spec = module.app.manifest.batch
        if spec is None or not module.manifest.batchable or module.is_trigger:
            raise InvalidConfigurationError(
                f"module {module_id} cannot run in batch mode: it is not batchable or its "
                "app declares no batch endpoint"
            )
        self.engine = engine
        self.module = module
        self.module_id = module_id
        self.spec = spec
        self.connection = engine.connection(module, connection)
        assert module.app.batch_url is not None and module.app.batch_extra is not None
        self.extra = module.app.batch_extra
        scope = {"connection": self.connection.public, "engine": {}, "app": {}, "run": {}}
        try:
            path = module.app.batch_url.render(scope)
        except RENDER_FAILURES as exc:
            raise InvalidConfigurationError(
                f"the app's batch url template failed: {describe_error(exc)}"
            ) from None
        self.url = join_url(self.connection.base_url, path, None)
        self.envelope = b'{"' + spec.items_key.encode() + b'":['
        # The envelope around the items, measured once with this run's extras; the
        # slack covers extras that render a little longer for a later batch.
        self.overhead = len(self.envelope) + len(self._tail()) + 64
        #: The store that writes this run's items ahead of sending, fixed for the run
        #: (a host setting ``engine.incomplete`` mid-run changes the next run only).
        self.store = engine.incomplete if module.manifest.retry else None
        #: Headers built from templates may come in another order per item: then the
        #: order is compared too (a literal head builds every item's in one order).
        self.ordered_headers = not module.static_head
        #: What items keep for their output, and how their bundles are made.
        self.bundles = Outputs(module, self.connection)
        #: The usual item's method, URL and headers (without auth): items whose own
        #: differ keep theirs (``_Slot.head``).
        self.head: tuple[str, str, dict[str, str]] | None = None

    def packer(self) -> _Packer:
        return _Packer(self.spec.max_items, self.spec.max_bytes, self.overhead)

    def admit(
        self,
        slot: _Slot,
        parameters: Mapping[str, Any] | RunError,
        context: Mapping[str, Any] | None,
    ) -> bytes | None:
        """Prepare one input; on failure record its error in the slot and return None.

        An input that is itself a RunError (say, a line of a file that could not be
        read) is passed through as that input's result, so it keeps its place.
        """
        if isinstance(parameters, RunError):
            slot.result = parameters
            return None
        module, conn = self.module, self.connection
        try:
            message = prepare_message(module, conn, parameters, context)
        except RunError as exc:
            slot.result = exc
            return None
        own = message.content or b"null"  # a module with no body: null
        content = own if not self.spec.unwrap else self._unwrapped(message.json_body)
        if content is None:
            slot.result = DataError(
                f"the message body is not {{{self.spec.items_key!r}: [...]}} with at least "
                "one item, so the batch (unwrap) has nothing to send for it",
                field=module.part_fields.get("body"),
            )
            return None
        limit = self.spec.max_item_bytes
        if len(content) > limit:
            slot.result = DataError(
                f"the message is {len(content):,} bytes, over the batch limit of {limit:,} "
                "bytes a message",
                field=module.part_fields.get("body"),
            )
            return None
        self.bundles.keep(slot, message, own)  # the output sees the module's own body
        method, url = message.head[0], message.head[1]
        headers = message.headers  # without auth: what the output may show
        head = self.head
        if head is None:
            self.head = (method, url, headers)
        elif (
            headers != head[2]
            or (self.ordered_headers and list(headers) != list(head[2]))
            or url != head[1]
            or method != head[0]
        ):
            slot.head = (method, url, headers)
        if self.store is not None:
            slot.prepared = prepared_from(module, conn, message)
        return content

    def _unwrapped(self, body: Any) -> bytes | None:
        """``unwrap``: the items of the body's ``{itemsKey: [...]}``, as the batch's
        items (comma-joined JSON), or None when the body is not of that shape."""
        items = body.get(self.spec.items_key) if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return None
        return b",".join(dumps(item) for item in items)

    def _tail(self) -> bytes:
        """``],<extras>}``: what follows the items, with the extras rendered now."""
        run = {"timestamp": utc_now_iso()}
        try:
            extra = self.extra.render({"run": run, "connection": self.connection.public}) or {}
        except RENDER_FAILURES as exc:
            raise InvalidConfigurationError(
                f"the app's batch extra template failed: {describe_error(exc)}"
            ) from None
        fields = b"".join(b"," + dumps(key) + b":" + dumps(value) for key, value in extra.items())
        return b"]" + fields + b"}"

    def request(self, contents: list[bytes]) -> PreparedRequest:
        """The batch request for ``contents`` (a list this call may change: the
        packer's, taken). The envelope is added to the first and last items, so the
        ~500 KB body is copied once, by the join, not once more per end."""
        contents[0] = self.envelope + contents[0]
        contents[-1] += self._tail()
        content = b",".join(contents)
        headers = {"Content-Type": "application/json", **self.connection.auth_headers}
        return PreparedRequest(
            method=self.spec.method,
            url=self.url,
            headers=headers,
            query={},
            content=content,
            json_body=None,
            module_id=self.module_id,
            timeout=self.connection.timeout,
        )

    def begin(self, items: list[_Slot]) -> list[str] | None:
        """Write-ahead: store every item before the batch is sent (when a store is set)."""
        if self.store is None:
            return None
        return self.store.begin_many([_prepared(slot) for slot in items])

    def settle(
        self,
        items: list[_Slot],
        response: httpx.Response | None,
        error: RunError | None,
        execution_ids: list[str] | None = None,
    ) -> None:
        """Give every item of a sent batch its result, and settle the write-ahead rows."""
        store = self.store
        if execution_ids is not None and store is not None:
            if error is not None and error.retryable:
                for slot, execution_id in zip(items, execution_ids, strict=True):
                    own = copy.copy(error)  # each item's error names its own stored run
                    store.settle_failure(execution_id, own)
                    drop(slot)
                    slot.result = own
                return
            store.succeeded_many(execution_ids)
        if error is not None:
            for slot in items:
                drop(slot)
                slot.result = error
            return
        assert response is not None
        view = self.engine.response_view(response)
        for slot in items:
            slot.view = view

    def outputs(self, chunk: list[_Slot]) -> None:
        """Give answered items their bundles (see :meth:`Outputs.give`)."""
        assert self.head is not None  # set by the first admitted item
        self.bundles.give(chunk, *self.head)


def _prepared(slot: _Slot) -> Prepared:
    assert slot.prepared is not None
    return slot.prepared


#: Answered items whose bundles are rendered and copied together (see outputs).
_CHUNK = 32


def _ready(plan: _BatchPlan, slots: deque[_Slot]) -> Iterator[BatchResult]:
    while slots:
        head = slots[0]
        if head.view is not None:
            chunk = list(itertools.takewhile(lambda s: s.view is not None, _head(slots)))
            plan.outputs(chunk)
        result = head.result
        if result is None:
            return
        slots.popleft()
        yield result


def _head(slots: deque[_Slot]) -> Iterator[_Slot]:
    return itertools.islice(slots, _CHUNK)


def batch(
    engine: Engine,
    module_id: str,
    connection: Mapping[str, Any] | None,
    inputs: Iterable[Mapping[str, Any] | RunError],
    context: Mapping[str, Any] | None = None,
) -> Iterator[BatchResult]:
    """Run ``inputs`` through a batchable module; yields one result per input, in order."""
    plan = _BatchPlan(engine, module_id, connection)
    packer = plan.packer()
    slots: deque[_Slot] = deque()

    def flush() -> None:
        items, contents = packer.take()
        if not items:
            return
        request = plan.request(contents)
        execution_ids = plan.begin(items)
        try:
            response, _ = engine.send(plan.module, request, plan.connection)
        except RunError as exc:
            plan.settle(items, None, exc, execution_ids)
        else:
            plan.settle(items, response, None, execution_ids)

    admit, fits, add, append = plan.admit, packer.fits, packer.add, slots.append
    for parameters in inputs:
        slot = _Slot()
        append(slot)
        content = admit(slot, parameters, context)
        if content is not None:
            if not fits(content):
                flush()
            add(slot, content)
        if len(slots) > _MAX_PENDING:
            flush()
        head = slots[0]
        if head.result is not None or head.view is not None:  # else nothing is ready
            yield from _ready(plan, slots)
    flush()
    yield from _ready(plan, slots)


async def abatch(
    engine: Engine,
    module_id: str,
    connection: Mapping[str, Any] | None,
    inputs: Iterable[Mapping[str, Any] | RunError],
    context: Mapping[str, Any] | None = None,
    *,
    concurrency: int = 4,
) -> AsyncIterator[BatchResult]:
    """:func:`batch` over the pooled async client, with up to ``concurrency`` batch
    requests in flight; results still come in input order."""
    import asyncio

    plan = _BatchPlan(engine, module_id, connection)
    packer = plan.packer()
    slots: deque[_Slot] = deque()
    in_flight: set[asyncio.Task[None]] = set()

    async def send(items: list[_Slot], contents: list[bytes]) -> None:
        request = plan.request(contents)
        execution_ids = plan.begin(items)
        try:
            response, _ = await engine.asend(plan.module, request, plan.connection)
        except RunError as exc:
            plan.settle(items, None, exc, execution_ids)
        else:
            plan.settle(items, response, None, execution_ids)

    FIRST, ALL = asyncio.FIRST_COMPLETED, asyncio.ALL_COMPLETED

    async def settled(when: str) -> None:
        """Wait for sends; an exception in one (say, the store failing) is raised here,
        as the sync path raises it, never dropped with its task."""
        done, _ = await asyncio.wait(in_flight, return_when=when)
        in_flight.difference_update(done)
        for task in done:
            task.result()

    async def flush() -> None:
        items, contents = packer.take()
        if not items:
            return
        if len(in_flight) >= concurrency:
            await settled(FIRST)
        task = asyncio.ensure_future(send(items, contents))
        in_flight.add(task)

    for parameters in inputs:
        slot = _Slot()
        slots.append(slot)
        content = plan.admit(slot, parameters, context)
        if content is not None:
            if not packer.fits(content):
                await flush()
            packer.add(slot, content)
        if len(slots) > _MAX_PENDING:
            await flush()
            await settled(ALL)
        head = slots[0]
        if head.result is not None or head.view is not None:  # else nothing is ready
            for result in _ready(plan, slots):
                yield result
    await flush()
    while in_flight:
        await settled(FIRST)
        for result in _ready(plan, slots):
            yield result
    for result in _ready(plan, slots):
        yield result
