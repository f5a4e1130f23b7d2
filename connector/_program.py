"""The ``connector`` program (the console script and ``python -m connector``).

It starts with the cyclic garbage collector off. Start-up is imports and the manifests'
load: hundreds of thousands of objects that all live as long as the process, which the
collector would walk again and again for nothing (~15 ms of a ~0.3 s command). The
command turns the collector back on, after freezing what start-up made, once it has
loaded what it runs (:func:`connector.tools.cli.started`). This module imports nothing
else first, so that no import runs before the collector is off.
"""

from __future__ import annotations

import gc


def main() -> None:
    """Run the command as a program: :func:`connector.tools.cli.entry`."""
    gc.disable()
    from connector.tools.cli import entry

    entry(collector_off=True)
