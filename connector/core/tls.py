"""The TLS context of a ``run --batch`` process, made once, and the clients sharing it.

Loading the trusted roots costs ~25 ms, most of it with the GIL released, so the command
makes the context in a thread from its first moment, while the engine is imported
(:func:`connector.tools.cli._prepare_transport`). This module imports nothing of the
engine for that reason: the thread's work is httpx and the roots, nothing else.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["batch_client", "tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default TLS settings (certifi's roots, or ``SSL_CERT_FILE`` or
    ``SSL_CERT_DIR``), made once a process, for a process that makes its one client
    itself: ``run --batch`` makes it before it forks its workers, which share it, each
    with one client in one thread. (An engine's own clients each make their own, as
    httpx does: httpcore sets ALPN on the context for every connection, so a context
    shared by clients in several threads would be changed by several at once.)"""
    import httpx

    return httpx.create_ssl_context()


def batch_client() -> httpx.Client:
    """The client of a ``run --batch`` process (or worker): the engine's settings, with
    the process's :func:`tls_context`, so loading the roots (~25 ms) is paid once."""
    import httpx

    return httpx.Client(follow_redirects=False, verify=tls_context())
