"""Secrets at rest: connection secrets are stored encrypted, never in clear.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) seals each connection's
secret fields as one token: tampering is detected, and the key never sits in the
database. The key comes from, in order:

1. ``CONNECTOR_SECRET_KEY`` in the environment (a Fernet key: 32 url-safe base64 bytes);
2. the file named by ``--key-file`` / ``CONNECTOR_SECRET_KEY_FILE``;
3. ``secret.key`` in the data directory, made on first start with mode 0600.

Keeping the key beside the database (option 3) protects a copied database or backup,
not a copied data directory; hosts that need more give the key from elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken

__all__ = ["ENV_KEY", "ENV_KEY_FILE", "KEY_FILE", "SecretBox", "SecretBoxError"]

ENV_KEY = "CONNECTOR_SECRET_KEY"
ENV_KEY_FILE = "CONNECTOR_SECRET_KEY_FILE"
KEY_FILE = "secret.key"


class SecretBoxError(Exception):
    """The key is unusable, or a sealed value does not open with it."""


class SecretBox:
    """Seals and opens JSON values with one Fernet key."""

    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            raise SecretBoxError(
                "the secret key is not a Fernet key (32 url-safe base64-encoded bytes); make "
                "one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None

    @classmethod
    def load(
        cls, data_dir: Path, key_file: Path | None = None, environ: dict[str, str] | None = None
    ) -> SecretBox:
        env = os.environ if environ is None else environ
        if env.get(ENV_KEY):
            return cls(env[ENV_KEY].strip().encode("ascii", "replace"))
        named = key_file or (Path(env[ENV_KEY_FILE]) if env.get(ENV_KEY_FILE) else None)
        if named is not None:
            try:
                return cls(named.read_bytes().strip())
            except OSError as exc:
                raise SecretBoxError(f"cannot read the key file {named}: {exc.strerror}") from None
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                pass
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(Fernet.generate_key() + b"\n")
                    out.flush()
                    os.fsync(out.fileno())
        return cls(path.read_bytes().strip())

    def seal(self, value: Any) -> bytes:
        return self._fernet.encrypt(orjson.dumps(value))

    def open(self, sealed: bytes) -> Any:
        try:
            return orjson.loads(self._fernet.decrypt(sealed))
        except InvalidToken:
            raise SecretBoxError(
                "a stored secret does not open with this key: the key changed, or the "
                "database was altered"
            ) from None
