"""The ``connector serve`` subcommand's arguments; imports the service only to run it
(FastAPI and uvicorn cost the other commands' start-up nothing)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "default_data_dir"]


def default_data_dir() -> Path:
    """``$CONNECTOR_HOME/service`` (``CONNECTOR_HOME`` defaults to ~/.connector)."""
    home = os.environ.get("CONNECTOR_HOME") or str(Path.home() / ".connector")
    return Path(home) / "service"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve modules over HTTP, with webhook URLs for instant triggers",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8780, help="0 picks a free port (default 8780)")
    p.add_argument("--data", type=Path, help="data directory (default $CONNECTOR_HOME/service)")
    p.add_argument("--public-url", help="base of hook URLs as senders reach the service")
    p.add_argument("--key-file", type=Path, help="the Fernet key sealing stored secrets")
    p.add_argument("--max-body", type=int, default=1024 * 1024, help="bytes per API request")
    p.add_argument("--request-timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--max-runs", type=int, default=64, help="runs at once")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from connector.core.loader import load
    from connector.service.limits import Limits
    from connector.service.server import serve

    paths = args.manifests or []
    registry = load(*paths, packaged=not args.no_packaged or not paths, cache=True)
    limits = Limits(
        max_body=args.max_body,
        request_timeout=args.request_timeout,
        max_wait=min(30.0, args.request_timeout / 2),
        max_runs=args.max_runs,
    )
    serve(
        registry,
        args.data or default_data_dir(),
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        key_file=args.key_file,
        limits=limits,
    )
    return 0
