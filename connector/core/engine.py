"""Running a module: check input, build the request, send it, shape the output.

One run goes through four steps, each a method so hosts and tests can stop after any:

1. :meth:`Engine.prepare` (:mod:`connector.core.prepare`): render the builder's mappings
   over ``context``, coerce and check every parameter, render the manifest's request
   templates and check the result (URL stays on the base URL, headers are clean, size
   limits). Pure: nothing is sent, and a DataError here means nothing ever will be.
2. :meth:`Engine.dry_run`: the prepared request with auth redacted, for ``--dry-run``.
3. sending, with the app's retry policy (:mod:`connector.core.transport`);
4. rendering the output bundles from the request and response, secrets redacted.

``run`` and ``arun`` share steps 1 and 4 exactly; only step 3 differs (a pooled
``httpx.Client`` or ``httpx.AsyncClient``, one per engine, never one per run).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from connector.core.connection import REDACTED, Connection
from connector.core.prepare import ENGINE_INFO, Prepared, output_bundles, prepare_run, run_scope
from connector.core.registry import LoadedModule, Registry
from connector.core.request import PreparedRequest
from connector.errors import InvalidConfigurationError, RunError
from connector.format.manifest import RetrySpec

if TYPE_CHECKING:
    # Imported lazily at run time: httpx, asyncio and sqlite3 cost ~70 ms of cold start
    # that a host which only loads and describes modules should not pay.
    import httpx

    from connector.core.registry import LoadedApp
    from connector.core.transport import Sender
    from connector.runs.batch import BatchResult
    from connector.runs.incomplete import IncompleteStore
    from connector.runs.poll import PollResult
    from connector.runs.trigger import Headers

__all__ = ["ENGINE_INFO", "Channel", "Engine", "Prepared"]

_CONNECTION_CACHE_SIZE = 256


class Engine:
    """Runs modules of a :class:`~connector.core.registry.Registry`.

    Hold one engine per process and reuse it: it keeps pooled HTTP clients and the
    checked connections. ``client``/``async_client`` let hosts bring their own
    (proxies, custom transports); the engine then does not close them. ``retry``
    overrides every app's retry policy (e.g. fewer attempts for an interactive host).
    ``incomplete`` stores runs that still fail after their retries, write-ahead, to be
    replayed later (:mod:`connector.runs.incomplete`); without it such a failure is only
    raised. ``timeouts`` sets the per-request timeout in seconds by host name (e.g.
    ``{"api.segment.io": 5}``), over the app's ``timeout``. ``max_response_bytes`` bounds
    one answer's body (16 MiB by default) and ``max_pages_bytes`` all the pages of one
    search or poll together (64 MiB): past either, the run fails rather than read on.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        retry: RetrySpec | None = None,
        incomplete: IncompleteStore | None = None,
        timeouts: Mapping[str, float] | None = None,
        max_response_bytes: int = 16 * 1024 * 1024,
        max_pages_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.registry = registry
        #: The largest answer body read, and the most all pages of one search or poll
        #: may come to (connector.runs.pages), in bytes after decoding.
        self.max_response_bytes = max_response_bytes
        self.max_pages_bytes = max_pages_bytes
        self._retry = retry
        self._timeouts = dict(timeouts or {})
        #: Where runs that fail with a retryable error are kept (None: not kept).
        self.incomplete = incomplete
        self._client = client
        self._owns_client = client is None
        self._async_client = async_client
        self._owns_async_client = async_client is None
        #: The engine's own async clients, one per running event loop (pooled
        #: connections belong to the loop that opened them). A client is closed by
        #: ``aclose`` in its loop; one whose loop ended without that is dropped when
        #: the next loop's client is made (see async_client).
        self._async_clients: dict[Any, httpx.AsyncClient] = {}
        self._connections: OrderedDict[tuple[str, Any], Connection] = OrderedDict()
        self._lock = threading.Lock()
        self._senders: dict[str, Sender] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the clients: the sync one, and the async one of this event loop (a
        client of another loop can only be closed in that loop)."""
        if self._owns_async_client:
            loop = _running_loop()
            client = self._async_clients.pop(loop, None) if loop is not None else None
            if client is not None:
                await client.aclose()
            if self._async_client is not None:  # one taken outside any event loop
                await self._async_client.aclose()
                self._async_client = None
        self.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx

            self._client = httpx.Client(follow_redirects=False)
        return self._client

    @property
    def async_client(self) -> httpx.AsyncClient:
        """The pooled async client. The engine's own one is made per event loop: a host
        that calls ``asyncio.run`` twice gets a fresh client the second time, instead of
        connections of the first, closed loop ("Event loop is closed"), and hosts with
        an event loop per thread get one client each. Hosts close it with ``await
        engine.aclose()`` (or ``async with engine``) in each loop; a client whose loop
        ended without that is dropped here, its sockets then closed by the garbage
        collector."""
        if not self._owns_async_client:
            assert self._async_client is not None
            return self._async_client
        loop = _running_loop()
        if loop is None:
            if self._async_client is None:
                self._async_client = _new_async_client()
            return self._async_client
        client = self._async_clients.get(loop)
        if client is None:
            client = _new_async_client()
            with self._lock:  # hosts may run a loop per thread with one engine
                for ended in [old for old in self._async_clients if old.is_closed()]:
                    del self._async_clients[ended]
                self._async_clients[loop] = client
        return client

    # -- the steps ------------------------------------------------------------------------

    def connection(self, module: LoadedModule, values: Mapping[str, Any] | None) -> Connection:
        """The checked connection for these values (cached: auth is computed once)."""
        key = (module.app.name, Connection.cache_key(values))
        cached = self._connections.get(key)
        if cached is not None:
            return cached
        connection = Connection(module.app, values)
        if self._timeouts:
            host = urlsplit(connection.base_url).hostname or ""
            connection.timeout = self._timeouts.get(host, connection.timeout)
        with self._lock:  # hosts run one engine from many threads
            self._connections[key] = connection
            while len(self._connections) > _CONNECTION_CACHE_SIZE:
                self._connections.popitem(last=False)
        return connection

    def prepare(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None = None,
    ) -> Prepared:
        """Check everything and build the request; raises DataError before any send."""
        module = self.registry.get(module_id)
        if module.is_trigger:
            if module.is_polling:
                raise InvalidConfigurationError(
                    f"module {module_id} is a polling trigger: poll it with poll (or "
                    "`connector poll`), keeping its state between polls"
                )
            raise InvalidConfigurationError(
                f"module {module_id} is a trigger: hand it webhook deliveries with "
                "handle_webhook (or `connector webhook`), it sends nothing"
            )
        return prepare_run(module, self.connection(module, connection), parameters, context)

    def poll(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        state: Mapping[str, Any] | None = None,
    ) -> PollResult:
        """One poll of a polling trigger: ``(bundles, state)``. Pass the state the last
        poll returned (None the first time) and save the new one only once the bundles
        are handed on. See :mod:`connector.runs.poll`."""
        from connector.runs.poll import poll

        return poll(self, module_id, connection, parameters, state)

    def options(
        self,
        module_id: str,
        field: str,
        connection: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """A field's remote options, ``[{"label", "value"}]`` (see
        :mod:`connector.runs.options`)."""
        from connector.runs.options import load_options

        return load_options(self, module_id, field, connection, parameters)

    def verify(self, app: str, connection: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check a connection with the app's verify request: ``{"ok": True, ...}`` or a
        RunError subclass (see :mod:`connector.runs.verify`)."""
        from connector.runs.verify import verify_connection

        return verify_connection(self, app, connection)

    def handle_webhook(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        headers: Headers,
        body: bytes,
    ) -> list[dict[str, Any]]:
        """One webhook delivery to a trigger: its output bundles, one per kept event.

        Raises InvalidAccessTokenError for a bad signature and DataError for a malformed
        body, with no bundle. See :mod:`connector.runs.trigger`.
        """
        from connector.runs.trigger import receive

        module = self.registry.get(module_id)
        checked = self.connection(module, connection)
        return receive(module, connection, parameters, headers, body, checked=checked)

    def dry_run(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What would be sent, auth redacted. Nothing is sent. With an app signer, the
        dry run names it and shows the headers it adds, redacted like auth."""
        prepared = self.prepare(module_id, connection, parameters, context)
        out = prepared.redacted()
        code = prepared.connection.app.code
        if code is not None and code.signer is not None:
            signed = prepared.connection.sign(prepared.request)
            added = [k for k in signed.headers if k not in prepared.request.headers]
            out["signer"] = code.signer_name
            out["headers"] = {**out["headers"], **dict.fromkeys(added, REDACTED)}
        return out

    def _sender(self, module: LoadedModule) -> Sender:
        key = f"{module.app.name}/{module.manifest.retry}"
        sender = self._senders.get(key)
        if sender is None:
            from connector.core.transport import Sender

            app = module.app.manifest
            policy = self._retry or app.retry
            sender = Sender(
                policy,
                app.errors,
                retry=module.manifest.retry,
                max_response_bytes=self.max_response_bytes,
            )
            self._senders[key] = sender
        return sender

    def send(
        self, module: LoadedModule, request: PreparedRequest, connection: Connection
    ) -> tuple[httpx.Response, int]:
        """Send with the app's retry policy; returns the response and the attempts."""
        if connection.app.code is not None:
            request = connection.sign(request)
        try:
            return self._sender(module).send(self.client, request, connection.redact)
        except RunError as exc:
            if module.manifest.errors and exc.status is not None:
                raise _module_error(module, exc) from None
            raise

    def send_for_app(
        self, app: LoadedApp, request: PreparedRequest, connection: Connection
    ) -> tuple[httpx.Response, int]:
        """:meth:`send` for a request of the app rather than a module (verify)."""
        from connector.core.transport import Sender

        if app.code is not None:
            request = connection.sign(request)
        sender = Sender(
            self._retry or app.manifest.retry,
            app.manifest.errors,
            max_response_bytes=self.max_response_bytes,
        )
        return sender.send(self.client, request, connection.redact)

    async def asend(
        self, module: LoadedModule, request: PreparedRequest, connection: Connection
    ) -> tuple[httpx.Response, int]:
        """:meth:`send` over the pooled async client."""
        if connection.app.code is not None:
            request = connection.sign(request)
        try:
            return await self._sender(module).asend(self.async_client, request, connection.redact)
        except RunError as exc:
            if module.manifest.errors and exc.status is not None:
                raise _module_error(module, exc) from None
            raise

    @staticmethod
    def response_view(response: httpx.Response) -> dict[str, Any]:
        """What output templates see of a response: status, headers, parsed body."""
        return {
            "status": response.status_code,
            "headers": dict(response.headers),
            "body": _parse_body(response),
        }

    def channel(self, module_id: str, connection: Mapping[str, Any] | None) -> Channel:
        """What runs of many requests (batches, replays) need of the engine: the module,
        its checked connection, and sending with the app's retry policy."""
        module = self.registry.get(module_id)
        return Channel(self, module, self.connection(module, connection))

    def finish(self, prepared: Prepared, response: httpx.Response) -> list[dict[str, Any]]:
        """The output bundles for a response: rendered by the module's template, then
        redacted and copied (they share no object with the engine or the input)."""
        conn = prepared.connection
        bundles = output_bundles(
            prepared.module,
            conn,
            prepared.parameters,
            prepared.run,
            _request_view(prepared),
            self.response_view(response),
        )
        return [conn.redact.data(b) for b in bundles]

    # -- whole runs -----------------------------------------------------------------------

    def run(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Run a module and return its output bundles; raises a RunError subclass.
        A search reads its pages (:mod:`connector.runs.search`)."""
        prepared = self.prepare(module_id, connection, parameters, context)
        if prepared.module.paging is not None:
            from connector.runs.search import run_search

            return run_search(self, prepared)
        execution_id = self._begin(prepared)
        try:
            response, _ = self.send(prepared.module, prepared.request, prepared.connection)
        except RunError as exc:
            self._failed(execution_id, exc)
            raise
        return self._delivered(prepared, execution_id, response)

    def _delivered(
        self, prepared: Prepared, execution_id: str | None, response: httpx.Response
    ) -> list[dict[str, Any]]:
        """After a send that did not fail, the same for run and arun: the run is
        settled (the answer came), then its body is checked and shaped into bundles."""
        self._succeeded(execution_id)
        if prepared.module.response_check is not None:
            self.check_body(prepared, response)
        return self.finish(prepared, response)

    def check_body(self, prepared: Prepared, response: httpx.Response) -> None:
        """Errors inside a 2xx body (``response.valid``/``error``); raises the check's error."""
        from connector.core.response_check import check_response
        from connector.runs.trigger import lenient

        check = prepared.module.response_check
        assert check is not None
        conn = prepared.connection
        view = self.response_view(response)
        scope = {
            **run_scope(prepared),
            "request": _request_view(prepared),
            "response": {**view, "body": lenient(view["body"])},
        }
        check_response(check, scope, conn, prepared.module.id)

    async def arun(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        parameters: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`run`, over the engine's pooled ``httpx.AsyncClient``. A search is
        run in a worker thread (its pages follow one another)."""
        prepared = self.prepare(module_id, connection, parameters, context)
        if prepared.module.paging is not None:
            import asyncio

            from connector.runs.search import run_search

            return await asyncio.to_thread(run_search, self, prepared)
        execution_id = self._begin(prepared)
        try:
            response, _ = await self.asend(prepared.module, prepared.request, prepared.connection)
        except RunError as exc:
            self._failed(execution_id, exc)
            raise
        return self._delivered(prepared, execution_id, response)

    # -- incomplete executions (write-ahead) --------------------------------------------

    def _begin(self, prepared: Prepared) -> str | None:
        if self.incomplete is None or not prepared.module.manifest.retry:
            return None  # a module that must never be repeated is never replayed either
        return self.incomplete.begin(prepared)

    def _succeeded(self, execution_id: str | None) -> None:
        if execution_id is not None and self.incomplete is not None:
            self.incomplete.succeeded(execution_id)

    def _failed(self, execution_id: str | None, exc: RunError) -> None:
        if execution_id is not None and self.incomplete is not None:
            self.incomplete.settle_failure(execution_id, exc)

    async def arun_many(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        runs: list[Mapping[str, Any]],
        context: Mapping[str, Any] | None = None,
        *,
        concurrency: int = 16,
    ) -> list[list[dict[str, Any]] | Exception]:
        """Run many parameter sets concurrently (bounded); one result or error each."""
        import asyncio

        semaphore = asyncio.Semaphore(concurrency)

        async def one(parameters: Mapping[str, Any]) -> list[dict[str, Any]] | Exception:
            async with semaphore:
                try:
                    return await self.arun(module_id, connection, parameters, context)
                except Exception as exc:
                    return exc

        return list(await asyncio.gather(*(one(p) for p in runs)))

    def run_batch(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        inputs: Iterable[Mapping[str, Any] | RunError],
        context: Mapping[str, Any] | None = None,
    ) -> Iterator[BatchResult]:
        """Run many parameter sets through a batchable module via the app's batch
        endpoint; yields one result (bundles or error) per input, in order, streaming.
        An input that is a RunError (an unreadable line, say) is passed through as its
        own result. See :mod:`connector.runs.batch`."""
        from connector.runs.batch import batch

        return batch(self, module_id, connection, inputs, context)

    def arun_batch(
        self,
        module_id: str,
        connection: Mapping[str, Any] | None,
        inputs: Iterable[Mapping[str, Any] | RunError],
        context: Mapping[str, Any] | None = None,
        *,
        concurrency: int = 4,
    ) -> AsyncIterator[BatchResult]:
        """:meth:`run_batch` in async, with up to ``concurrency`` batches in flight."""
        from connector.runs.batch import abatch

        return abatch(self, module_id, connection, inputs, context, concurrency=concurrency)


class Channel:
    """One module and connection of an engine: the small interface that batch runs and
    replays use (:mod:`connector.runs.batch`, :mod:`connector.runs.incomplete`)."""

    __slots__ = ("connection", "engine", "module")

    def __init__(self, engine: Engine, module: LoadedModule, connection: Connection) -> None:
        self.engine = engine
        self.module = module
        self.connection = connection

    def send(self, request: PreparedRequest) -> tuple[httpx.Response, int]:
        """Send with the app's retry policy; the response and the attempts."""
        return self.engine.send(self.module, request, self.connection)

    async def asend(self, request: PreparedRequest) -> tuple[httpx.Response, int]:
        """:meth:`send` over the pooled async client."""
        return await self.engine.asend(self.module, request, self.connection)

    @staticmethod
    def view(response: httpx.Response) -> dict[str, Any]:
        """What output templates see of a response (:meth:`Engine.response_view`)."""
        return Engine.response_view(response)


def _module_error(module: LoadedModule, exc: RunError) -> RunError:
    """A status error as the module's ``errors`` map it (type, field, message)."""
    from connector.errors import ERROR_TYPES

    spec = module.manifest.errors.get(str(exc.status))
    if spec is None:
        return exc
    message = f"{spec.message}: {exc.message}" if spec.message else exc.message
    mapped = ERROR_TYPES[spec.type](
        message, field=spec.field or exc.field, status=exc.status, attempts=exc.attempts
    )
    mapped.incomplete_id = exc.incomplete_id
    return mapped


def _request_view(prepared: Prepared) -> dict[str, Any]:
    """What output and response-check templates see of the sent request: auth left out."""
    request, conn = prepared.request, prepared.connection
    return {
        "method": request.method,
        "url": request.url,
        "headers": conn.without_auth(request.headers),
        "body": request.json_body,
    }


def _parse_body(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return response.text


def _running_loop() -> object | None:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _new_async_client() -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(follow_redirects=False)
