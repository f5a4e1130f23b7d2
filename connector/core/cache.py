"""A per-user cache of validated manifest models, so that a new process starts fast.

Validating a manifest needs pydantic's validators, and building them (core schemas,
then a scan of every installed package's metadata for pydantic plugins) is about 30 ms
of a ~160 ms cold start: more than all the validating itself. Every ``connector`` CLI
call (and every new worker of a host that opts in) paid it again, for manifests that
had not changed. So a
manifest that validated is stored here, pickled, under a key made of:

* the file's exact bytes and the model it was read into (any edit is a new key);
* the engine's fingerprint: the name, size and mtime of every source file of the
  ``connector`` package, and the versions of connector, pydantic, pydantic-core and
  Python (an upgrade, or an edit of the format's code in a checkout, is a new key).

Only valid manifests are stored: a bad one is validated, and reported, every time. A
cache never changes a result. A file that cannot be read, written or unpickled is a
miss, and the manifest is validated as if there were no cache.

Pickle runs code when read, so the cache only reads an entry that is a regular file
owned by the current user, in a directory owned by that user, neither writable by
anyone else (the directory is created with mode 0700). Both are checked at every read,
on open file descriptors and without following links, so nothing can be swapped in
between the check and the read. Where that cannot be done (no ``O_NOFOLLOW``,
``dir_fd`` or ``geteuid``, as on Windows), the cache is off.

Opt-in: a library call writes nothing under the user's home unasked, so
``connector.load()`` uses the cache only when ``$CONNECTOR_CACHE`` names a directory or
the host passes ``cache=True``; the ``connector`` command turns it on. Where:
``$CONNECTOR_CACHE``, else ``$CONNECTOR_HOME/cache`` (``~/.connector/cache``).
``CONNECTOR_CACHE=off`` turns it off everywhere, as does ``cache=False``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["ManifestCache", "default_cache"]

#: Entries kept: past this, the oldest half is removed when a new one is written.
MAX_ENTRIES = 512
_SUFFIX = ".pickle"


class ManifestCache:
    """Validated models by file content, in one private directory."""

    def __init__(self, directory: str | os.PathLike[str], *, package: Path | None = None) -> None:
        self.directory = Path(directory)
        #: Whose sources the fingerprint covers (the engine's; tests give their own).
        self.package = package or Path(__file__).resolve().parent.parent
        self._fingerprint: bytes | None = None

    def key(self, model: type[Any], content: bytes) -> str | None:
        """The entry's name, or None when the engine's files cannot be read (no cache)."""
        fingerprint = self.fingerprint()
        if fingerprint is None:
            return None
        digest = hashlib.sha256(fingerprint)
        digest.update(f"{model.__module__}.{model.__qualname__}\0".encode())
        digest.update(content)
        return digest.hexdigest()

    def fingerprint(self) -> bytes | None:
        """What the engine's validation depends on; computed once per cache, None when a
        source file cannot be read."""
        if self._fingerprint is None:
            import annotated_types
            import pydantic
            import pydantic_core

            from connector._version import __version__

            parts = [
                __version__,
                pydantic.VERSION,
                pydantic_core.__version__,
                getattr(annotated_types, "__version__", "?"),
                sys.version,
            ]
            try:
                for source in sorted(self.package.rglob("*.py")):
                    relative = source.relative_to(self.package)
                    if any(part.startswith(".") for part in relative.parts):
                        continue  # an editor's lock or backup file, not a source
                    info = source.lstat()
                    parts.append(f"{relative.as_posix()}:{info.st_size}:{info.st_mtime_ns}")
            except OSError:
                return None
            self._fingerprint = "\n".join(parts).encode()
        return self._fingerprint

    def get(self, key: str) -> Any | None:
        """The stored model, or None on any miss: absent, unreadable, or not trusted."""
        data = self._read(key + _SUFFIX)
        if data is None:
            return None
        try:
            return pickle.loads(data)
        except Exception:  # a cache never fails a load: anything wrong is a miss
            return None

    def _read(self, name: str) -> bytes | None:
        """The entry's bytes, if the directory and the entry are the user's alone.

        Checked on open file descriptors, not on paths, so that nothing can be swapped
        in between the check and the read: the directory is opened without following a
        link and must be owned by this user and writable by no one else; the entry is
        opened relative to it, without following a link, and must be a regular file with
        one name, owned by this user and writable by no one else.
        """
        if not _SUPPORTED:
            return None
        try:
            directory = os.open(self.directory, _DIRECTORY_FLAGS)
        except OSError:
            return None
        try:
            if not _private(os.fstat(directory), stat.S_ISDIR):
                return None
            entry = os.open(name, _ENTRY_FLAGS, dir_fd=directory)
            with os.fdopen(entry, "rb") as file:
                info = os.fstat(file.fileno())
                if not _private(info, stat.S_ISREG) or info.st_nlink != 1:
                    return None
                return file.read()
        except OSError:
            return None
        finally:
            os.close(directory)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` atomically; failures are ignored (the next load validates)."""
        if not _SUPPORTED:
            return
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not _private(os.lstat(self.directory), stat.S_ISDIR):
                return
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=_PARTIAL)
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

    def _prune(self) -> None:
        """Past MAX_ENTRIES, drop the older half; drop partial writes of dead processes."""
        stale = time.time() - 3600
        for partial in self.directory.glob("*" + _PARTIAL):
            if partial.lstat().st_mtime < stale:
                partial.unlink(missing_ok=True)
        entries = list(self.directory.glob("*" + _SUFFIX))
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda p: p.lstat().st_mtime_ns)
        for entry in entries[: len(entries) // 2]:
            entry.unlink(missing_ok=True)


#: Where the descriptor-based checks cannot be made (no O_NOFOLLOW, O_DIRECTORY,
#: ``dir_fd`` or ``geteuid``, as on Windows), there is no cache.
_SUPPORTED = (
    hasattr(os, "O_NOFOLLOW")
    and hasattr(os, "O_DIRECTORY")
    and hasattr(os, "geteuid")
    and os.open in os.supports_dir_fd
)
_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_ENTRY_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
_PARTIAL = ".partial"


def _private(info: os.stat_result, kind: Any) -> bool:
    """Of the right kind, owned by this user, and writable by no one else."""
    return bool(
        kind(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def default_cache(requested: bool | None = None) -> ManifestCache | None:
    """The cache to use, or None for none.

    ``requested`` is what the caller asked: True (the CLI) uses
    ``$CONNECTOR_CACHE``, else ``$CONNECTOR_HOME/cache`` (``~/.connector/cache``);
    None (a library host that did not say) uses a cache only where ``$CONNECTOR_CACHE``
    names one, so that a library call never writes under the user's home unasked;
    False uses none. ``CONNECTOR_CACHE=off`` turns it off whatever was asked.
    """
    where = os.environ.get("CONNECTOR_CACHE")
    if where is not None and where.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if requested is False or (requested is None and not where):
        return None
    if not where:
        home = os.environ.get("CONNECTOR_HOME")
        if not home:
            try:
                home = str(Path.home() / ".connector")
            except (RuntimeError, KeyError, OSError):  # no home directory: no cache
                return None
        where = str(Path(home) / "cache")
    return ManifestCache(os.path.abspath(where))
