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
    bundles = await engine.arun(...)             # same behaviour, async

Errors are documented in :mod:`connector.errors`.
"""

from connector._version import __version__
from connector.engine import Engine, Prepared
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
from connector.loader import load, load_app
from connector.manifest import AppManifest, ModuleManifest
from connector.registry import LoadedModule, Registry

__all__ = [
    "AppManifest",
    "ConnectorError",
    "DataError",
    "Engine",
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
    "RunError",
    "UnknownModuleError",
    "__version__",
    "load",
    "load_app",
]
