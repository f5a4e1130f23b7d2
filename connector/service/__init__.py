"""``connector serve``: the engine over HTTP, for hosts in any language.

A versioned JSON API (``/v1``) to list, describe, run and dry-run modules, stream
batches, keep connections (secrets sealed at rest) and replay incomplete executions;
and public hook URLs that turn signed webhook deliveries into durable bundles a host
reads by long poll and acknowledges. docs/serve.md is the guide.

One concept a module: :mod:`~connector.service.app` (the factory),
:mod:`~connector.service.state` (what routes share, the token check), ``api_*`` (the
routes), :mod:`~connector.service.errors` (the status mapping),
:mod:`~connector.service.limits`, :mod:`~connector.service.token`,
:mod:`~connector.service.secretbox`, :mod:`~connector.service.connections`,
:mod:`~connector.service.hooks`, :mod:`~connector.service.pollstate`,
:mod:`~connector.service.db`, :mod:`~connector.service.server` (uvicorn).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector._lazy import lazy_names

if TYPE_CHECKING:
    from connector.service.app import create_app
    from connector.service.limits import Limits
    from connector.service.state import ServiceState

__all__ = ["Limits", "ServiceState", "create_app"]

#: Where each public name lives. They are imported on first use: the ``connector``
#: command imports :mod:`connector.service.command` for every subcommand's parser, and
#: FastAPI would otherwise cost each of them ~0.25 s of start-up.
_HOMES = {
    "Limits": "connector.service.limits",
    "ServiceState": "connector.service.state",
    "create_app": "connector.service.app",
}

if not TYPE_CHECKING:
    __getattr__ = lazy_names(__name__, _HOMES)
