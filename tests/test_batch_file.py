"""Reading a batch file: blocks of whole lines, and the lines they hold as a run's
inputs (the runs themselves are in test_batch.py and test_batch_workers.py)."""

from __future__ import annotations

import io
import json
import signal
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.errors import RunError
from connector.tools import batch_file
from connector.tools.interrupts import Interrupts


def _blocks(data: bytes, size: int, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bytes]]:
    monkeypatch.setattr(batch_file, "BLOCK_BYTES", size)
    return list(batch_file.read_blocks(io.BytesIO(data)))


@pytest.mark.parametrize(
    ("data", "size", "expected"),
    [
        (b"", 8, []),
        (b"a\n", 8, [(1, b"a\n")]),
        (b"a", 8, [(1, b"a")]),  # the last line without its newline
        (b"a\nb\nc\n", 4, [(2, b"a\nb\n"), (1, b"c\n")]),
        (b"a\nb\nc", 4, [(2, b"a\nb\n"), (1, b"c")]),
        # A line longer than a block is a block of its own, whole.
        (b"0123456789\nab\n", 4, [(1, b"0123456789\n"), (1, b"ab\n")]),
        (b"x\n0123456789", 4, [(1, b"x\n"), (1, b"0123456789")]),
        # Blank lines are lines: they keep their numbers.
        (b"\n\n\n", 2, [(2, b"\n\n"), (1, b"\n")]),
        (b"a\r\nb\r\n", 64, [(2, b"a\r\nb\r\n")]),
    ],
)
def test_blocks_are_whole_lines_with_their_count(
    data: bytes, size: int, expected: list[tuple[int, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _blocks(data, size, monkeypatch)
    assert blocks == expected
    assert b"".join(block for _, block in blocks) == data


def test_blocks_number_every_line_once(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [b"x" * (i % 37) for i in range(2000)]
    data = b"\n".join(lines) + b"\n"
    for size in (1, 50, 4096, 1 << 20):
        blocks = _blocks(data, size, monkeypatch)
        assert sum(count for count, _ in blocks) == len(lines)
        assert b"".join(block for _, block in blocks) == data


def test_a_line_of_many_blocks_costs_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line much longer than a block (a minified array on one line, say) is gathered
    from its pieces once. Copying and searching it again for every piece read is
    quadratic: a 128 MB line took the parent 20 s before it dealt a byte. Here 65,536
    pieces of one 16 MiB line: linear work is milliseconds, quadratic work is hours, so
    the bound below tells them apart with a margin of orders of magnitude either way."""
    monkeypatch.setattr(batch_file, "BLOCK_BYTES", 256)
    data = b"x" * (16 << 20) + b"\nab\n"
    found: list[list[tuple[int, bytes]]] = []
    thread = threading.Thread(
        target=lambda: found.append(list(batch_file.read_blocks(io.BytesIO(data)))),
        daemon=True,
    )
    thread.start()
    thread.join(timeout=60)
    assert found, "cutting one long line into blocks did not end within 60 s"
    assert sum(count for count, _ in found[0]) == 2
    assert b"".join(block for _, block in found[0]) == data


def _inputs(data: bytes, size: int) -> tuple[list[Any], list[int]]:
    """What a run over ``data`` in blocks of ``size`` bytes hands on, and its order of
    line numbers (blank lines negative)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_file, "BLOCK_BYTES", size)
        run = batch_file.BatchFileRun(
            batch_file.numbered_blocks(io.BytesIO(data)),
            io.BytesIO(),
            io.StringIO(),
            progress=False,
        )
        items = list(run.inputs())
    assert run.tally.read == data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    return [_comparable(item) for item in items], list(run._order)


def _comparable(item: Any) -> Any:
    return ("error", item.to_dict()) if isinstance(item, RunError) else item


#: Lines of every kind a file holds: objects (some with numbers orjson would turn into
#: floats, some bringing their own context), blank lines, JSON that is no object, and
#: bytes that are not JSON or not UTF-8.
_LINE = st.one_of(
    st.dictionaries(
        st.sampled_from(["event", "userId", "n", "parameters", "context"]),
        st.one_of(
            st.text(max_size=8),
            st.integers(min_value=-(10**25), max_value=10**25),
            st.floats(allow_nan=False, allow_infinity=False),
            st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
        ),
        max_size=4,
    ).map(lambda value: json.dumps(value).encode()),
    st.sampled_from([b"", b"   ", b"\r", b"[1, 2]", b"7", b"null", b"{", b'{"a": NaN}', b"\xff"]),
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=30), st.booleans(), st.integers(min_value=1, max_value=96))
def test_lines_in_blocks_are_read_as_line_by_line(
    lines: list[bytes], final_newline: bool, size: int
) -> None:
    """One semantics: the inlined reading of a block's lines (split at once, a block
    without a long digit run cleared whole, orjson) hands on what reading each line on
    its own gives, with the strict reader of a single line (``_parse``), in the same
    order and with the same numbers (``enumerate`` over the file). The newline is not
    part of a line: an error's column stays on the line it is about."""
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    expected: list[Any] = []
    order: list[int] = []
    for number, line in enumerate(io.BytesIO(data), start=1):
        raw = line.removesuffix(b"\n")  # a line is what comes before its newline
        if not raw.strip():
            order.append(-number)
            continue
        order.append(number)
        expected.append(_comparable(batch_file._item(batch_file._parse(raw, number), number)))
    assert _inputs(data, size) == (expected, order)


def test_a_long_digit_run_in_a_block_is_read_exactly() -> None:
    """Only the line with the long integer leaves the fast reader; its neighbours in the
    same block are still read, and the integer keeps every digit."""
    big = 123456789012345678901234567890
    data = b'{"n": 1}\n{"n": %d}\n{"n": 2}\n' % big
    assert _inputs(data, 1 << 16) == ([{"n": 1}, {"n": big}, {"n": 2}], [1, 2, 3])


class _ShortWrites(io.RawIOBase):
    """A raw output that writes at most 7 bytes a call, as a write a signal interrupted
    may, and says how many it wrote."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(b[:7])
        self.data += chunk
        return len(chunk)


def test_an_unbuffered_output_gets_every_byte_written() -> None:
    """With PYTHONUNBUFFERED stdout is raw: a write cut short by a signal says how much
    it wrote, and the rest is written, not lost."""
    raw = _ShortWrites()
    out = batch_file.whole_writes(raw)  # type: ignore[arg-type]
    data = b"".join(b'{"line":%d}\n' % i for i in range(1000))
    assert out.write(data) == len(data)
    assert bytes(raw.data) == data
    buffered = io.BytesIO()
    assert batch_file.whole_writes(buffered) is buffered  # a buffered one finishes its own


class _InterruptedAt(io.BytesIO):
    """An output whose write number ``at`` is interrupted before it writes anything:
    a second Ctrl-C landing while the run is blocked on a full stdout pipe."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self._left = at

    def write(self, b: Any, /) -> int:
        self._left -= 1
        if self._left == 0:
            raise KeyboardInterrupt
        return super().write(b)


@pytest.mark.parametrize(
    ("data", "answer"),
    [
        (b'{"a": 1}\n{"a": 2}\n{"a": 3}\n', [{"ok": True}]),
        (b'{"a": 1}\n{"a": 2}\n{"a": 3}\n', RunError("refused")),
        (b'{"a": 1}\n{"a": 2}\n\n{"a": 3}\n', [{"ok": True}]),  # the blank line is cut
    ],
)
def test_a_line_an_interrupt_kept_from_the_output_is_not_counted(data: bytes, answer: Any) -> None:
    """The summary of an interrupted run says which line the output answers last: a
    line whose write the interrupt stopped is not counted as answered."""
    out = _InterruptedAt(3)
    run = batch_file.BatchFileRun(
        [(1, data.count(b"\n"), data)], out, io.StringIO(), progress=False
    )
    inputs = run.inputs()
    with pytest.raises(KeyboardInterrupt):
        for _ in inputs:
            run.write(answer)
    run.tally.interrupted = True
    written = out.getvalue().splitlines()
    assert len(written) == 2
    assert "interrupted after line 2:" in batch_file.summary_line(run.tally)


class _PressesAt(io.BytesIO):
    """An output on which Ctrl-C is pressed ``presses`` times while the run writes its
    line number ``at`` (the signal as taken in the run's own write)."""

    def __init__(self, at: int, stop: Interrupts, presses: int) -> None:
        super().__init__()
        self._left, self._stop, self._presses = at, stop, presses

    def write(self, b: Any, /) -> int:
        self._left -= 1
        if self._left == 0:
            writing = sys._getframe(1)  # the run's write, where the signal lands
            for _ in range(self._presses):
                self._stop._take(signal.SIGINT, writing)
        return super().write(b)


@pytest.mark.parametrize("presses", [2, 3])
def test_a_second_ctrl_c_during_a_write_stops_the_run_after_the_line(presses: int) -> None:
    """Two Ctrl-C while a line is written: the line is finished and counted, and the run
    stops just after it. A third one stops it at once, the line not written nor
    counted. Either way the summary counts exactly the lines in the output."""
    stop = batch_file.one_process_interrupts()
    out = _PressesAt(3, stop, presses)
    data = b'{"a": 1}\n' * 5
    run = batch_file.BatchFileRun(
        [(1, 5, data)], out, io.StringIO(), progress=False, interrupts=stop
    )
    with stop.handled(), pytest.raises(KeyboardInterrupt):
        for _ in run.inputs():
            run.write([{"ok": True}])
        time.sleep(5)  # the retry's timer ends it here
    assert stop.forced
    written = len(out.getvalue().splitlines())
    assert written == (5 if presses == 2 else 2)
    assert run.tally.sent == written


@pytest.mark.parametrize(
    ("at_once", "dry_run", "says", "never"),
    [
        (False, False, "kept for retry", "may have been sent"),
        (True, False, "may have been sent", "nothing of"),
        (False, True, "interrupted after line 3", "kept for retry: connector"),
        (True, True, "interrupted after line 3", "may have been sent"),
    ],
)
def test_an_interrupted_summary_says_what_the_lines_after_may_be(
    at_once: bool, dry_run: bool, says: str, never: str
) -> None:
    """A run stopped where it was (a second Ctrl-C in one process) may have sent lines
    it did not answer yet: its batch was out, or answered and not written. A dry run
    sends and keeps nothing, so its summary does not send anyone to the store."""
    tally = batch_file._Tally(sent=3, interrupted=True, at_once=at_once)
    text = batch_file.summary_line(tally, dry_run=dry_run)
    assert says in text and never not in text, text
