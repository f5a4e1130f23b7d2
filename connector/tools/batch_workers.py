"""``run --batch`` over worker processes, so a long file uses every core.

Preparing a message is Python work under one GIL; a batch file is many independent
lines. So the command forks worker processes after loading the manifests (shared, copy
on write), deals the file to them in chunks of :data:`CHUNK_LINES` lines, round robin,
and writes their answers in input order. Each worker is a whole batch run of its own
(:class:`~connector.tools.batch_file.BatchFileRun`): same checks, same packing, its own
HTTP client and its own connection to the incomplete store (SQLite serialises the
writers), so every contract of a batch run holds per line. What changes is only that
two workers' requests are out at once.

Memory stays flat: a worker reads its next chunk only when its batch run asks for more
input (a batch run reads ahead at most its pending limit), the parent deals chunks
round robin and so blocks on the slowest worker's pipe (each pipe holds one chunk
ahead, :data:`PIPE_BYTES`), and answers wait in the parent
only until the chunks before them are written. The parent never waits for an answer
while it still has lines to deal: a worker holds a batch's answers until it reads its
next line, so waiting there could wait forever.

Framing: the parent sends ``b"FIRST SIZE\\n"`` and SIZE bytes of raw lines (numbered from
FIRST); a worker answers each chunk with ``b"SIZE\\n"`` and SIZE bytes of output lines,
one per input line, in order.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

from connector.tools.batch_file import BatchFileRun, Progress, _Tally

if TYPE_CHECKING:
    from connector.core.engine import Engine

__all__ = ["CHUNK_LINES", "PIPE_BYTES", "default_workers", "run_in_workers"]

#: Lines dealt to a worker at a time.
CHUNK_LINES = 1000


def default_workers() -> int:
    """One worker per core this process may use, at most 4 (past that, the receiver
    and the parent's own reading and writing are the limit); 1 where processes cannot
    be forked."""
    if not hasattr(os, "fork"):
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


#: Bytes a pipe to or from a worker holds (Linux's default is 64 KiB).
PIPE_BYTES = 1 << 20


def _widen(fd: int) -> None:
    """Let the pipe hold a whole chunk (~0.5 MB of lines), so that dealing the next
    chunk to one worker never waits for it to finish the one it is on while the other
    worker runs dry (round robin would otherwise keep the workers in lock step, each
    cycle as slow as the slower one). Where that is not allowed, the default stays."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


class _Worker:
    """The parent's end of one worker: its pid, input pipe, and answers as they come."""

    def __init__(self, pid: int, to_worker: int, from_worker: int) -> None:
        self.pid = pid
        self.input = os.fdopen(to_worker, "wb", buffering=1 << 16)
        self.answers: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(
            target=self._read, args=(from_worker,), name="connector-batch-answers", daemon=True
        )
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=1 << 16) as answers:
            while header := answers.readline():
                self.answers.put(answers.read(int(header)))
        self.answers.put(None)  # the worker ended

    def send(self, first: int, lines: list[bytes]) -> None:
        data = b"".join(lines)
        self.input.write(b"%d %d\n" % (first, len(data)))
        self.input.write(data)
        self.input.flush()

    def close_input(self) -> None:
        self.input.close()


def _numbered(chunks: IO[bytes], sizes: deque[int]) -> Iterator[tuple[int, bytes]]:
    """A worker's lines with their numbers, chunk after chunk; notes each chunk's size."""
    while header := chunks.readline():
        first_text, size_text = header.split()
        data = chunks.read(int(size_text))
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        sizes.append(len(lines))
        first = int(first_text)
        for index, raw in enumerate(lines):
            yield first + index, raw


class _ChunkWriter:
    """A worker's output: lines gathered until a chunk is answered, then sent framed."""

    def __init__(self, out: IO[bytes], sizes: deque[int]) -> None:
        self._out = out
        self._sizes = sizes
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(data)
        sizes = self._sizes
        while sizes and len(self._parts) >= sizes[0]:
            count = sizes.popleft()
            block = b"".join(self._parts[:count])
            del self._parts[:count]
            self._out.write(b"%d\n" % len(block))
            self._out.write(block)
            self._out.flush()
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _work(
    to_worker: int,
    from_worker: int,
    make_engine: Callable[[], Engine],
    module: str,
    connection: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
) -> int:
    """A worker's whole life, in the forked child."""
    sizes: deque[int] = deque()
    with (
        os.fdopen(to_worker, "rb", buffering=1 << 16) as chunks,
        os.fdopen(from_worker, "wb", buffering=1 << 16) as out,
    ):
        run = BatchFileRun(
            _numbered(chunks, sizes),
            _ChunkWriter(out, sizes),
            sys.stderr,
            progress=False,
            numbered=True,
        )
        with make_engine() as engine:
            run.run(engine, module, connection, context)
        run.finish()
    return 0


