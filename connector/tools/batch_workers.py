"""``run --batch`` over worker processes, so a long file uses every core.

Preparing a message is Python work under one GIL; a batch file is many independent
lines. So the command forks worker processes after loading the manifests (shared, copy
on write), deals the file to them in blocks of whole lines (as one process reads it:
:func:`~connector.tools.batch_file.read_blocks`), and writes their answers in input
order. Each worker is a whole batch run of its own
(:class:`~connector.tools.batch_file.BatchFileRun`): same checks, same packing, its own
HTTP client and its own connection to the incomplete store (SQLite serialises the
writers), so every contract of a batch run holds per line. What changes is only that
two workers' requests are out at once.

Dealing. The parent reads the file in blocks, never line by line, and gives each block
to the worker with the fewest blocks unanswered, so a worker that runs faster (the
other shares its core with the receiver, say) takes more, and both end together. It
never waits for an answer while it still has lines to deal: a worker holds a batch's
answers until it reads its next line, so waiting there could wait forever. What stops
it is a full pipe: writing to a worker that has :data:`PIPE_BYTES` unread waits until
that worker reads, and a worker always reads in the end, since its answers are drained
by a thread of the parent as they come.

Memory stays flat: a worker reads its next block only when its batch run asks for more
input (a batch run reads ahead at most its pending limit); answers wait in the parent
only until the blocks before them are written, and at most :data:`WINDOW` blocks a
worker are unwritten: past that the parent deals to the worker whose answer is next
(its pipe then fills and the parent waits for it), not to the ones that run ahead.

A worker that ends before answering (killed, or out of memory) costs only its own
lines: each line of the blocks it was dealt and did not answer gets an error line
saying it may have been sent (what it wrote ahead stays in the incomplete store,
claimed by a process that has ended, so the next retry takes it); a block it could not
take (its pipe closed) goes to another worker; the others go on, and the summary
counts those lines as failed.

Interrupts. The first Ctrl-C (SIGINT) stops the reading: the blocks already dealt are
still answered and written, then the summary says where the run stopped, and the
command exits 130. A second one ends the workers at once: each line they had not
answered gets its error line (it may have been sent), as for a worker that ended.
Workers ignore SIGINT themselves (a terminal sends it to the whole process group), so
that the parent decides (:class:`~connector.tools.interrupts.Interrupts`): with a flag
it checks between blocks, never with an exception that could land between dealing a
block and noting whose it is.

Framing: the parent sends ``b"FIRST COUNT SIZE\\n"`` and SIZE bytes of COUNT whole
lines (numbered from FIRST); a worker answers each block with ``b"SIZE SENT KEPT BLANK FAILED\\n"``
and SIZE bytes of output lines, one per input line, in order. The counts are the
block's tally (FAILED: the failed lines' numbers, comma separated, or ``-``), so the
parent adds them up without reading the lines.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any

from connector.errors import RemoteRuntimeError
from connector.tools.batch_file import (
    BatchFileRun,
    Block,
    Progress,
    _Tally,
    error_line,
    numbered_blocks,
)
from connector.tools.interrupts import Interrupts

if TYPE_CHECKING:
    from connector.core.engine import Engine

__all__ = ["PIPE_BYTES", "WINDOW", "default_workers", "run_in_workers"]

#: Blocks a worker may have unwritten (dealt, or answered and waiting for the blocks
#: before them) before the parent deals only to the worker whose answer is next.
WINDOW = 8


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
    """Let the pipe hold several blocks, so that dealing a worker its next block
    seldom waits for it to finish the one it is on while the other worker runs dry.
    Where that is not allowed, the default stays."""
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
        self.answers: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue()
        #: Blocks dealt to it, and blocks it has answered (counted by the reader).
        self.dealt = 0
        self.answered = 0
        #: Its answers have ended (set by the reader): it is dealt nothing more.
        self.ended = False
        self._reader = threading.Thread(
            target=self._read, args=(from_worker,), name="connector-batch-answers", daemon=True
        )
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb", buffering=1 << 16) as answers:
            while (header := answers.readline()).endswith(b"\n"):
                size_text, _, counts = header.partition(b" ")
                size = int(size_text)
                block = answers.read(size)
                if len(block) != size:
                    break  # the worker ended while it wrote: that block is unanswered
                self.answers.put((counts, block))
                self.answered += 1
        self.ended = True
        self.answers.put(None)  # the worker ended: every block not answered yet never will be

    def send(self, first: int, lines: int, block: bytes) -> None:
        self.input.write(b"%d %d %d\n" % (first, lines, len(block)))
        self.input.write(block)
        self.input.flush()
        self.dealt += 1

    def close_input(self) -> None:
        self.input.close()


def _received(blocks: IO[bytes], sizes: deque[int]) -> Iterator[Block]:
    """A worker's blocks, as the parent framed them; notes each block's number of
    lines (its answer is framed when that many lines are answered)."""
    while header := blocks.readline():
        first, count, size = header.split()
        lines = int(count)
        sizes.append(lines)
        yield int(first), lines, blocks.read(int(size))


class _BlockWriter:
    """A worker's output: lines gathered until a block is answered, then sent framed
    with the block's tally (the run's tally since the block before)."""

    def __init__(self, out: IO[bytes], sizes: deque[int]) -> None:
        self._out = out
        self._sizes = sizes
        self._parts: list[bytes] = []
        self.tally = _Tally()
        self._before = (0, 0, 0, 0)  # sent, kept, blank, failed, up to the last block

    def write(self, data: bytes, /) -> int:
        self._parts.append(data)
        sizes = self._sizes
        while sizes and len(self._parts) >= sizes[0]:
            count = sizes.popleft()
            block = b"".join(self._parts[:count])
            del self._parts[:count]
            tally, (sent, kept, blank, failed) = self.tally, self._before
            numbers = b",".join(b"%d" % n for n in tally.failed[failed:]) or b"-"
            self._out.write(
                b"%d %d %d %d %s\n"
                % (len(block), tally.sent - sent, tally.kept - kept, tally.blank - blank, numbers)
            )
            self._out.write(block)
            self._out.flush()
            self._before = (tally.sent, tally.kept, tally.blank, len(tally.failed))
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _work(
    to_worker: int,
    from_worker: int,
    make_engine: Callable[[], AbstractContextManager[Engine]],
    module: str,
    connection: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
) -> int:
    """A worker's whole life, in the forked child."""
    sizes: deque[int] = deque()
    with (
        os.fdopen(to_worker, "rb", buffering=1 << 16) as blocks,
        os.fdopen(from_worker, "wb", buffering=1 << 16) as out,
    ):
        writer = _BlockWriter(out, sizes)
        run = BatchFileRun(_received(blocks, sizes), writer, sys.stderr, progress=False)
        writer.tally = run.tally  # counted before each line is written
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

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # elsewhere a worker ends at its next write to the parent (broken pipe)
    if os.getppid() != parent:  # the parent ended before the signal was set
        os._exit(1)


