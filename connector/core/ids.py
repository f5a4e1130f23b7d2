"""Run and message ids: random (version 4) UUIDs as text, made fast.

A leaf module: every run takes one (``run.id``, which Segment's manifests use as the
``messageId`` a retry or replay keeps).
"""

from __future__ import annotations

import os
from collections import deque

__all__ = ["new_id"]


def new_id() -> str:
    """A random (version 4) UUID as text, 4x cheaper than ``str(uuid.uuid4())``.

    Made 256 at a time from one ``os.urandom`` call (the system call was half the cost
    of each), with the version and variant bits of all 256 set by one big-integer mask.
    The deque's ``popleft`` is atomic, so threads never share an id, and a forked child
    drops what it inherited (register_at_fork below) instead of repeating its parent's
    ids.
    """
    try:
        return _IDS.popleft()
    except IndexError:
        pass
    size = 16 * _ID_BATCH
    bits = (int.from_bytes(os.urandom(size)) & _ID_MASK) | _ID_BITS
    h = bits.to_bytes(size).hex()
    fresh = [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-"
        f"{h[i + 20 : i + 32]}"
        for i in range(0, 2 * size, 32)
    ]
    mine = fresh.pop()
    _IDS.extend(fresh)
    return mine


_ID_BATCH = 256
#: Per id: keep all bits but the version nibble and the variant's top two bits, then
#: set them (version 4, variant 10xx), for the whole batch of ids at once.
_ID_MASK = int.from_bytes(bytes.fromhex("ffffffffffff0fff3fffffffffffffff") * _ID_BATCH)
_ID_BITS = int.from_bytes(bytes.fromhex("00000000000040008000000000000000") * _ID_BATCH)
_IDS: deque[str] = deque()
os.register_at_fork(after_in_child=_IDS.clear)
