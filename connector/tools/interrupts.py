"""Ctrl-C and SIGTERM during a batch run, taken in steps instead of as an exception.

A batch run that stops must still end with whole output lines, each answering its input
line, and a summary that says where it stopped. An exception raised by the signal could
land anywhere: between dealing a block to a worker and noting whose it is, or in the
middle of writing a line. So :class:`Interrupts` turns the signals into flags and one
``force`` callback, which the run checks and calls where it is safe
(:mod:`connector.tools.batch_file` in one process, :mod:`connector.tools.batch_workers`
in the parent of the workers).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Collection, Iterator
from types import CodeType, FrameType

__all__ = ["Interrupts", "raise_interrupt"]


class Interrupts:
    """SIGINT (Ctrl-C) during a batch run, in two steps. The first asks the run to stop
    reading: what it has read is still answered, and the summary says where it stopped.
    The second calls ``force``: it ends the run now (the workers are ended, or one
    process raises KeyboardInterrupt). ``at_once``: the first is the second (lines typed
    on a terminal: the reading waits for the next line, so a flag would wait with it).
    Only the main thread takes signals: a run in another thread (a host's) leaves SIGINT
    as it was.

    ``finishing``: the code of functions that write an output line. A second Ctrl-C that
    lands in one is taken as soon as the run is out of it (a timer retries), since an
    exception there could cut the line, or leave it written and not counted; a third
    one is taken at once (a write that never ends, to a pipe nobody reads).

    SIGTERM (``docker stop``, a supervisor) is taken as a second Ctrl-C: the run ends
    soon, as asked, and its output still ends with a whole line and the summary."""

    def __init__(
        self,
        force: Callable[[], None],
        finishing: Collection[CodeType] = (),
        *,
        at_once: bool = False,
    ) -> None:
        self.asked = False
        self.forced = False
        self._force = force
        self._at_once = at_once
        self._finishing = frozenset(finishing) if hasattr(signal, "setitimer") else frozenset()
        self._presses = 0

    def _take(self, signum: int, frame: FrameType | None) -> None:
        self._presses += 2 if self._at_once and not self._presses else 1
        self.asked = True
        if self._presses > 1:
            self._end(frame)

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        self.asked = True
        self._presses = max(self._presses, 1) + 1
        self._end(frame)

    def _end(self, frame: FrameType | None) -> None:
        if self.forced:
            return
        if self._presses == 2 and frame is not None and frame.f_code in self._finishing:
            signal.setitimer(signal.ITIMER_REAL, _RETRY_SECONDS)  # once the line is out
            return
        self.forced = True
        self._force()

    def _retry(self, signum: int, frame: FrameType | None) -> None:
        self._end(frame)

    @contextlib.contextmanager
    def handled(self) -> Iterator[None]:
        """SIGINT and SIGTERM taken by these steps within the block."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        before = signal.signal(signal.SIGINT, self._take)
        term = signal.signal(signal.SIGTERM, self._terminate)
        alarm = signal.signal(signal.SIGALRM, self._retry) if self._finishing else None
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, before)
            signal.signal(signal.SIGTERM, term)
            if alarm is not None:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, alarm)


#: How soon a second Ctrl-C that landed while a line was written is taken again.
_RETRY_SECONDS = 0.01


def raise_interrupt() -> None:
    """One process's second interrupt: stop where it is."""
    raise KeyboardInterrupt
