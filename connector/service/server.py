"""Run the app under uvicorn on a socket we bind ourselves.

Binding first (rather than letting uvicorn bind) gives ``--port 0`` a real port to
print before serving, so scripts and tests can start the service and read its URL. The
API token is printed here once, on the start that made it; afterwards only its hash
exists.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TextIO

import uvicorn

from connector.core.registry import Registry
from connector.service.app import create_app
from connector.service.limits import Limits
from connector.service.state import ServiceState
from connector.service.token import ENV_TOKEN, TOKEN_FILE

__all__ = ["bind", "serve"]


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    registry: Registry,
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8780,
    public_url: str | None = None,
    key_file: Path | None = None,
    limits: Limits | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; prints the URL (and a new token) first."""
    out = out or sys.stdout
    state = ServiceState.open(
        data_dir, registry, limits=limits, public_url=public_url, key_file=key_file
    )
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    out.write(f"connector serve: listening on http://{shown}:{bound} (data: {data_dir})\n")
    if state.token.created is not None:
        out.write(
            f"API token (shown once; only its hash is kept in {data_dir}): {state.token.created}\n"
        )
    elif state.token.source == "environment":
        out.write(f"API token: from {ENV_TOKEN}\n")
    else:
        out.write(
            "API token: the one printed on the first start (only its hash is kept; delete "
            f"{data_dir / TOKEN_FILE} and restart for a new one)\n"
        )
    out.flush()
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        state.close()
