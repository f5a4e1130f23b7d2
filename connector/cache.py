"""A per-user cache of validated manifest models, so that a new process starts fast.

Validating a manifest needs pydantic's validators, and building them (core schemas,
then a scan of every installed package's metadata for pydantic plugins) is about 30 ms
of a ~160 ms cold start: more than all the validating itself. Every ``connector`` CLI
call and every new worker paid it again, for manifests that had not changed. So a
manifest that validated is stored here, pickled, under a key made of:

* the file's exact bytes and the model it was read into (any edit is a new key);
* the engine's fingerprint: the name, size and mtime of every source file of the
  ``connector`` package, and the versions of connector, pydantic, pydantic-core and
  Python (an upgrade, or an edit of the format's code in a checkout, is a new key).

Only valid manifests are stored: a bad one is validated, and reported, every time. A
cache never changes a result. A file that cannot be read, written or unpickled is a
miss, and the manifest is validated as if there were no cache.

Pickle runs code when read, so the cache only reads from a directory that belongs to
the current user and that no one else may write to. It is created with mode 0700 and
checked before every read, as Jinja's bytecode cache does. Where ownership cannot be
checked (no ``os.getuid``, as on Windows), the cache is off.

Where: ``$CONNECTOR_CACHE``, else ``$CONNECTOR_HOME/cache`` (``~/.connector/cache``).
``CONNECTOR_CACHE=off`` turns it off, as does ``connector.load(..., cache=False)``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["ManifestCache", "default_cache"]

#: Entries kept: past this, the oldest half is removed when a new one is written.
MAX_ENTRIES = 512
_SUFFIX = ".pickle"


class ManifestCache:
    """Validated models by file content, in one private directory."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._fingerprint: bytes | None = None
        self._checked = False

    def key(self, model: type[Any], content: bytes) -> str:
        digest = hashlib.sha256(self.fingerprint())
        digest.update(f"{model.__module__}.{model.__qualname__}\0".encode())
        digest.update(content)
        return digest.hexdigest()

    def fingerprint(self) -> bytes:
        """What the engine's validation depends on; computed once per cache."""
        if self._fingerprint is None:
            import pydantic
            import pydantic_core

            from connector._version import __version__

            package = Path(__file__).resolve().parent
            parts = [__version__, pydantic.VERSION, pydantic_core.__version__, sys.version]
            for source in sorted(package.glob("*.py")):
                info = source.stat()
                parts.append(f"{source.name}:{info.st_size}:{info.st_mtime_ns}")
            self._fingerprint = "\n".join(parts).encode()
        return self._fingerprint

    def get(self, key: str) -> Any | None:
        """The stored model, or None on any miss (absent, unreadable, not trusted)."""
        if not self._private():
            return None
        try:
            data = (self.directory / (key + _SUFFIX)).read_bytes()
            return pickle.loads(data)
        except Exception:  # a cache never fails a load: anything wrong is a miss
            return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` atomically; failures are ignored (the next load validates)."""
        try:
            if not self._private(create=True):
                return
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(data)
                os.replace(temporary, self.directory / (key + _SUFFIX))
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            self._prune()
        except Exception:
            return

    def _private(self, create: bool = False) -> bool:
        """Whether the directory is ours alone (created 0700 when ``create``)."""
        if self._checked:
            return True
        getuid = getattr(os, "getuid", None)
        if getuid is None:
            return False
        try:
            if create:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = self.directory.stat()
        except OSError:
            return False
        trusted = (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == getuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        )
        self._checked = trusted
        return trusted

    def _prune(self) -> None:
        entries = list(self.directory.glob("*" + _SUFFIX))
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda p: p.stat().st_mtime_ns)
        for entry in entries[: len(entries) // 2]:
            entry.unlink(missing_ok=True)


def default_cache() -> ManifestCache | None:
    """The cache the environment asks for, or None when it is turned off."""
    where = os.environ.get("CONNECTOR_CACHE")
    if where is not None and where.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if not where:
        home = os.environ.get("CONNECTOR_HOME")
        if not home:
            try:
                home = str(Path.home() / ".connector")
            except (RuntimeError, KeyError, OSError):  # no home directory: no cache
                return None
        where = str(Path(home) / "cache")
    return ManifestCache(where)
