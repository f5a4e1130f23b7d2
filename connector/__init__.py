"""connector: runs declarative, Make-style connector modules.

The public API::

    import connector

    registry = connector.load()                  # the apps shipped with the package
    registry = connector.load("my/manifests")    # or a folder of apps
    registry.module_ids()                        # ["segment.api_call", ...]
    registry.describe("segment.track")           # fields as JSON Schema, for forms

    with connector.Engine(registry) as engine:
        bundles = engine.run("segment.track", connection, parameters, context)
        request = engine.dry_run("segment.track", connection, parameters)
        for result in engine.run_batch("segment.track", connection, many):  # /v1/batch
            ...
    bundles = await engine.arun(...)             # same behaviour, async

    connector.Engine(registry, incomplete=connector.IncompleteStore(path))  # keep failures

Errors are documented in :mod:`connector.errors`.
"""

from typing import TYPE_CHECKING

from connector._version import __version__
from connector.core.engine import Engine, Prepared
from connector.core.loader import load, load_app
from connector.core.registry import LoadedModule, Registry
from connector.errors import (
    ConnectorError,
    DataError,
    InvalidAccessTokenError,
    InvalidConfigurationError,
    ManifestError,
    RateLimitError,
    RemoteConnectionError,
    RemoteRuntimeError,
    RunError,
    UnknownModuleError,
)
from connector.format.manifest import AppManifest, ModuleManifest, RetrySpec

if TYPE_CHECKING:
    from connector.runs.incomplete import IncompleteStore

__all__ = [
    "AppManifest",
    "ConnectorError",
    "DataError",
    "Engine",
    "IncompleteStore",
    "InvalidAccessTokenError",
    "InvalidConfigurationError",
    "LoadedModule",
    "ManifestError",
    "ModuleManifest",
    "Prepared",
    "RateLimitError",
    "Registry",
    "RemoteConnectionError",
    "RemoteRuntimeError",
    "RetrySpec",
    "RunError",
    "UnknownModuleError",
    "__version__",
    "load",
    "load_app",
]


def __getattr__(name: str) -> object:
    # IncompleteStore pulls in sqlite3: imported when first asked for, not at import.
    if name == "IncompleteStore":
        from connector.runs.incomplete import IncompleteStore

        return IncompleteStore
    raise AttributeError(f"module 'connector' has no attribute {name!r}")
