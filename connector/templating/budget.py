"""One render's budget: loop iterations and calls, work, and wall time.

Every single operation a template can run is bounded by the sandbox's checks (text and
collection sizes, integer bits, ``range``); what remains unbounded is their *number*: a
loop, a chain of filters, a macro that calls itself. So each render gets three
allowances, spent as it goes and checked at every spending point:

- steps: ``{% for %}`` iterations and template-level calls (nested loops multiply, and
  so does a macro calling itself twice);
- work: characters, bytes and items that filters, methods, operators and output walk
  or build (a sort over a million items, a text uppercased many times, ``{% set %}``
  blocks writing the same text again and again);
- time: a wall-clock deadline, checked at every step and every unit of work spent, so
  a render stops within one operation of its deadline, and each operation is bounded.

Outside a render (Jinja folding constants at compile time) nothing is counted: what a
constant expression may do is bounded by the template's own source.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from threading import get_ident
from typing import NoReturn

__all__ = [
    "HEAVY",
    "IDLE",
    "MAX_RENDER_SECONDS",
    "MAX_RENDER_STEPS",
    "MAX_RENDER_WORK",
    "arm",
    "charge",
    "charge_in",
    "current",
    "disarm",
    "enter",
    "leave",
    "overrun",
    "render_budget",
    "spend",
]

#: Most ``{% for %}`` iterations and calls one render may run, all together: each loop
#: is bounded by its data or ``range``, but nested loops multiply (three nested
#: ``range(10000)`` would run for hours), and so do macros that call themselves.
MAX_RENDER_STEPS = 100_000
#: Most characters, bytes and items one render's filters, methods, operators and output
#: may walk or build, all together (twenty times the largest single value).
MAX_RENDER_WORK = 20_000_000
#: Longest one render may run, checked at every step and before every heavy operation.
MAX_RENDER_SECONDS = 2.0
#: Work above which an operation reads the clock before it runs. Lighter operations
#: are many only in loops, and every loop iteration reads it.
HEAVY = 1000

#: The current render's [steps left, work left, deadline, seconds allowed].
_BUDGET: ContextVar[list[float] | None] = ContextVar("connector_render_budget", default=None)


def enter(seconds: float | None = None) -> Token[list[float] | None]:
    """Start one render's allowance of steps, work and time (``seconds``, by default
    MAX_RENDER_SECONDS, read at each call); :func:`leave` ends it. The fast path uses
    this pair directly (a ``with`` block costs more on its hot path)."""
    limit = MAX_RENDER_SECONDS if seconds is None else seconds
    return _BUDGET.set([MAX_RENDER_STEPS, MAX_RENDER_WORK, time.monotonic() + limit, limit])


def leave(token: Token[list[float] | None]) -> None:
    """End the allowance :func:`enter` started."""
    _BUDGET.reset(token)


#: The allowances of a disarmed budget (see :func:`arm`): endless.
IDLE = float("inf")


def arm() -> list[float]:
    """:func:`enter` for the fast path, cheaper: a budget list of this context's own,
    set once and reset in place for each render, then :func:`disarm`'d (its allowances
    made endless, so that nothing outside a render is ever refused). Fast-path renders
    never yield or nest, so one list per context and thread serves them all; a render's
    own budget (render_budget) is never reused: a list of the fast path's is marked by a
    fifth item, the thread it belongs to."""
    budget = _BUDGET.get()
    thread = get_ident()
    if budget is None or len(budget) < 5 or budget[4] != thread:
        # A context copied into another thread (asyncio.to_thread) must not share it.
        budget = [IDLE, IDLE, IDLE, 0.0, thread]
        _BUDGET.set(budget)
    limit = MAX_RENDER_SECONDS
    budget[0] = MAX_RENDER_STEPS
    budget[1] = MAX_RENDER_WORK
    budget[2] = time.monotonic() + limit
    budget[3] = limit
    return budget


def disarm(budget: list[float]) -> None:
    """End the render :func:`arm` started."""
    budget[0] = budget[1] = budget[2] = IDLE


@contextmanager
def render_budget(seconds: float | None = None) -> Iterator[None]:
    """One render's allowance of steps, work and time (see :func:`enter`)."""
    token = enter(seconds)
    try:
        yield
    finally:
        leave(token)


def _late(budget: list[float]) -> OverflowError:
    return OverflowError(f"the template ran over {budget[3]:g} seconds")


#: The current render's budget list, or None outside a render: callers on a hot path
#: (the filter guard) spend from it directly, as :func:`charge` does.
current = _BUDGET.get


def overrun(budget: list[float]) -> NoReturn:
    """Raise the error of a budget whose work ran out, or whose deadline passed."""
    if budget[1] < 0:
        raise OverflowError(
            f"the template ran over {MAX_RENDER_WORK:,} characters and items of work"
        )
    raise _late(budget)


def charge_in(budget: list[float], units: int) -> None:
    """``units`` of linear work spent from ``budget`` (a render's, handed over by its
    caller): refused when over; the clock is read only before heavy work (past
    :data:`HEAVY`), as light calls are many only in loops, which read it anyway."""
    budget[1] -= units
    if budget[1] < 0 or (units > HEAVY and time.monotonic() > budget[2]):
        overrun(budget)


def spend() -> None:
    """One loop iteration or template-level call of the current render."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget[0] -= 1
    if budget[0] < 0:
        raise OverflowError(f"the template ran over {MAX_RENDER_STEPS:,} loop iterations and calls")
    if time.monotonic() > budget[2]:
        raise _late(budget)


def charge(units: int) -> None:
    """``units`` of work (characters, bytes or items walked or built) about to be spent
    by the current render: refused, before the work, when over the budget or late."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget[1] -= units
    if budget[1] < 0:
        raise OverflowError(
            f"the template ran over {MAX_RENDER_WORK:,} characters and items of work"
        )
    if time.monotonic() > budget[2]:
        raise _late(budget)
