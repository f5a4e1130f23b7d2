"""The fixture app's request signer: an HMAC of the final request under the passcode."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit


def sign(request: Any, connection: Mapping[str, Any]) -> dict[str, str]:
    """``X-Signature``: hex HMAC-SHA256 of ``METHOD path\\nbody`` under the passcode."""
    path = urlsplit(request.url).path
    message = f"{request.method} {path}\n".encode() + request.body
    digest = hmac.new(str(connection["passcode"]).encode(), message, hashlib.sha256)
    return {"X-Signature": digest.hexdigest()}
