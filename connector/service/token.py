"""The service's API token: one bearer token, kept hashed, compared in constant time.

The token is either given by the environment (``CONNECTOR_API_TOKEN``, for hosts that
provision secrets themselves) or made on the service's first start: 32 random bytes,
printed once, and only its SHA-256 kept in ``api-token.sha256`` in the data directory.
A plain hash is enough (no slow KDF): the token is random and long, so there is no
dictionary to try it against; a slow hash would only cost every request.

Checks hash what the client sent and compare the two digests with
:func:`hmac.compare_digest`, so the time taken says nothing about how much matched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV_TOKEN", "TOKEN_FILE", "ApiToken"]

ENV_TOKEN = "CONNECTOR_API_TOKEN"
TOKEN_FILE = "api-token.sha256"
_PREFIX = "cst_"  # marks the token in logs and secret scanners as this service's
_MIN_LENGTH = 16


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class ApiToken:
    """The token's digest, and the token itself only when it was just made."""

    digest: bytes
    #: The new token, set only on the start that made it (to be printed once).
    created: str | None = None
    source: str = "file"

    @classmethod
    def load(cls, data_dir: Path, environ: dict[str, str] | None = None) -> ApiToken:
        """From the environment, else the data directory's hash, else a new token."""
        env = os.environ if environ is None else environ
        given = env.get(ENV_TOKEN)
        if given is not None:
            if len(given.strip()) < _MIN_LENGTH:
                raise ValueError(
                    f"{ENV_TOKEN} must be at least {_MIN_LENGTH} characters: a short token "
                    "can be guessed"
                )
            return cls(_digest(given.strip()), source="environment")
        path = data_dir / TOKEN_FILE
        if path.is_file():
            text = path.read_text(encoding="ascii").strip()
            try:
                digest = bytes.fromhex(text)
            except ValueError:
                digest = b""
            if len(digest) != hashlib.sha256().digest_size:
                raise ValueError(
                    f"{path} does not hold a SHA-256 digest: delete it to make a new token"
                )
            return cls(digest)
        token = _PREFIX + secrets.token_urlsafe(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(_digest(token).hex() + "\n")
        return cls(_digest(token), created=token)

    def check(self, given: str) -> bool:
        """Whether ``given`` is the token, in time independent of where they differ."""
        return hmac.compare_digest(_digest(given), self.digest)
