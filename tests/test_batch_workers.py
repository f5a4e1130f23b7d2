"""``run --batch`` over worker processes: whom the parent deals each block to, and how
the workers' tallies come back (cutting the file into blocks is in test_batch_file.py,
the end-to-end runs are in test_batch.py)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import pytest

import connector
from connector.testing.sink import Fault, Sink
from connector.tools import batch_file, batch_workers
from connector.tools.batch_file import _Tally
from tests.conftest import WRITE_KEY


def _worker(dealt: int, answered: int, ended: bool = False) -> Any:
    return SimpleNamespace(dealt=dealt, answered=answered, ended=ended)


def _pending(*workers: Any) -> deque[Any]:
    return deque((worker, 1, 1) for worker in workers)


def test_the_next_block_goes_to_the_worker_with_fewest_unanswered() -> None:
    a, b, c = _worker(5, 1), _worker(4, 2), _worker(3, 0)
    assert batch_workers._next_worker([a, b, c], _pending(a, b, c)) is b
    # A tie goes to the first, so the first blocks go round.
    idle = [_worker(0, 0), _worker(0, 0)]
    assert batch_workers._next_worker(idle, deque()) is idle[0]


def test_no_worker_runs_a_window_ahead_of_the_answer_that_is_next() -> None:
    slow, fast = _worker(3, 0), _worker(40, 38)
    window = _pending(slow, *[fast] * (batch_workers.WINDOW * 2 - 1))
    assert batch_workers._next_worker([slow, fast], window) is slow
    window.pop()
    assert batch_workers._next_worker([slow, fast], window) is fast


def test_a_worker_that_ended_is_dealt_nothing() -> None:
    ended, live = _worker(1, 0, ended=True), _worker(9, 0)
    assert batch_workers._next_worker([ended, live], _pending(ended)) is live
    # Not even when its answer is the one the others wait for.
    full = _pending(ended, *[live] * (batch_workers.WINDOW * 2))
    assert batch_workers._next_worker([ended, live], full) is live
    with pytest.raises(RuntimeError, match="every batch worker ended"):
        batch_workers._next_worker([ended], _pending(ended))


@pytest.mark.parametrize(
    ("counts", "sent", "kept", "blank", "failed"),
    [
        (b"3 0 1 -", 3, 0, 1, []),
        (b"0 2 0 17,902", 0, 2, 0, [17, 902]),
    ],
)
def test_a_blocks_tally_adds_up(
    counts: bytes, sent: int, kept: int, blank: int, failed: list[int]
) -> None:
    tally = _Tally(sent=1, failed=[4], kept=1, blank=1)
    batch_workers._add(counts, tally)
    assert (tally.sent, tally.kept, tally.blank) == (1 + sent, 1 + kept, 1 + blank)
    assert tally.failed == [4, *failed]


def test_a_worker_frames_each_block_with_its_own_tally() -> None:
    out = io.BytesIO()
    sizes: deque[int] = deque([2, 1])
    writer = batch_workers._BlockWriter(out, sizes)
    tally = writer.tally
    tally.sent += 1
    writer.write(b"one\n")
    tally.failed.append(2)
    writer.write(b"two\n")  # the first block is answered
    tally.blank += 1
    writer.write(b"three\n")
    assert out.getvalue() == b"8 1 0 0 2\none\ntwo\n6 0 0 1 -\nthree\n"


def _in_workers(
    count: int,
    registry: connector.Registry,
    sink: Sink,
    data: bytes,
    stream: IO[bytes] | None = None,
) -> tuple[_Tally, list[dict[str, Any]], str]:
    """``data`` (or ``stream``) through ``count`` workers forked from this process
    (segment.track to the sink, no store): the tally, the output lines read back, and
    what went to stderr."""

    @contextlib.contextmanager
    def make_engine() -> Iterator[connector.Engine]:
        with connector.Engine(registry) as engine:
            yield engine

    out, err = io.BytesIO(), io.StringIO()
    tally = batch_workers.run_in_workers(
        count,
        make_engine,
        "segment.track",
        {"writeKey": WRITE_KEY, "host": sink.url},
        None,
        stream if stream is not None else io.BytesIO(data),
        out,
        err,
        progress=False,
    )
    return tally, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of ~300 bytes: a short file crosses many block borders."""
    monkeypatch.setattr(batch_file, "BLOCK_BYTES", 300)
    monkeypatch.setattr(batch_workers, "WINDOW", 2)


@pytest.mark.usefixtures("small_blocks")
def test_many_small_blocks_answer_in_order_with_the_run_tally(
    registry: connector.Registry, sink: Sink, tmp_path: Path
) -> None:
    """Lines over many blocks and three workers (in this process, forked): every line is
    answered once, in order, and the tally the parent adds up is the lines' own."""
    lines = [json.dumps({"event": f"E{i}", "userId": f"u{i}"}) for i in range(400)]
    for bad in (0, 7, 8, 199, 399):
        lines[bad] = json.dumps({"event": f"bad {bad}"})
    for blank in (3, 4, 200, 398):
        lines[blank] = ""
    data = ("\n".join(lines) + "\n").encode()

    tally, answers, _ = _in_workers(3, registry, sink, data)
    assert [a["line"] for a in answers] == list(range(1, 401))
    assert [a["line"] for a in answers if "error" in a] == [1, 8, 9, 200, 400]
    assert [a["line"] for a in answers if "blank" in a] == [4, 5, 201, 399]
    assert (tally.sent, tally.failed, tally.blank, tally.kept) == (391, [1, 8, 9, 200, 400], 4, 0)
    assert tally.read == 400
    assert len(sink.messages()) == 391


