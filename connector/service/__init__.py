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

from connector.service.app import create_app
from connector.service.limits import Limits
from connector.service.state import ServiceState

__all__ = ["Limits", "ServiceState", "create_app"]
