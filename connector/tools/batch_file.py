"""``connector run --batch FILE``: a JSON-lines file through a batchable module.

Contract (hosts script against it):

* Input: one JSON object a line, the module's parameters; or
  ``{"parameters": {...}, "context": {...}}`` (only those two keys) when a line brings
  the earlier bundles its templates refer to (merged over ``--context``).
* Output line N answers input line N, on stdout: ``{"line": N, "bundles": [...]}``,
  ``{"line": N, "error": {...}}`` (the message starts with ``line N:``), or, for a
  blank line, ``{"line": N, "blank": true}``. With ``--dry-run``: ``{"line": N,
  "request": {...}}`` (auth redacted), nothing sent.
* Stderr: a progress line while it runs, only when stderr is a terminal (tqdm), and a
  summary at the end: ``50,000 sent, 3 failed (lines 17, 902, 40,001), 0 kept for
  retry``.

Why the per-line work is lean: at tens of thousands of lines a second, reading and
writing JSON is a large share of a run. The file is read in blocks of whole lines
(:func:`read_blocks`: one process reads them as they come, the workers of
:mod:`connector.tools.batch_workers` are dealt them), each split at once. Lines are
bytes parsed with orjson; a line with a long run of digits (an integer orjson would
turn into a float) takes the standard library's reader instead, so no number changes
on the way (NaN and Infinity are read as values there, and the engine's checks name the
field holding one). A block without such a run, the usual case, is cleared whole, so
its lines are not searched one by one.
"""

from __future__ import annotations

import errno
import io
import json
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Protocol, cast

import orjson

from connector.errors import DataError, RunError
from connector.runs.batch_items import BundlesJSON
from connector.tools.interrupts import Interrupts, raise_interrupt

if TYPE_CHECKING:
    from connector.core.engine import Engine
    from connector.runs.batch import BatchInput

__all__ = [
    "BLOCK_BYTES",
    "BatchFileRun",
    "Block",
    "Progress",
    "error_line",
    "numbered_blocks",
    "one_process_interrupts",
    "read_blocks",
    "summary_line",
    "whole_writes",
]

#: Bytes of whole lines read at a time (~550 of the benchmark's lines; more where a
#: line is longer than this): what a worker is dealt at a time too.
BLOCK_BYTES = 256 * 1024

#: A block of the file: the number of its first line, how many lines it holds, and
#: their bytes (whole lines; the file's last line may lack its newline).
Block = tuple[int, int, bytes]

