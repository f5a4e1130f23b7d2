"""Python an app ships, where a manifest truly cannot do the job.

An app names its code in ``app.json``::

    "code": {
      "signer": "acme/sign.py:sign_request",
      "filters": {"normalize": "acme/filters.py:normalize"}
    }

Each reference is a ``.py`` file under the app's ``modules/`` folder (beside app.json),
or else under the package's top-level ``modules/`` folder (the shipped apps'), and a
function in it. The file must stay inside that folder (no ``..``, no links out). It is
loaded with the app, by the CLI and the Python API alike (both go through
:func:`connector.load`), under a module name of its own
(``connector_app_code.<app>.<file>``), so two apps never share one.

* A **signer** is called with the final request (:class:`SignerRequest`: method, URL,
  query, headers with auth, body bytes) and the whole connection, secrets included, and
  returns headers to add (e.g. a signature and its timestamp). It runs for every send;
  dry runs name it and show its headers redacted, like auth.
* A **filter** is a template filter, used as ``<app>_<name>`` (``acme_normalize``) so
  apps never clash; where two still would (``a`` + ``b_c`` and ``a_b`` + ``c``), the
  app loaded second is refused with a ManifestError naming both. Its result goes
  through the sandbox's size limits like any value.

The files' SHA-256 is part of the app's manifest cache key (see
:mod:`connector.core.cache`): editing the code is a new key, like editing a manifest.
Code is trusted as the app is: it runs in the engine's process, with its rights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from connector.core.registry import AppCodeLoaded
from connector.errors import ManifestError
from connector.format.manifest import AppManifest
from connector.templating.functions import register_filter

__all__ = ["MODULES_DIR", "SignerRequest", "load_code", "packaged_modules_dir"]

#: The folder, beside app.json (or the package's), that holds an app's code.
MODULES_DIR = "modules"


class SignerRequest(NamedTuple):
    """What a signer sees: the request exactly as it will be sent."""

    method: str
    url: str
    query: Mapping[str, Any]
    headers: Mapping[str, str]
    body: bytes


def packaged_modules_dir() -> Path:
    """The package's own ``modules/`` folder (installed, or in a checkout)."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "_modules"
    return installed if installed.is_dir() else package.parent / MODULES_DIR


def load_code(manifest: AppManifest, app_file: Path) -> AppCodeLoaded | None:
    """The app's signer and filters, loaded and registered; ManifestError for a file
    or function that cannot be found or loaded."""
    code = manifest.code
    if code is None:
        return None
    source = str(app_file)
    digest = hashlib.sha256()
    loaded: dict[Path, ModuleType] = {}

    def function(reference: str, at: str) -> Callable[..., Any]:
        relative, _, name = reference.partition(":")
        path = _find(app_file.parent, relative, source, at)
        if path not in loaded:
            digest.update(relative.encode() + b"\0" + path.read_bytes())
            loaded[path] = _import(manifest.name, relative, path, source, at)
        value: Callable[..., Any] | None = getattr(loaded[path], name, None)
        if value is None or not callable(value):
            raise ManifestError(source, at, f"{relative} has no function {name!r}")
        return value

    signer = function(code.signer, "$.code.signer") if code.signer else None
    filters: dict[str, str] = {}
    for name, reference in sorted(code.filters.items()):
        at = f"$.code.filters.{name}"
        fn = function(reference, at)
        full = f"{manifest.name}_{name}"
        try:
            register_filter(full, fn, manifest.name)
        except ValueError as exc:
            raise ManifestError(source, at, str(exc)) from None
        filters[full] = reference
    return AppCodeLoaded(
        signer=signer, signer_name=code.signer, filters=filters, digest=digest.hexdigest()
    )


def _find(app_dir: Path, relative: str, source: str, at: str) -> Path:
    searched = []
    for root in (app_dir / MODULES_DIR, packaged_modules_dir()):
        searched.append(str(root))
        base = root.resolve()
        path = (base / relative).resolve()
        if not path.is_relative_to(base):
            raise ManifestError(source, at, f"{relative!r} leaves the modules folder")
        if path.is_file():
            return path
    raise ManifestError(
        source, at, f"no file {relative!r} in the modules folder ({' or '.join(searched)})"
    )


def _import(app: str, relative: str, path: Path, source: str, at: str) -> ModuleType:
    name = "connector_app_code." + app + "." + relative[:-3].replace("/", ".")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ManifestError(source, at, f"cannot load {relative!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the app's code failed to import: the app does not load
        sys.modules.pop(name, None)
        raise ManifestError(
            source, at, f"{relative} failed to load: {type(exc).__name__}: {exc}"
        ) from None
    return module
