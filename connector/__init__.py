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

from connector._lazy import lazy_names
from connector._version import __version__

if TYPE_CHECKING:
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


#: Where each public name lives; every error class is in :mod:`connector.errors`.
#: Importing the package imports none of them (see :mod:`connector._lazy`).
_HOMES = {
    **{name: "connector.errors" for name in __all__ if name.endswith("Error")},
    "Engine": "connector.core.engine",
    "Prepared": "connector.core.engine",
    "load": "connector.core.loader",
    "load_app": "connector.core.loader",
    "LoadedModule": "connector.core.registry",
    "Registry": "connector.core.registry",
    "AppManifest": "connector.format.manifest",
    "ModuleManifest": "connector.format.manifest",
    "RetrySpec": "connector.format.manifest",
    "IncompleteStore": "connector.runs.incomplete",
}

if not TYPE_CHECKING:  # type checkers see the imports above, and no other name
    __getattr__ = lazy_names(__name__, _HOMES)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
