"""Benchmarks of the engine against the official Segment library and raw httpx.

Run with ``make bench`` or ``python -m benchmarks`` (``--smoke`` for CI, ``--json PATH``
to keep the figures). Everything is measured in one run, against one loopback receiver
in its own process, so the ratios compare like with like on the same (noisy) machine;
absolute figures from different runs or machines are not comparable.

Modules:

* :mod:`benchmarks.receiver`: a minimal, fast Segment-compatible HTTP/1.1 receiver
  (asyncio), run in its own process, that counts delivered events;
* :mod:`benchmarks.cases`: the cases (prepare, single runs, bulk, cold start, memory);
* :mod:`benchmarks.memory`: the subprocess that measures peak memory of a batch run;
* :mod:`benchmarks.report`: machine info and the results table.

See docs/performance.md for what each case measures and the latest figures.
"""

from __future__ import annotations

__all__: list[str] = []