def _die_with(parent: int) -> None:
    """End this worker when its parent ends, however it ends (Linux: the parent-death
    signal), so a killed command leaves no worker sending on its own. Its rows stay in
    the store, claimed by a process that has ended: the next retry takes them."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere a worker ends at its next write to the parent (broken pipe)
    if os.getppid() != parent:  # the parent ended before the signal was set
        os._exit(1)


def _child(parent: int, fds: list[int], work: Callable[[], int]) -> None:
    """Run ``work`` in the forked child and end it there, whatever happens."""
    code = 1
    try:
        _die_with(parent)
        for fd in fds:
            os.close(fd)
        code = work()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 1  # the parent has gone: what was sent is settled in the store
    except BaseException as exc:  # reported by type: its text may hold secrets
        sys.stderr.write(f"batch worker: unexpected {type(exc).__name__}\n")
    finally:
        sys.stderr.flush()
        os._exit(code)


def run_in_workers(
    count: int,
    make_engine: Callable[[], Engine],
    module: str,
    connection: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    stream: IO[bytes],
    out: IO[bytes],
    err: IO[str],
    *,
    progress: bool,
) -> _Tally:
    """The batch file through ``count`` forked workers; its tally. Output line N still
    answers input line N."""
    with contextlib.suppress(ImportError):
        import ctypes  # noqa: F401  (what _die_with uses: imported once, not per worker)
    workers: list[_Worker] = []
    parent_fds: list[int] = []
    parent = os.getpid()
    for _ in range(count):
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        _widen(to_w)
        _widen(from_w)
        pid = os.fork()
        if pid == 0:  # the worker
            _child(
                parent,
                [to_w, from_r, *parent_fds],
                functools.partial(_work, to_r, from_w, make_engine, module, connection, context),
            )
        os.close(to_r)
        os.close(from_w)
        parent_fds += [to_w, from_r]
        workers.append(_Worker(pid, to_w, from_r))

    tally = _Tally()
    bar = Progress(err) if progress else None
    pending: deque[_Worker] = deque()  # whose answer comes next, in input order
    read = 0

    def take(block: bytes | None) -> None:
        if block is None:
            raise RuntimeError("a batch worker ended before answering every line")
        out.write(block)
        _count(block, tally)
        if bar is not None:
            bar.show(read, tally)

    def drain(wait: bool) -> None:
        while pending:
            worker = pending[0]
            try:
                block = worker.answers.get(block=wait)
            except queue.Empty:
                return
            pending.popleft()
            take(block)
            wait = False

    try:
        chunk: list[bytes] = []
        first, turn = 1, 0
        for read, raw in enumerate(stream, start=1):
            chunk.append(raw)
            if len(chunk) == CHUNK_LINES:
                worker = workers[turn % count]
                worker.send(first, chunk)
                pending.append(worker)
                first, chunk, turn = read + 1, [], turn + 1
                drain(wait=False)
        if chunk:
            worker = workers[turn % count]
            worker.send(first, chunk)
            pending.append(worker)
        for worker in workers:
            worker.close_input()
        while pending:
            drain(wait=True)
        tally.read = read
    finally:
        for worker in workers:
            if not worker.input.closed:
                with contextlib.suppress(OSError):
                    worker.close_input()
        failed = [w.pid for w in workers if os.waitpid(w.pid, 0)[1] != 0]
        out.flush()
        if bar is not None:
            bar.close(read, tally)
    if failed:
        raise RuntimeError(f"{len(failed)} batch worker(s) failed")
    return tally


def _count(block: bytes, tally: _Tally) -> None:
    """Tally a block of output lines by the key after ``{"line":N,``."""
    for line in block.split(b"\n"):
        if not line:
            continue
        comma = line.index(b",")
        kind = line[comma + 2 : comma + 5]
        if kind == b"bun" or kind == b"req":
            tally.sent += 1
        elif kind == b"err":
            tally.failed.append(int(line[8:comma]))
            if b'"incompleteId":' in line:
                tally.kept += 1
        else:
            tally.blank += 1
