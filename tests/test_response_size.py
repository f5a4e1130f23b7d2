"""Answer sizes are bounded: one answer's body by the engine's ``max_response_bytes``
(enforced while it streams in, after decoding), all pages of one search or poll by
``max_pages_bytes``. Past either, a RuntimeError naming the limit, not a whole read."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import connector
from connector.errors import RunError
from tests.conftest import FAST_RETRY, WRITE_KEY
from tests.fakeapi import FakeAPI

LIMIT = 1000
CHUNK = 100
TRACK = ("segment.track", {"writeKey": WRITE_KEY}, {"event": "E", "userId": "u"})


class _Counting(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body of ``chunks`` chunks of CHUNK bytes that counts how many were pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.pulled = 0

    def _next(self) -> bytes:
        self.pulled += 1
        return b"x" * CHUNK

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            yield self._next()

    async def __aiter__(self) -> Any:
        for _ in range(self.chunks):
            yield self._next()


def _reply(shape: str, stream: _Counting) -> httpx.Response:
    if shape == "declared":  # a Content-Length over the limit: refused before reading
        return httpx.Response(200, headers={"Content-Length": str(10**9)}, stream=stream)
    if shape == "chunked":  # no length: refused once the bytes read pass the limit
        return httpx.Response(200, stream=stream)
    if shape == "gzip":  # small on the wire, over the limit once decoded
        data = gzip.compress(b" " * 100_000)
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=data)
    assert shape == "error-status"  # an error answer's body is bounded too
    return httpx.Response(400, stream=stream)


SHAPES = ["declared", "chunked", "gzip", "error-status"]


def _engine(registry: connector.Registry, handler: Any, **options: Any) -> connector.Engine:
    return connector.Engine(
        registry,
        client=httpx.Client(transport=httpx.MockTransport(handler)),
        async_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry=FAST_RETRY,
        **options,
    )


def _check(error: RunError, sent: list[httpx.Request], stream: _Counting) -> None:
    assert error.type == "RuntimeError"
    assert f"over {LIMIT} bytes" in error.message and "max_response_bytes" in error.message
    assert len(sent) == 1  # not retried: the same request gets the same answer
    # Bounded by construction: no more is read than the limit and one chunk.
    assert stream.pulled * CHUNK <= LIMIT + CHUNK


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("call", ["run", "arun"])
def test_an_answer_over_the_limit_is_refused_while_it_streams(
    registry: connector.Registry, call: str, shape: str
) -> None:
    stream, sent = _Counting(10_000), []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return _reply(shape, stream)

    engine = _engine(registry, handler, max_response_bytes=LIMIT)
    if call == "run":
        with engine, pytest.raises(RunError) as info:
            engine.run(*TRACK)
        _check(info.value, sent, stream)
        return

    async def main() -> RunError:
        async with engine:
            try:
                await engine.arun(*TRACK)
            except RunError as exc:
                return exc
        raise AssertionError("not refused")

    _check(asyncio.run(main()), sent, stream)


@pytest.mark.parametrize("chunks", [0, 1, LIMIT // CHUNK])
def test_an_answer_up_to_the_limit_is_read_whole(registry: connector.Registry, chunks: int) -> None:
    stream = _Counting(chunks)
    with _engine(
        registry, lambda _: httpx.Response(200, stream=stream), max_response_bytes=LIMIT
    ) as engine:
        engine.run(*TRACK)
    assert stream.pulled == chunks


def test_the_default_limit_is_16_mib(registry: connector.Registry) -> None:
    with connector.Engine(registry) as engine:
        assert engine.max_response_bytes == 16 * 1024 * 1024
        assert engine.max_pages_bytes == 64 * 1024 * 1024


# -- against a real server on 127.0.0.1 ------------------------------------------------------


def test_a_large_page_from_a_real_server_is_refused(fakeapi_registry: connector.Registry) -> None:
    with FakeAPI() as api, connector.Engine(fakeapi_registry, max_response_bytes=2000) as engine:
        api.state.items = [{"id": f"i{n}", "name": "n" * 5000} for n in range(2)]
        with pytest.raises(RunError) as info:
            engine.run("fakeapi.list_items", api.connection(), {"limit": 10})
        assert info.value.type == "RuntimeError" and "over 2000 bytes" in info.value.message
        assert len(api.sent("/items")) == 1


@pytest.mark.parametrize(
    ("total", "pages_read", "refused"),
    [
        # 7 items, 2 a page: pages of 128, 128, 128 and 97 bytes (481 in all)
        (481, 4, False),
        (480, 4, True),  # the last page passes the bound: refused, not handed over
        (300, 3, True),  # 384 bytes by page 3: stopped there, page 4 never asked for
        (100, 1, True),
    ],
)
def test_the_pages_of_one_search_are_bounded_in_all(
    fakeapi_registry: connector.Registry, total: int, pages_read: int, refused: bool
) -> None:
    with FakeAPI() as api, connector.Engine(fakeapi_registry, max_pages_bytes=total) as engine:
        api.state.items = [{"id": f"i{n}", "name": f"item {n}"} for n in range(7)]
        if refused:
            with pytest.raises(RunError) as info:
                engine.run("fakeapi.list_items", api.connection(), {"limit": 10})
            assert info.value.type == "RuntimeError"
            assert f"over {total} bytes by page {pages_read}" in info.value.message
        else:
            assert len(engine.run("fakeapi.list_items", api.connection(), {"limit": 10})) == 7
        assert len(api.sent("/items")) == pages_read