def _child(parent: int, fds: list[int], work: Callable[[], int]) -> None:
    """Run ``work`` in the forked child and end it there, whatever happens."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (see above)
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
    make_engine: Callable[[], AbstractContextManager[Engine]],
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
    #: Whose answer comes next, in input order, with the block's first line and count.
    pending: deque[tuple[_Worker, int, int]] = deque()
    unanswered = 0  # lines of the blocks of workers that ended before answering them
    read = 0

    def take(worker: _Worker, first: int, lines: int, answer: tuple[bytes, bytes] | None) -> None:
        nonlocal unanswered
        if answer is None:
            worker.answers.put(None)  # for its next block too
            out.write(_unanswered(first, lines))
            tally.failed.extend(range(first, first + lines))
            unanswered += lines
        else:
            counts, block = answer
            out.write(block)
            _add(counts, tally)
        if bar is not None:
            bar.show(read, tally)

    def drain(wait: bool) -> None:
        while pending:
            worker, first, lines = pending[0]
            try:
                answer = worker.answers.get(block=wait)
            except queue.Empty:
                return
            pending.popleft()
            take(worker, first, lines, answer)
            wait = False

    def deal(first: int, lines: int, block: bytes) -> bool:
        """Give the block to a worker; False when the workers were ended (a second
        interrupt) before one took it."""
        while not stop.forced:
            worker = _next_worker(workers, pending)
            try:
                worker.send(first, lines, block)
            except BrokenPipeError:
                # It ended before it could read the whole block, so it answered none of
                # it: the block goes to another worker.
                worker.ended = True
                continue
            pending.append((worker, first, lines))
            return True
        return False

    def end_workers() -> None:  # the second interrupt: their lines get error lines
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)

    stop = Interrupts(end_workers)
    try:
        with stop.handled():
            for first, lines, block in numbered_blocks(stream):
                if stop.asked or not deal(first, lines, block):
                    break
                read = first + lines - 1
                drain(wait=False)
            for worker in workers:
                with contextlib.suppress(BrokenPipeError):
                    worker.close_input()
            while pending:
                drain(wait=True)
        tally.read = read
        tally.interrupted = stop.asked
    finally:
        for worker in workers:
            if not worker.input.closed:
                with contextlib.suppress(OSError):
                    worker.close_input()
        failed = [w.pid for w in workers if os.waitpid(w.pid, 0)[1] != 0]
        out.flush()
        if bar is not None:
            bar.close(read, tally)
    if unanswered:
        err.write(
            f"{len(failed)} batch worker(s) ended before answering {unanswered:,} line(s): "
            "each has an error line; it may have been sent before the worker ended "
            "(a request written ahead is in `connector incomplete list`)\n"
        )
    elif failed:
        raise RuntimeError(f"{len(failed)} batch worker(s) failed")
    return tally


def _next_worker(workers: list[_Worker], pending: deque[tuple[_Worker, int, int]]) -> _Worker:
    """Who gets the next block: the worker with the fewest blocks unanswered (the first
    of them on a tie); but once :data:`WINDOW` blocks a worker are unwritten, the worker
    whose answer is next, so that no worker runs further ahead of it. A worker that
    ended gets nothing; when all have, the run cannot go on."""
    live = [w for w in workers if not w.ended]
    if not live:
        raise RuntimeError("every batch worker ended before the file was read")
    if len(pending) >= WINDOW * len(live) and not pending[0][0].ended:
        return pending[0][0]
    return min(live, key=lambda w: w.dealt - w.answered)


def _unanswered(first: int, lines: int) -> bytes:
    """The output lines of a block whose worker ended before answering it."""
    ended = RemoteRuntimeError(
        "its batch worker ended before answering it; it may have been sent (a request "
        "written ahead is kept for retry)"
    )
    return b"".join(error_line(number, ended) for number in range(first, first + lines))


def _add(counts: bytes, tally: _Tally) -> None:
    """Add a block's tally, ``b"SENT KEPT BLANK FAILED"``, to the run's."""
    sent, kept, blank, failed = counts.split()
    tally.sent += int(sent)
    tally.kept += int(kept)
    tally.blank += int(blank)
    if failed != b"-":
        tally.failed.extend(int(n) for n in failed.split(b","))
