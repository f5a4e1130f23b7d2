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
* One bad item never costs the others: a batch the remote refuses as a whole (400,
  413, 422) is split in halves and each half sent again, down to single items
  (:func:`deliver`), so the valid items are delivered and only the bad ones fail.
* A batch that fails after its retries gives every item in it the same error; nothing
  is dropped silently. With an incomplete store, each request is written ahead once,
  as one row holding its body (:meth:`IncompleteStore.begin_batch`), and the items of
  a request that still fails are kept there for ``incomplete retry``.

An app whose one endpoint already takes a list (LiveLike's ``{"events": [...]}``) sets
``unwrap``: each message body is then ``{itemsKey: [items]}`` as a single run sends it,
and the batch sends those items, not the bodies.

The bodies are joined as bytes (each item was serialised once, when prepared), so
packing costs no second serialisation. What an item holds while its batch is out, and
how its output bundles are made then, is :mod:`connector.runs.batch_items`.
"""

from __future__ import annotations

import copy
import itertools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast, overload

from connector.core.jsondata import dumps
from connector.core.prepare import prepare_message
from connector.core.request import PreparedRequest, join_url
from connector.core.types import utc_now_iso
from connector.errors import DataError, InvalidConfigurationError, RunError
from connector.runs.batch_items import (
    BatchResult,
    BundleMaker,
    BundlesJSON,
    PendingItem,
    release,
)
from connector.templating.templates import RENDER_FAILURES, describe_error

if TYPE_CHECKING:
    import asyncio

    import httpx

    from connector.core.engine import Engine
    from connector.runs.incomplete import IncompleteStore

__all__ = [
    "ISOLATING_STATUSES",
    "BatchInput",
    "BatchPlan",
    "BatchResult",
    "abatch",
    "batch",
    "deliver",
    "mark_stored",
    "unprepared",
]

#: Results waiting behind an unsent batch before it is sent early (bounds memory).
_MAX_PENDING = 10_000
#: Answers to a whole batch that one bad item can cause: the batch is split to find it.
ISOLATING_STATUSES = frozenset({400, 413, 422})


class BatchInput(NamedTuple):
    """One input with a context of its own (say, a line of a file that carries the
    earlier bundles its templates refer to); merged over the run's context."""

    parameters: Mapping[str, Any]
    context: Mapping[str, Any] | None = None


#: What a batch run takes per input: parameters, parameters with a context, or an error
#: that stands for the input (a line that could not be read keeps its place).
Input = Mapping[str, Any] | BatchInput | RunError


@dataclass
class _Packer:
    """Accumulates prepared items until the next one would break a limit."""

    max_items: int
    max_bytes: int
    overhead: int
    items: list[PendingItem] = field(default_factory=list)
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

    def add(self, slot: PendingItem, content: bytes) -> None:
        self.items.append(slot)
        self.contents.append(content)
        self.size += len(content)

    def take(self) -> tuple[list[PendingItem], list[bytes]]:
        taken = self.items, self.contents
        self.items, self.contents, self.size = [], [], 0
        return taken


class _Items(bytes):
    """An input's items under ``unwrap``: their JSON, comma-joined, and their number."""

    number: int


@dataclass
class _ItemsPacker(_Packer):
    """The packer of an ``unwrap`` app: an input brings any number of items, and
    ``maxItems`` counts the items, not the inputs."""

    count: int = 0

    def fits(self, content: bytes) -> bool:
        if not self.items:
            return True
        return (
            self.count + cast("_Items", content).number <= self.max_items
            and self.overhead + self.size + len(self.items) + len(content) <= self.max_bytes
        )

    def add(self, slot: PendingItem, content: bytes) -> None:
        super().add(slot, content)
        self.count += cast("_Items", content).number

    def take(self) -> tuple[list[PendingItem], list[bytes]]:
        self.count = 0
        return super().take()


class _Answer(NamedTuple):
    """The answer to items ``lo:hi`` of a batch: a response, or the error they share."""

    lo: int
    hi: int
    response: httpx.Response | None
    error: RunError | None
    attempts: int


def _split(error: RunError, lo: int, hi: int) -> bool:
    return error.status in ISOLATING_STATUSES and hi - lo > 1


def deliver(
    send: Callable[[list[bytes], bool], tuple[httpx.Response, int]],
    contents: list[bytes],
) -> Iterator[_Answer]:
    """Send ``contents`` as one batch (``send(part, first)``); a batch refused as a whole
    with 400, 413 or 422 is sent again as two halves, down to single items, so that each
    answer covers the items it names. Answers come in item order."""
    stack = [(0, len(contents))]
    while stack:
        lo, hi = stack.pop()
        try:
            response, attempts = send(contents[lo:hi], (lo, hi) == (0, len(contents)))
        except RunError as exc:
            if _split(exc, lo, hi):
                middle = (lo + hi) // 2
                stack += [(middle, hi), (lo, middle)]
                continue
            yield _Answer(lo, hi, None, exc, exc.attempts or 1)
        else:
            yield _Answer(lo, hi, response, None, attempts)


async def _adeliver(
    send: Callable[[list[bytes], bool], Awaitable[tuple[httpx.Response, int]]],
    contents: list[bytes],
) -> list[_Answer]:
    """:func:`deliver` over an async send."""
    answers: list[_Answer] = []
    stack = [(0, len(contents))]
    while stack:
        lo, hi = stack.pop()
        try:
            response, attempts = await send(contents[lo:hi], (lo, hi) == (0, len(contents)))
        except RunError as exc:
            if _split(exc, lo, hi):
                middle = (lo + hi) // 2
                stack += [(middle, hi), (lo, middle)]
                continue
            answers.append(_Answer(lo, hi, None, exc, exc.attempts or 1))
        else:
            answers.append(_Answer(lo, hi, response, None, attempts))
    return answers


def mark_stored(error: RunError, execution_id: str) -> None:
    """Say in ``error`` that its run is kept as an incomplete execution, and its id."""
    error.incomplete_id = execution_id
    error.message += f" (stored as incomplete execution {execution_id})"
    error.args = (error.message,)


def unprepared(exc: Exception) -> DataError:
    """The DataError of an input whose preparation raised something unforeseen (say, a
    template that renders a NaN): that input fails, its neighbours are still sent. The
    exception's own text is not shown: it is not known to be free of secrets."""
    return DataError(
        f"the input could not be prepared: unexpected {type(exc).__name__} while "
        "rendering or checking it; run it alone with -v for details"
    )


_ENGINE_STORE: Any = object()


class BatchPlan:
    """What is fixed for one batch run: module, connection, endpoint, limits."""

    def __init__(
        self,
        engine: Engine,
        module_id: str,
        connection: Mapping[str, Any] | None,
        store: IncompleteStore | None = _ENGINE_STORE,
        *,
        as_json: bool = False,
    ) -> None:
        channel = engine.channel(module_id, connection)
        module = channel.module
        spec = module.app.manifest.batch
        if spec is None or not module.manifest.batchable or module.is_trigger:
            raise InvalidConfigurationError(
                f"module {module_id} cannot run in batch mode: it is not batchable or its "
                "app declares no batch endpoint"
            )
        self.channel = channel
        self.module = module
        self.module_id = module_id
        self.spec = spec
        self.connection = channel.connection
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
        if store is _ENGINE_STORE:
            store = engine.incomplete
        #: The store that writes this run's requests ahead of sending, fixed for the run
        #: (a host setting ``engine.incomplete`` mid-run changes the next run only).
        self.store: IncompleteStore | None = store if module.manifest.retry else None
        #: Headers built from templates may come in another order per item: then the
        #: order is compared too (a literal head builds every item's in one order).
        self.ordered_headers = not module.static_head
        #: What items hold for their output, and how their bundles are made.
        self.bundles = BundleMaker(module, self.connection, as_json)
        #: The usual item's method, URL and headers (without auth): items whose own
        #: differ keep theirs (``PendingItem.head``).
        self.head: tuple[str, str, dict[str, str]] | None = None

    def packer(self) -> _Packer:
        packer = _ItemsPacker if self.spec.unwrap else _Packer
        return packer(self.spec.max_items, self.spec.max_bytes, self.overhead)

    def admit(
        self,
        slot: PendingItem,
        parameters: Input,
        context: Mapping[str, Any] | None,
    ) -> bytes | None:
        """Prepare one input; on failure record its error in the slot and return None.

        An input that is itself a RunError (say, a line of a file that could not be
        read) is passed through as that input's result, so it keeps its place.
        """
        if isinstance(parameters, RunError):
            slot.result = parameters
            return None
        if type(parameters) is BatchInput:
            mine = parameters.context
            context = mine if not context else {**context, **mine} if mine else context
            parameters = parameters.parameters
        module, conn = self.module, self.connection
        try:
            message = prepare_message(module, conn, parameters, context)  # type: ignore[arg-type]
        except RunError as exc:
            slot.result = exc
            return None
        except Exception as exc:  # one input's unforeseen failure never ends the batch
            slot.result = unprepared(exc)
            return None
        own = message.content or b"null"  # a module with no body: null
        content: bytes = own
        if self.spec.unwrap:
            unwrapped = self._unwrapped(message.json_body, module.part_fields.get("body"))
            if isinstance(unwrapped, DataError):
                slot.result = unwrapped
                return None
            content = unwrapped
        limit = self.spec.max_item_bytes
        if len(content) > limit:
            slot.result = DataError(
                f"the message is {len(content):,} bytes, over the batch limit of {limit:,} "
                "bytes a message",
                field=module.part_fields.get("body"),
            )
            return None
        self.bundles.hold_for_output(slot, message, own)  # the output sees its own body
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
        return content

    def _messages(self, contents: list[bytes]) -> int:
        """How many messages a batch of ``contents`` sends (what its row counts)."""
        if not self.spec.unwrap:
            return len(contents)
        return sum(cast("_Items", content).number for content in contents)

    def _unwrapped(self, body: Any, field: str | None) -> _Items | DataError:
        """``unwrap``: the items of the body's ``{itemsKey: [...]}``, as the batch's
        items (comma-joined JSON) with their number; the input's DataError when the
        body is not of that shape, or holds more items than a request may."""
        key, most = self.spec.items_key, self.spec.max_items
        items = body.get(key) if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return DataError(
                f"the message body is not {{{key!r}: [...]}} with at least one item, so "
                "the batch (unwrap) has nothing to send for it",
                field=field,
            )
        if len(items) > most:
            return DataError(
                f"the message body holds {len(items):,} items under {key!r}, over the "
                f"batch limit of {most:,} items a request",
                field=field,
            )
        content = _Items(b",".join(dumps(item) for item in items))
        content.number = len(items)
        return content

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

    def request(self, contents: list[bytes], body: bytes | None = None) -> PreparedRequest:
        """The batch request for ``contents`` (or a stored ``body`` sent as it is)."""
        if body is None:
            body = b"".join((self.envelope, b",".join(contents), self._tail()))
        conn = self.connection
        # The app's own headers and query go with its batch endpoint too, as with every
        # request of the app; the body is JSON whatever they say.
        app = {k: v for k, v in conn.app_headers.items() if k.lower() != "content-type"}
        headers = {**app, "Content-Type": "application/json", **conn.auth_headers}
        return PreparedRequest(
            method=self.spec.method,
            url=self.url,
            headers=headers,
            query=dict(conn.app_query),
            content=body,
            json_body=None,
            module_id=self.module_id,
            timeout=self.connection.timeout,
        )

    def begin(self, request: PreparedRequest, items: int) -> str | None:
        """Write-ahead: store the request, once, before it is sent (with a store)."""
        if self.store is None:
            return None
        return self.store.begin_batch(
            self.module, self.connection, request, items, self.spec.items_key
        )

    def settle(
        self,
        items: list[PendingItem],
        contents: list[bytes],
        answers: Iterable[_Answer],
        execution_id: str | None,
    ) -> None:
        """Give every item of a sent batch its answer, and settle its write-ahead row:
        deleted when nothing is left to retry, else kept with the items whose error a
        retry may fix (each such item's error names the row). The row is settled before
        any item gets its result, so a result, once set, is final."""
        answers = list(answers)
        keeps = execution_id is not None and self.store is not None
        failing = [a for a in answers if a.error is not None and a.error.retryable]
        kept = [i for a in failing for i in range(a.lo, a.hi)]
        kept_error = next((a.error for a in answers if a.error and a.error.retryable), None)
        store = self.store
        if keeps and store is not None and execution_id is not None:
            if not kept:
                store.succeeded(execution_id)
            elif len(kept) == len(items):
                assert kept_error is not None
                store.failed(execution_id, kept_error)
            else:
                assert kept_error is not None
                left = [contents[i] for i in kept]
                body = self.request(left).content or b""
                store.keep_only(execution_id, body, self._messages(left), kept_error)
        for lo, hi, response, error, _ in answers:
            if error is None:
                assert response is not None
                view = self.channel.view(response)
                for slot in items[lo:hi]:
                    slot.view = view
                continue
            keep = keeps and error.retryable
            for slot in items[lo:hi]:
                release(slot)
                if keep:
                    own = copy.copy(error)
                    assert execution_id is not None
                    mark_stored(own, execution_id)
                    slot.result = own
                else:
                    slot.result = error

    def send(self, items: list[PendingItem], contents: list[bytes]) -> None:
        """Send one batch (split as :func:`deliver` does) and settle it."""
        request = self.request(contents)
        execution_id = self.begin(request, self._messages(contents))
        send = self.channel.send

        def one(part: list[bytes], first: bool) -> tuple[httpx.Response, int]:
            return send(request if first else self.request(part))

        self.settle(items, contents, deliver(one, contents), execution_id)

    async def asend(self, items: list[PendingItem], contents: list[bytes]) -> None:
        """:meth:`send` over the async client."""
        request = self.request(contents)
        execution_id = self.begin(request, self._messages(contents))
        send = self.channel.asend

        async def one(part: list[bytes], first: bool) -> tuple[httpx.Response, int]:
            return await send(request if first else self.request(part))

        self.settle(items, contents, await _adeliver(one, contents), execution_id)

    def outputs(self, chunk: list[PendingItem]) -> None:
        """Give answered items their bundles (see :meth:`BundleMaker.make_bundles`)."""
        assert self.head is not None  # set by the first admitted item
        self.bundles.make_bundles(chunk, *self.head)


#: Answered items whose bundles are rendered and copied together (see outputs).
_CHUNK = 32


def _ready(plan: BatchPlan, slots: deque[PendingItem]) -> Iterator[Any]:
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


def _head(slots: deque[PendingItem]) -> Iterator[PendingItem]:
    return itertools.islice(slots, _CHUNK)


@overload
def batch(
    engine: Engine,
    module_id: str,
    connection: Mapping[str, Any] | None,
    inputs: Iterable[Input],
    context: Mapping[str, Any] | None = None,
    *,
    as_json: Literal[False] = False,
) -> Iterator[BatchResult]: ...


@overload
def batch(
    engine: Engine,
    module_id: str,
    connection: Mapping[str, Any] | None,
    inputs: Iterable[Input],
    context: Mapping[str, Any] | None = None,
    *,
    as_json: Literal[True],
) -> Iterator[BatchResult | BundlesJSON]: ...


def batch(
    engine: Engine,
    module_id: str,
    connection: Mapping[str, Any] | None,
    inputs: Iterable[Input],
    context: Mapping[str, Any] | None = None,
    *,
    as_json: bool = False,
) -> Iterator[BatchResult | BundlesJSON]:
    """Run ``inputs`` through a batchable module; yields one result per input, in order.
    With ``as_json``, bundles made from the messages' bytes come as their JSON text
    (:class:`~connector.runs.batch_items.BundlesJSON`), for a host that writes them out."""
    plan = BatchPlan(engine, module_id, connection, as_json=as_json)
    packer = plan.packer()
    slots: deque[PendingItem] = deque()

    def flush() -> None:
        items, contents = packer.take()
        if items:
            plan.send(items, contents)

    admit, fits, add, append = plan.admit, packer.fits, packer.add, slots.append
    for parameters in inputs:
        slot = PendingItem()
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
    inputs: Iterable[Input],
    context: Mapping[str, Any] | None = None,
    *,
    concurrency: int = 4,
) -> AsyncIterator[BatchResult]:
    """:func:`batch` over the pooled async client, with up to ``concurrency`` batch
    requests in flight; results still come in input order."""
    import asyncio

    plan = BatchPlan(engine, module_id, connection)
    packer = plan.packer()
    slots: deque[PendingItem] = deque()
    in_flight: set[asyncio.Task[None]] = set()

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
        task = asyncio.ensure_future(plan.asend(items, contents))
        in_flight.add(task)

    for parameters in inputs:
        slot = PendingItem()
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