@pytest.mark.usefixtures("small_blocks")
def test_a_worker_that_ends_leaves_no_line_unanswered(
    registry: connector.Registry,
    sink: Sink,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One of two workers dies right after it has read its first block (as a killed
    worker would): each line it was dealt gets an error line saying it may have been
    sent, the other worker answers the rest (the blocks the dead one could not take
    are dealt again), the output still answers every line in order, the tally adds up,
    and stderr says what happened."""
    real = batch_workers._received
    first_to_die = tmp_path / "dies"

    def received(blocks: Any, sizes: deque[int]) -> Iterator[batch_file.Block]:
        for item in real(blocks, sizes):
            with contextlib.suppress(FileExistsError):
                os.close(os.open(first_to_die, os.O_CREAT | os.O_EXCL))
                os._exit(3)  # this worker read one block and answers none of it
            yield item

    monkeypatch.setattr(batch_workers, "_received", received)
    lines = [json.dumps({"event": f"E{i}", "userId": f"u{i}"}) for i in range(400)]
    data = ("\n".join(lines) + "\n").encode()

    tally, answers, err = _in_workers(2, registry, sink, data)
    assert [a["line"] for a in answers] == list(range(1, 401))
    ended = [a for a in answers if "error" in a]
    assert ended and all("batch worker ended" in a["error"]["message"] for a in ended)
    assert all(a["error"]["message"].startswith(f"line {a['line']}:") for a in ended)
    assert tally.failed == [a["line"] for a in ended]
    assert tally.sent == 400 - len(ended) == len(sink.messages())
    assert f"ended before answering {len(ended):,} line(s)" in err


class _Interrupted(io.BytesIO):
    """A file whose ``at``-th read comes with a Ctrl-C: SIGINT to this process and to
    the workers (``pids``), as a terminal sends it to the whole process group."""

    def __init__(self, data: bytes, at: int, pids: list[int]) -> None:
        super().__init__(data)
        self.at, self.pids, self.reads = at, pids, 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        if self.reads == self.at:
            for pid in [*self.pids, os.getpid()]:
                os.kill(pid, signal.SIGINT)
        return super().read(size)


@pytest.fixture
def worker_pids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the workers the next run forks."""
    pids: list[int] = []
    real = batch_workers._Worker.__init__

    def spy(self: Any, pid: int, *args: Any) -> None:
        pids.append(pid)
        real(self, pid, *args)

    monkeypatch.setattr(batch_workers._Worker, "__init__", spy)
    return pids


def _lines(count: int) -> bytes:
    return "".join(
        json.dumps({"event": "E", "userId": f"u{i}"}) + "\n" for i in range(count)
    ).encode()


@pytest.mark.usefixtures("small_blocks")
def test_ctrl_c_stops_reading_and_answers_every_line_dealt(
    registry: connector.Registry, sink: Sink, worker_pids: list[int]
) -> None:
    """The first Ctrl-C stops the reading: the workers (which ignore it) still answer
    every block they were dealt, the output answers lines 1..N in order with nothing
    lost, and the summary says where the run stopped."""
    data = _lines(300)
    stream = _Interrupted(data, at=10, pids=worker_pids)
    tally, answers, _ = _in_workers(2, registry, sink, data, stream)
    assert tally.interrupted
    assert 0 < tally.read < 300
    assert [a["line"] for a in answers] == list(range(1, tally.read + 1))
    assert all("bundles" in a for a in answers)  # no worker ended: each answered its own
    assert tally.sent == tally.read == len(sink.messages())
    summary = batch_file.summary_line(tally)
    assert f"interrupted after line {tally.read:,}: the lines after it have no answer" in summary


@pytest.mark.usefixtures("small_blocks")
def test_a_second_ctrl_c_ends_the_workers_and_each_line_gets_its_answer(
    registry: connector.Registry, sink: Sink, worker_pids: list[int]
) -> None:
    """The second Ctrl-C does not wait for a slow remote: the workers are ended, and
    every line they had not answered gets an error line saying it may have been sent."""
    sink.inject(Fault(status=None, delay=5), Fault(status=None, delay=5))
    second = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    data = _lines(300)

    class _Twice(_Interrupted):
        def read(self, size: int | None = -1) -> bytes:
            if self.reads + 1 == self.at:
                second.start()  # the workers' batches are then out, held by the sink
            return super().read(size)

    tally, answers, err = _in_workers(2, registry, sink, data, _Twice(data, 10, worker_pids))
    second.cancel()
    assert tally.interrupted
    assert [a["line"] for a in answers] == list(range(1, tally.read + 1))
    ended = [a for a in answers if "error" in a]
    assert ended and all("batch worker ended" in a["error"]["message"] for a in ended)
    assert "ended before answering" in err