#: Integers orjson reads as floats (over 64 bits) have 19 digits or more: a line with
#: 19 digits in a row is read by the standard library. Found by mapping every digit to
#: ``D`` and searching for 19 of them (C speed, a third of a regular expression's cost).
_DIGITS_AS_D = bytes(0x44 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_DIGITS = b"D" * 19
#: The keys of a line that brings its own context.
_WRAPPED = frozenset({"parameters", "context"})
#: Lines shown by number in the summary before "and N more".
_SHOWN_LINES = 10
#: Results between two progress refreshes.
_PROGRESS_EVERY = 512


def read_blocks(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """The file as blocks of whole lines, each with its number of lines (the last line
    may lack its newline). A line longer than a block makes a block of its own: its
    pieces are kept apart until its end is read, so that each byte is searched and
    copied once (joining them at every read would be quadratic in the line's length).

    A terminal (``--batch -`` typed in) is read a line at a time: a read of a block
    returns only at a Ctrl-D, and the next read would wait for another one, where one
    Ctrl-D at a line's start ends the input of any command reading a terminal."""
    if stream.isatty():
        for line in stream:
            yield 1, line
        return
    rest: list[bytes] = []  # the start of a line whose end is not read yet
    while data := stream.read(BLOCK_BYTES):
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            rest.append(data)
            continue
        if rest:
            rest.append(data[:cut])
            block = b"".join(rest)
        else:
            block = data[:cut] if cut < len(data) else data
        rest = [data[cut:]] if cut < len(data) else []
        yield block.count(b"\n"), block
    if rest:
        block = b"".join(rest)
        yield block.count(b"\n") + 1, block


def numbered_blocks(stream: IO[bytes]) -> Iterator[Block]:
    """:func:`read_blocks` with the number of each block's first line."""
    first = 1
    for count, block in read_blocks(stream):
        yield first, count, block
        first += count


def _parse(raw: bytes, number: int) -> Any:
    """One line's JSON, or its DataError naming the line."""
    try:
        if _LONG_DIGITS not in raw.translate(_DIGITS_AS_D):
            return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # reported by the strict reader below, with the standard library's words
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DataError(
            f"line {number}: not UTF-8 text (byte {exc.start + 1} is 0x{raw[exc.start]:02x})",
            field="--batch",
        )
    try:
        # NaN and Infinity are read as values: the engine's checks then name the field
        # that holds one (a line-wide error here would name none).
        return json.loads(text)
    except RecursionError:
        return DataError(f"line {number}: JSON nested too deeply", field="--batch")
    except json.JSONDecodeError as exc:
        return DataError(
            f"line {number}: invalid JSON at column {exc.colno}: {exc.msg}", field="--batch"
        )
    except ValueError as exc:  # an integer of thousands of digits
        reason = str(exc)
        if "integer string conversion" in reason:
            reason = f"an integer has more than {sys.get_int_max_str_digits():,} digits"
        return DataError(f"line {number}: {reason}", field="--batch")


def _item(value: Any, number: int) -> Mapping[str, Any] | BatchInput | RunError:
    """A parsed line as a batch input, or its DataError."""
    from connector.runs.batch import BatchInput

    if isinstance(value, RunError):
        return value
    if not isinstance(value, dict):
        return DataError(f"line {number} must be a JSON object", field="--batch")
    if "parameters" in value and value.keys() <= _WRAPPED:
        parameters, context = value["parameters"], value.get("context")
        if not isinstance(parameters, dict):
            return DataError(f"line {number}: parameters must be a JSON object", field="--batch")
        if context is not None and not isinstance(context, dict):
            return DataError(f"line {number}: context must be a JSON object", field="--batch")
        return BatchInput(parameters, context)
    return value


class _Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


@dataclass
class _Tally:
    sent: int = 0
    failed: list[int] = field(default_factory=list)
    kept: int = 0
    blank: int = 0
    read: int = 0
    #: The run was interrupted (Ctrl-C) before it read the whole file.
    interrupted: bool = False
    #: It stopped where it was (a second Ctrl-C in one process), not between blocks:
    #: lines after its last answer may have been sent (their batch was out, or answered
    #: and not written yet).
    at_once: bool = False


def summary_line(tally: _Tally, dry_run: bool = False) -> str:
    """``50,000 sent, 3 failed (lines 17, 902, 40,001), 0 kept for retry``."""
    failed = tally.failed
    if failed:
        shown = ", ".join(f"{n:,}" for n in failed[:_SHOWN_LINES])
        more = f" and {len(failed) - _SHOWN_LINES:,} more" if len(failed) > _SHOWN_LINES else ""
        lines = f" (line{'s' if len(failed) > 1 else ''} {shown}{more})"
    else:
        lines = ""
    if dry_run:
        text = f"{tally.sent:,} checked, {len(failed):,} failed{lines}, nothing sent"
    else:
        text = f"{tally.sent:,} sent, {len(failed):,} failed{lines}, {tally.kept:,} kept for retry"
    if tally.blank:
        text += f", {tally.blank:,} blank line{'s' if tally.blank > 1 else ''}"
    if tally.interrupted:
        answered = tally.sent + len(failed) + tally.blank  # output lines 1..answered
        text += f"; interrupted after line {answered:,}: the lines after it have no answer"
        if dry_run:
            return text  # nothing was sent nor kept
        if tally.at_once:
            text += (
                ", and may have been sent (a batch was out, or answered and not written "
                "yet; one that failed is kept for retry: connector incomplete list)"
            )
        else:
            text += " (a request that was out is kept for retry: connector incomplete list)"
    return text


class Progress:
    """The progress line on a terminal: lines read, sent and failed, and the rate. tqdm
    draws it (at most ten times a second, on one line it clears at the end)."""

    def __init__(self, err: IO[str]) -> None:
        import shutil

        from tqdm import tqdm

        # A terminal that reports no size (a bare pty) still gets a line (tqdm draws
        # nothing on a terminal of 0 rows).
        size = shutil.get_terminal_size()
        self._bar = tqdm(
            file=err,
            bar_format="{desc}",
            ncols=size.columns or 80,
            nrows=size.lines or 24,
            leave=False,
            desc="starting",
        )
        self._started = time.monotonic()

    def show(self, read: int, tally: _Tally) -> None:
        bar = self._bar
        done = tally.sent + len(tally.failed)
        elapsed = time.monotonic() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar.set_description_str(
            f"{read:,} lines read, {tally.sent:,} sent, {len(tally.failed):,} failed, "
            f"{rate:,.0f} lines/s",
            refresh=False,
        )
        bar.update(done - bar.n)

    def close(self, read: int, tally: _Tally) -> None:
        self.show(read, tally)
        self._bar.refresh()  # the final figures are drawn once, however fast the run
        self._bar.close()


def one_process_interrupts(*, at_once: bool = False) -> Interrupts:
    """A run in this process: a second Ctrl-C raises KeyboardInterrupt, never in the
    middle of writing a line (see :class:`Interrupts`)."""
    return Interrupts(raise_interrupt, _LINE_WRITES, at_once=at_once)


class BatchFileRun:
    """One ``run --batch``: reads the file lazily, writes one line per input line."""

    def __init__(
        self,
        blocks: Iterable[Block],
        out: IO[bytes] | _Writer,
        err: IO[str],
        *,
        progress: bool,
        interrupts: Interrupts | None = None,
    ) -> None:
        """``blocks``: the file's (:func:`numbered_blocks`), or a worker's share of
        them (see :mod:`connector.tools.batch_workers`). With ``interrupts``, a first
        Ctrl-C stops the reading at the next block."""
        self._blocks = blocks
        self._interrupts = interrupts
        self._out = out
        self._err = err
        #: Line numbers of the inputs handed on, and of blank lines between them, in
        #: order: results come back in input order, so the front says which line a
        #: result answers (a blank line is answered when the results before it are).
        self._order: deque[int] = deque()
        self.tally = _Tally()
        self._read = 0
        self._bar = Progress(err) if progress else None

    def inputs(self) -> Iterator[Mapping[str, Any] | BatchInput | RunError]:
        """The file's lines as batch inputs; a blank line is noted, not handed on.
        The usual line (an object of parameters, no long digit run) takes the inlined
        path: orjson, one type check."""
        append = self._order.append
        loads, digits, table, wrapped = orjson.loads, _LONG_DIGITS, _DIGITS_AS_D, "parameters"
        number = 0
        stop = self._interrupts
        for first, count, block in self._blocks:
            if stop is not None and stop.asked:
                self.tally.interrupted = True  # what was read is still answered
                break
            lines = block.split(b"\n")
            if len(lines) > count:
                lines.pop()  # after the block's last newline: no line
            clean = digits not in block.translate(table)  # no line has a long digit run
            number = first - 1
            self._read = number + count
            for raw in lines:
                number += 1
                if clean or digits not in raw.translate(table):
                    try:
                        value = loads(raw)
                    except orjson.JSONDecodeError:
                        value = None
                    else:
                        if type(value) is dict and wrapped not in value:
                            append(number)
                            yield value
                            continue
                if not raw.strip():
                    append(-number)
                    continue
                append(number)
                yield _item(_parse(raw, number), number)
        self.tally.read = number

    def _blanks(self) -> None:
        order, write = self._order, self._out.write
        while order and order[0] < 0:
            self.tally.blank += 1  # counted before it is written (a worker's block tally)
            try:
                write(b'{"line":%d,"blank":true}\n' % -order.popleft())
            except BaseException:
                self.tally.blank -= 1  # not written (see write)
                raise

    def write(self, result: Any, key: bytes = b"bundles") -> None:
        """Write the answer to the next input line (blank lines before it first)."""
        order = self._order
        if order[0] < 0:
            self._blanks()
        number = order.popleft()
        tally = self.tally
        kind = type(result)
        if kind is BundlesJSON or kind is list or kind is dict:
            tally.sent += 1
            if kind is BundlesJSON:
                data = result.data
            else:
                try:
                    data = orjson.dumps(result)
                except TypeError:
                    data = _dumps(result)
            try:
                self._out.write(b'{"line":%d,"%s":%s}\n' % (number, key, data))
            except BaseException:
                # A second Ctrl-C that stopped the write (on a full pipe, say): the line
                # is not in the output, so the summary must not count it as answered.
                tally.sent -= 1
                raise
        else:
            self._write_error(number, result)
        if self._bar is not None and (tally.sent + len(tally.failed)) % _PROGRESS_EVERY == 0:
            self._refresh()

    def _write_error(self, number: int, result: RunError) -> None:
        tally = self.tally
        tally.failed.append(number)
        kept = result.incomplete_id is not None
        tally.kept += kept
        try:
            self._out.write(error_line(number, result))
        except BaseException:
            tally.failed.pop()  # not written (see write)
            tally.kept -= kept
            raise

    def _refresh(self) -> None:
        assert self._bar is not None
        self._bar.show(self._read, self.tally)

    def finish(self, dry_run: bool = False) -> str:
        """Answer trailing blank lines; close the progress line; the summary."""
        self._blanks()
        self._out.flush()
        if self._bar is not None:
            self._bar.close(self._read, self.tally)
        return summary_line(self.tally, dry_run)

    def run(
        self,
        engine: Engine,
        module: str,
        connection: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
    ) -> None:
        from connector.runs.batch import batch

        write = self.write
        for result in batch(engine, module, connection, self.inputs(), context, as_json=True):
            write(result)

    def dry_run(
        self,
        engine: Engine,
        module: str,
        connection: Mapping[str, Any] | None,
        context: Mapping[str, Any] | None,
    ) -> None:
        from connector.runs.batch import BatchInput, unprepared

        for item in self.inputs():
            result: Any
            if isinstance(item, RunError):
                result = item
            else:
                own = context
                if isinstance(item, BatchInput):
                    own = {**(context or {}), **(item.context or {})}
                    item = item.parameters
                try:
                    result = engine.dry_run(module, connection, item, own)
                except RunError as exc:
                    result = exc
                except Exception as exc:  # as a batch run reports it: that line fails
                    result = unprepared(exc)
            self.write(result, b"request")


def error_line(number: int, error: RunError) -> bytes:
    """The output line of input line ``number`` that failed with ``error``: its message
    starts with ``line N``, and the error names the line too."""
    record = error.to_dict()
    prefix = f"line {number}"
    message = record["message"]
    if not message.startswith((prefix + ":", prefix + " ")):
        record["message"] = f"{prefix}: {message}"
    record["line"] = number
    return _dumps({"line": number, "error": record}) + b"\n"


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # an integer over 64 bits: the standard library writes it exactly
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class _WholeWrites:
    """An unbuffered output whose every write is finished. A raw stream's write may
    write only part of its bytes, and say so, when a signal interrupts it (Ctrl-C during
    a run, say); a buffered one writes the rest itself. ``PYTHONUNBUFFERED`` makes
    stdout raw, so a run that ignored the count would lose the rest of its output."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw

    def write(self, data: bytes, /) -> int:
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            if written is None:  # a non-blocking output that would block
                raise BlockingIOError(errno.EAGAIN, "the output would block")
            view = view[written:]
        return len(data)

    def flush(self) -> None:
        self._raw.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def whole_writes(stream: IO[bytes]) -> IO[bytes]:
    """``stream``, or where it is unbuffered, the same with every write finished (see
    :class:`_WholeWrites`)."""
    if isinstance(stream, io.BufferedIOBase):
        return stream
    return cast("IO[bytes]", _WholeWrites(stream))


#: Where a line is being written (see :class:`Interrupts`).
_LINE_WRITES = frozenset(
    f.__code__
    for f in (
        BatchFileRun.write,
        BatchFileRun._write_error,
        BatchFileRun._blanks,
        _WholeWrites.write,
    )
)


def open_batch(path: str) -> IO[bytes]:
    """The batch file (``-`` for stdin) as bytes."""
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")
