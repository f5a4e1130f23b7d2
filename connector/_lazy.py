"""Public names a package imports when they are first used, not when it is imported.

``connector`` and ``connector.service`` both list their names here: importing the
package then costs nothing, so the ``connector`` command reads its arguments (and, for
a batch run, starts its TLS set-up) before pydantic, Jinja or FastAPI are imported.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping

__all__ = ["lazy_names"]


def lazy_names(package: str, homes: Mapping[str, str]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: a name of ``homes`` (name -> the module
    it lives in) is imported from its home on first use and kept in the package, so
    later uses are plain lookups; any other name is an AttributeError."""

    def __getattr__(name: str) -> object:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
