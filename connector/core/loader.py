"""Loading manifests: read, validate, compile, and check every reference.

A manifest that breaks the format, or refers to something that does not exist (an
unknown parameter, connection field, filter, format or auth type, bad template syntax),
fails here with a :class:`~connector.errors.ManifestError` naming the file and the JSON
path of the fault, never at run time in front of a builder. Manifests are untrusted
input too: any failure while reading one becomes a ManifestError, not a crash.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from jinja2 import TemplateError
from pydantic import BaseModel, ValidationError

from connector.core.auth import AUTH_REQUIRED, AUTH_TYPES
from connector.core.cache import ManifestCache, default_cache
from connector.core.jsondata import MAX_DEPTH, loads_strict, too_deep
from connector.core.registry import (
    REQUEST_PARTS,
    CompiledCheck,
    CompiledRemote,
    CompiledRequest,
    LoadedApp,
    LoadedModule,
    Paging,
    Registry,
)
from connector.core.types import FORMATS
from connector.errors import ERROR_TYPES, ManifestError
from connector.format.manifest import (
    HEADER_NAME_PATTERN,
    POLL_PARAMETERS,
    AppManifest,
    ModuleManifest,
    PaginationSpec,
    Parameter,
    RequestSpec,
    ResponseError,
    RuleError,
    WebhookSpec,
    walk_parameters,
)
from connector.templating.templates import (
    CompiledTemplate,
    TemplateTree,
    compile_template,
    referenced_names,
)

__all__ = ["check_json_schema", "load", "load_app", "packaged_manifests_dir", "read_model"]

#: The largest manifest file read, so a hostile one cannot exhaust memory.
MAX_MANIFEST_BYTES = 2 * 1024 * 1024
APP_FILE = "app.json"

#: Names templates may use besides the scope ones: Jinja's loop and the engine globals.
_GLOBALS = frozenset({"loop", "range", "dict", "now", "true", "false", "none"})
_REQUEST_SCOPE = frozenset({"parameters", "connection", "run", "engine", "app"})
_OUTPUT_SCOPE = _REQUEST_SCOPE | {"request", "response"}
#: A trigger's filter and output see one event of the delivery (and no run: nothing is sent).
_TRIGGER_SCOPE = frozenset({"parameters", "connection", "engine", "app", "event"})
#: A polling trigger's requests also see its state (``state.since``: the cutoff date).
_POLL_SCOPE = _REQUEST_SCOPE | {"state"}
#: The next page's request and condition see the previous page.
_PAGE_SCOPE = frozenset({"response", "page"})
#: App-wide headers and query, and the connection check, see the connection only.
_APP_SCOPE = frozenset({"connection", "engine", "app"})
_VERIFY_SCOPE = _APP_SCOPE | {"run"}
#: The filters of the app being loaded (its ``code.filters``, by full name).
_APP_FILTERS: ContextVar[frozenset[str]] = ContextVar("connector_app_filters", default=frozenset())


#: The engine's poll parameters, validated (see _poll_parameters).
_POLL: list[tuple[Parameter, ...]] = []


def _poll_parameters(cache: ManifestCache | None) -> tuple[Parameter, ...]:
    """Parameters every polling trigger gets from the engine, validated once a process,
    or read from the manifest cache like a manifest (building the Parameter validator
    costs a start ~30 ms). The cache's key covers the engine's own files, so a change to
    POLL_PARAMETERS is validated again."""
    if _POLL:
        return _POLL[0]
    key = cache.key(Parameter, b"engine poll parameters") if cache is not None else None
    hit = cache.get(key) if cache is not None and key is not None else None
    if type(hit) is tuple and all(type(p) is Parameter for p in hit):
        parameters: tuple[Parameter, ...] = hit
    else:
        parameters = tuple(Parameter.model_validate(p) for p in POLL_PARAMETERS)
        if cache is not None and key is not None:
            cache.put(key, parameters)
    _POLL.append(parameters)
    return parameters


def packaged_manifests_dir() -> Path:
    """Where the apps shipped with the package live (installed or in a checkout)."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "_manifests"
    return installed if installed.is_dir() else package.parent / "manifests"


def load(
    *paths: str | os.PathLike[str],
    packaged: bool | None = None,
    cache: bool | None = None,
    apps: Collection[str] | None = None,
) -> Registry:
    """Load apps from ``paths`` (app folders, app.json files, or folders of apps).

    With no paths, or ``packaged=True``, the apps shipped with the package are loaded.
    ``cache=True`` reads manifests that validated before from the per-user cache (see
    :mod:`connector.core.cache`, which says where); by default only where
    ``$CONNECTOR_CACHE`` names one; ``cache=False`` validates every file again.
    ``apps`` names the apps to load; the others' app.json files are read and checked,
    their modules are not (a command running one module pays for one app's templates).
    """
    if packaged is None:
        packaged = not paths
    registry = Registry()
    roots = [Path(p) for p in paths]
    if packaged:
        roots.insert(0, packaged_manifests_dir())
    # The same folder named twice (a checkout's manifests/ is also the packaged one)
    # loads once.
    unique: dict[Path, Path] = {}
    for root in roots:
        unique.setdefault(root.resolve(), root)
    roots = list(unique.values())
    store = default_cache(cache)
    for app_file in _find_app_files(roots):
        loaded = _load_app(Path(app_file), store, apps)
        if loaded is None:
            continue
        app, modules = loaded
        if app.name in registry.apps:
            raise ManifestError(str(app_file), "$.name", f"app {app.name!r} is loaded twice")
        registry.add(app, modules)
    return registry


def _find_app_files(roots: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
        elif (root / APP_FILE).is_file():
            found.append(root / APP_FILE)
        elif root.is_dir():
            found.extend(sorted(p / APP_FILE for p in root.iterdir() if (p / APP_FILE).is_file()))
        else:
            raise ManifestError(str(root), "$", "no such file or folder")
    return found


def _read_bytes(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(str(path), "$", f"file is larger than {MAX_MANIFEST_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise ManifestError(str(path), "$", f"cannot read: {exc.strerror or exc}") from None


def _read_json(path: Path, content: bytes | None = None) -> Any:
    if content is None:
        content = _read_bytes(path)
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestError(str(path), "$", "not UTF-8 text") from None
    try:
        data = loads_strict(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            str(path), "$", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # NaN, Infinity, overflowing numbers, runaway nesting
        raise ManifestError(str(path), "$", f"invalid JSON: {exc}") from None
    if too_deep(data):
        raise ManifestError(str(path), "$", f"JSON nested too deeply (over {MAX_DEPTH} levels)")
    return data


def _json_path(loc: Sequence[int | str]) -> str:
    out = "$"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _validation_error(source: str, exc: ValidationError) -> ManifestError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    message = first["msg"]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error(s))"
    cause = first.get("ctx", {}).get("error")
    at = cause.at if isinstance(cause, RuleError) else ()
    return ManifestError(source, _json_path((*first["loc"], *at)), message)


Model = TypeVar("Model", bound=BaseModel)


def read_model(
    path: Path, model: type[Model], cache: ManifestCache | None = None, salt: bytes = b""
) -> Model:
    """A JSON file read into one of the format's models, strictly (no coercion, no
    snake_case aliases: what the shipped JSON Schemas accept); any fault is a
    ManifestError with the file and the JSON path. With a ``cache``, a file that
    validated before is not validated again; ``salt`` is more of the key (the digest of
    the app's code, so editing it is a new key)."""
    content = _read_bytes(path)
    key = cache.key(model, content + salt) if cache is not None else None
    if cache is not None and key is not None:
        hit = cache.get(key)
        if type(hit) is model:
            return hit
    data = _read_json(path, content)
    try:
        value = model.model_validate(data, strict=True, by_name=False)
    except ValidationError as exc:
        raise _validation_error(str(path), exc) from None
    if cache is not None and key is not None:
        cache.put(key, value)
    return value


def load_app(
    app_file: str | os.PathLike[str], *, cache: bool | None = None
) -> tuple[LoadedApp, list[LoadedModule]]:
    """Load one app.json and its modules; raises ManifestError. ``cache`` as in
    :func:`load`."""
    loaded = _load_app(Path(app_file), default_cache(cache))
    assert loaded is not None  # every app is wanted
    return loaded


def _load_app(
    path: Path, cache: ManifestCache | None, wanted: Collection[str] | None = None
) -> tuple[LoadedApp, list[LoadedModule]] | None:
    """The app and its modules, or None when ``wanted`` does not name it."""
    source = str(path)
    manifest = read_model(path, AppManifest, cache)
    if wanted is not None and manifest.name not in wanted:
        return None
    token = _APP_FILTERS.set(
        frozenset(f"{manifest.name}_{n}" for n in manifest.code.filters)
        if manifest.code is not None
        else frozenset()
    )
    try:
        return _load_app_modules(path, source, manifest, cache)
    finally:
        _APP_FILTERS.reset(token)


def _load_app_modules(
    path: Path, source: str, manifest: AppManifest, cache: ManifestCache | None
) -> tuple[LoadedApp, list[LoadedModule]]:
    app = _compile_app(manifest, source)
    salt = app.code.digest.encode() if app.code is not None else b""
    modules: list[LoadedModule] = []
    seen: set[str] = set()
    for i, relative in enumerate(manifest.modules):
        module_path = (path.parent / relative).resolve()
        if not module_path.is_relative_to(path.parent.resolve()):
            raise ManifestError(source, f"$.modules[{i}]", "module files must be inside the app")
        module = _load_module(module_path, app, cache, salt)
        if module.id in seen:
            raise ManifestError(str(module_path), "$.id", f"duplicate module id {module.id!r}")
        seen.add(module.id)
        modules.append(module)
    return app, modules


def _compile_app(manifest: AppManifest, source: str) -> LoadedApp:
    fields = {f.name for f in manifest.connection.fields}
    auth = manifest.connection.auth
    if auth.type not in AUTH_TYPES:
        raise ManifestError(
            source,
            "$.connection.auth.type",
            f"unknown auth type {auth.type!r}, expected one of: {', '.join(AUTH_TYPES)}",
        )
    for key in AUTH_REQUIRED[auth.type]:
        if getattr(auth, key) is None:
            raise ManifestError(
                source, f"$.connection.auth.{key}", f"auth type {auth.type!r} needs {key!r}"
            )
    for key in ("username", "password", "value"):
        text = getattr(auth, key)
        if text is not None:
            template = _compile(source, f"$.connection.auth.{key}", text)
            _check_refs(source, f"$.connection.auth.{key}", template, {"connection"}, fields)
    for name, text in (auth.headers or {}).items():
        at = f"$.connection.auth.headers.{name}"
        if not re.fullmatch(HEADER_NAME_PATTERN, name):
            raise ManifestError(source, at, f"{name!r} is not a valid header name")
        _check_refs(source, at, _compile(source, at, text), {"connection"}, fields)
    if auth.header is not None and not re.fullmatch(HEADER_NAME_PATTERN, auth.header):
        raise ManifestError(
            source, "$.connection.auth.header", f"{auth.header!r} is not a valid header name"
        )
    for status, error_type in manifest.errors.items():
        if not re.fullmatch(r"[1-5][0-9]{2}", status):
            raise ManifestError(source, f"$.errors.{status}", "keys must be HTTP statuses")
        if error_type not in ERROR_TYPES:
            raise ManifestError(
                source,
                f"$.errors.{status}",
                f"unknown error type {error_type!r}, expected one of: {', '.join(ERROR_TYPES)}",
            )
    for i, field in enumerate(manifest.connection.fields):
        _check_parameter(source, f"$.connection.fields[{i}]", field, False)
    secret = frozenset(f.name for f in manifest.connection.fields if f.secret)
    batch_url: CompiledTemplate | None = None
    batch_extra: TemplateTree | None = None
    if manifest.batch is not None:
        batch_scope = {"connection", "run", "engine", "app"}
        url = batch_url = _compile(source, "$.batch.url", manifest.batch.url)
        _check_refs(source, "$.batch.url", url, batch_scope, fields - secret, secret_fields=secret)
        extra = batch_extra = _compile_tree(source, "$.batch.extra", manifest.batch.extra)
        for rel, template in extra.templates():
            _check_refs(
                source,
                "$.batch.extra" + rel,
                template,
                batch_scope,
                fields - secret,
                secret_fields=secret,
            )
    base_url = _compile(source, "$.baseUrl", manifest.base_url)
    # The base URL is shown in dry runs and errors: it must not be built from secrets.
    _check_refs(
        source, "$.baseUrl", base_url, {"connection"}, fields - secret, secret_fields=secret
    )
    from connector.core.appcode import load_code

    # Code first: its filters must be known before any template of the app compiles.
    code = load_code(manifest, Path(source))
    public = fields - secret
    app_trees: dict[str, TemplateTree | None] = {}
    for part in ("headers", "query"):
        value = getattr(manifest, part)
        if not value:
            app_trees[part] = None
            continue
        if part == "headers":
            for name in value:
                if not re.fullmatch(HEADER_NAME_PATTERN, name):
                    raise ManifestError(
                        source, f"$.headers.{name}", f"{name!r} is not a valid header name"
                    )
        tree = app_trees[part] = _compile_tree(source, f"$.{part}", value)
        for rel, template in tree.templates():
            _check_refs(
                source, f"$.{part}" + rel, template, _APP_SCOPE, public, secret_fields=secret
            )
    verify = verify_check = None
    spec = manifest.connection.verify
    if spec is not None:
        verify = _compile_request(
            source, "$.connection.verify.request", spec.request, _VERIFY_SCOPE, public, secret
        )
        verify_check = _compile_check(
            source,
            "$.connection.verify",
            spec.valid,
            spec.error,
            _VERIFY_SCOPE | {"request", "response"},
            public,
            secret,
        )
    return LoadedApp(
        manifest=manifest,
        source=source,
        base_url=base_url,
        secret_fields=secret,
        batch_url=batch_url,
        batch_extra=batch_extra,
        headers=app_trees["headers"],
        query=app_trees["query"],
        verify=verify,
        verify_check=verify_check,
        code=code,
    )


def _compile_request(
    source: str,
    base: str,
    spec: RequestSpec | PaginationSpec,
    scope: Iterable[str],
    public: frozenset[str] | set[str],
    secret: frozenset[str],
    parameters: list[Parameter] | None = None,
) -> CompiledRequest:
    """A request's parts compiled and their names checked; parts not given are None."""
    trees: dict[str, TemplateTree | None] = {}
    given = spec.model_fields_set
    for name in REQUEST_PARTS:
        value = getattr(spec, name)
        if isinstance(spec, PaginationSpec) and (value is None or name not in given):
            trees[name] = None
            continue
        trees[name] = tree = _compile_tree(source, f"{base}.{name}", value)
        for rel, template in tree.templates():
            _check_refs(source, f"{base}.{name}" + rel, template, scope, public, parameters, secret)
    return CompiledRequest(**trees)


def _compile_one(
    source: str,
    path: str,
    value: Any,
    scope: Iterable[str],
    public: frozenset[str] | set[str],
    secret: frozenset[str],
    parameters: list[Parameter] | None = None,
) -> TemplateTree:
    tree = _compile_tree(source, path, value)
    for rel, template in tree.templates():
        _check_refs(source, path + rel, template, scope, public, parameters, secret)
    return tree


def _compile_check(
    source: str,
    base: str,
    valid: str | None,
    error: ResponseError | None,
    scope: Iterable[str],
    public: frozenset[str] | set[str],
    secret: frozenset[str],
    parameters: list[Parameter] | None = None,
) -> CompiledCheck | None:
    """``valid`` and ``error`` (at ``base``) compiled, or None without ``valid``."""
    if valid is None:
        return None
    error = error or ResponseError()
    if error.type not in ERROR_TYPES:
        raise ManifestError(
            source,
            f"{base}.error.type",
            f"unknown error type {error.type!r}, expected one of: {', '.join(ERROR_TYPES)}",
        )
    return CompiledCheck(
        valid=_compile_one(source, f"{base}.valid", valid, scope, public, secret, parameters),
        message=_compile_one(
            source, f"{base}.error.message", error.message, scope, public, secret, parameters
        ),
        error_type=error.type,
    )


def _compile(source: str, path: str, text: str) -> CompiledTemplate:
    try:
        return compile_template(text)
    except TemplateError as exc:
        raise ManifestError(source, path, f"bad template: {exc.message or exc}") from None


def _load_module(
    path: Path, app: LoadedApp, cache: ManifestCache | None, salt: bytes = b""
) -> LoadedModule:
    source = str(path)
    manifest = read_model(path, ModuleManifest, cache, salt)
    if manifest.kind == "trigger":
        # Where to start and how many items a poll hands over: the engine's parameters,
        # in the module's form like its own (the model refused clashing names).
        manifest = manifest.model_copy(
            update={"parameters": [*manifest.parameters, *_poll_parameters(cache)]}
        )
    if not manifest.id.startswith(app.name + "."):
        raise ManifestError(
            source,
            "$.id",
            f"module ids of app {app.name!r} start with '{app.name}.', got {manifest.id!r}",
        )
    if manifest.batchable and app.manifest.batch is None:
        raise ManifestError(source, "$.batchable", f"app {app.name!r} declares no 'batch' endpoint")
    for i, param in enumerate(manifest.parameters):
        _check_parameter(source, f"$.parameters[{i}]", param)
    names = {p.name for p in walk_parameters(manifest.parameters)}
    for i, constraint in enumerate(manifest.constraints):
        for name in constraint.one_of_required:
            if name not in names:
                raise ManifestError(
                    source,
                    f"$.constraints[{i}].oneOfRequired",
                    f"unknown parameter {name!r}, expected one of: {', '.join(sorted(names))}",
                )
    for status, mapping in manifest.errors.items():
        at = f"$.errors.{status}"
        if not re.fullmatch(r"[45][0-9]{2}", status):
            raise ManifestError(source, at, "keys must be HTTP error statuses (4xx, 5xx)")
        if mapping.type not in ERROR_TYPES:
            raise ManifestError(
                source,
                f"{at}.type",
                f"unknown error type {mapping.type!r}, expected one of: {', '.join(ERROR_TYPES)}",
            )
        if mapping.field is not None and mapping.field not in names:
            raise ManifestError(
                source,
                f"{at}.field",
                f"unknown parameter {mapping.field!r}, expected one of: {', '.join(sorted(names))}",
            )
    request, webhook = manifest.request, manifest.webhook
    if webhook is not None:
        _check_webhook(source, webhook, app)
    polling = manifest.kind == "trigger"
    request_scope = _POLL_SCOPE if polling else _REQUEST_SCOPE
    paged = manifest.kind in ("search", "trigger")
    output_scope = (
        _TRIGGER_SCOPE
        if webhook is not None
        else (_OUTPUT_SCOPE | request_scope | {"item"})
        if paged
        else _OUTPUT_SCOPE
    )
    # Each part: its JSON path, its value, and the names its templates may use. A
    # trigger has no request: its request parts are empty trees, never rendered.
    parts: dict[str, tuple[str, Any, frozenset[str]]] = {
        name: (f"$.request.{name}", getattr(request, name) if request else None, request_scope)
        for name in REQUEST_PARTS
    }
    parts["output"] = ("$.output.bundle", manifest.output_bundle, output_scope)
    parts["filter"] = ("$.webhook.filter", webhook.filter if webhook else None, _TRIGGER_SCOPE)
    trees: dict[str, TemplateTree] = {}
    for name, (base, value, scope) in parts.items():
        trees[name] = tree = _compile_tree(source, base, value)
        for rel, template in tree.templates():
            _check_refs(
                source,
                base + rel,
                template,
                scope,
                app.public_fields,
                manifest.parameters,
                app.secret_fields,
            )
    public, secret, params = app.public_fields, app.secret_fields, list(manifest.parameters)
    response = manifest.response
    check = _compile_check(
        source,
        "$.response",
        response.valid if response else None,
        response.error if response else None,
        _OUTPUT_SCOPE | request_scope,
        public,
        secret,
        params,
    )
    paging = None
    if paged and response is not None and response.iterate is not None:
        page_scope = _OUTPUT_SCOPE | request_scope
        pagination = manifest.pagination
        next_request = None
        condition = None
        if pagination is not None:
            next_request = _compile_request(
                source,
                "$.pagination",
                pagination,
                page_scope | _PAGE_SCOPE,
                public,
                secret,
                params,
            )
            if pagination.condition is not None:
                condition = _compile_one(
                    source,
                    "$.pagination.condition",
                    pagination.condition,
                    page_scope | _PAGE_SCOPE,
                    public,
                    secret,
                    params,
                )
        poll = manifest.trigger
        item_scope = page_scope | {"item"}
        paging = Paging(
            iterate=_compile_one(
                source, "$.response.iterate", response.iterate, page_scope, public, secret, params
            ),
            limit=None
            if response.limit is None
            else _compile_one(
                source, "$.response.limit", response.limit, request_scope, public, secret, params
            ),
            merge=response.merge,
            next_request=next_request,
            merge_with_parent=pagination.merge_with_parent if pagination else True,
            condition=condition,
            max_pages=pagination.max_pages if pagination else 1,
            item_id=None
            if poll is None
            else _compile_one(source, "$.trigger.id", poll.id, item_scope, public, secret, params),
            item_date=None
            if poll is None
            else _compile_one(
                source, "$.trigger.date", poll.date, item_scope, public, secret, params
            ),
        )
    remote: dict[str, CompiledRemote] = {}
    for i, param in enumerate(manifest.parameters):
        if param.remote is None:
            continue
        base = f"$.parameters[{i}].remote"
        spec = param.remote
        remote[param.name] = CompiledRemote(
            field=param.name,
            request=_compile_request(
                source, f"{base}.request", spec.request, _REQUEST_SCOPE, public, secret
            ),
            iterate=_compile_one(
                source, f"{base}.iterate", spec.iterate, _OUTPUT_SCOPE, public, secret
            ),
            label=_compile_one(
                source, f"{base}.label", spec.label, _OUTPUT_SCOPE | {"item"}, public, secret
            ),
            value=_compile_one(
                source, f"{base}.value", spec.value, _OUTPUT_SCOPE | {"item"}, public, secret
            ),
        )
    return LoadedModule.from_trees(
        manifest, app, source, trees, response_check=check, paging=paging, remote=remote
    )


def _compile_tree(source: str, path: str, value: Any) -> TemplateTree:
    try:
        return TemplateTree(value)
    except TemplateError as exc:
        where = _find_bad_template(value, path)
        raise ManifestError(source, where, f"bad template: {exc.message or exc}") from None


def _check_webhook(source: str, webhook: WebhookSpec, app: LoadedApp) -> None:
    """The signature secret must be a *secret* connection field of the app.

    A secret field is redacted from bundles, errors and logs and hidden from templates;
    a shared secret kept in a plain field would be neither.
    """
    if webhook.signature is None:
        return
    name = webhook.signature.secret
    fields = [f.name for f in app.manifest.connection.fields]
    if name not in fields:
        raise ManifestError(
            source,
            "$.webhook.signature.secret",
            f"unknown connection field {name!r}, expected one of: "
            f"{', '.join(sorted(app.secret_fields)) or '(no secret fields)'}",
        )
    if name not in app.secret_fields:
        raise ManifestError(
            source,
            "$.webhook.signature.secret",
            f"connection field {name!r} is not secret: a shared secret must be a field with "
            '"secret": true, so it is redacted and no template can read it',
        )


def _find_bad_template(value: Any, path: str) -> str:
    """The JSON path of the first string in ``value`` that does not compile."""
    if isinstance(value, str):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value or [])
    for key, child in items:
        sub = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"
        try:
            TemplateTree(child)
        except TemplateError:
            return _find_bad_template(child, sub)
    return path


def _check_parameter(source: str, path: str, param: Parameter, top: bool = True) -> None:
    if param.format is not None and param.format not in FORMATS:
        raise ManifestError(
            source,
            f"{path}.format",
            f"unknown format {param.format!r}, expected one of: {', '.join(FORMATS)}",
        )
    if param.remote is not None and not top:
        raise ManifestError(
            source, f"{path}.remote", "remote options are for top-level parameters only"
        )
    for i, child in enumerate(param.fields or ()):
        _check_parameter(source, f"{path}.fields[{i}]", child, False)
    if param.items is not None:
        _check_parameter(source, f"{path}.items", param.items, False)
    for i, option in enumerate(param.options or ()):
        for j, nested in enumerate(option.nested):
            _check_parameter(source, f"{path}.options[{i}].nested[{j}]", nested, False)


def _check_refs(
    source: str,
    path: str,
    template: CompiledTemplate,
    scope: Iterable[str],
    connection_fields: set[str] | frozenset[str],
    parameters: list[Parameter] | None = None,
    secret_fields: frozenset[str] = frozenset(),
) -> None:
    _check_app_filters(source, path, template)
    allowed = set(scope) | _GLOBALS
    for chain in referenced_names(template):
        root = chain[0]
        if root not in allowed:
            raise ManifestError(
                source,
                path,
                f"unknown name {root!r} in template, expected one of: "
                f"{', '.join(sorted(set(scope)))}",
            )
        if root == "connection" and len(chain) > 1 and chain[1] not in connection_fields:
            if chain[1] in secret_fields:
                raise ManifestError(
                    source,
                    path,
                    f"connection field {chain[1]!r} is secret: only the app's auth section "
                    "may use it",
                )
            raise ManifestError(
                source,
                path,
                f"unknown connection field {chain[1]!r}, expected one of: "
                f"{', '.join(sorted(connection_fields)) or '(none)'}",
            )
        if root == "parameters" and parameters is not None and len(chain) > 1:
            _check_parameter_chain(source, path, chain[1:], parameters)


def _check_app_filters(source: str, path: str, template: CompiledTemplate) -> None:
    """An app's own filters (``code.filters``) are registered process-wide; a template
    may only use those of its own app, so an app never depends on another's code."""
    from jinja2 import nodes

    from connector.templating.functions import app_filter_owner

    own = _APP_FILTERS.get()
    for node in template.ast.find_all(nodes.Filter):
        if app_filter_owner(node.name) is not None and node.name not in own:
            raise ManifestError(
                source,
                path,
                f"filter {node.name!r} belongs to another app's code; declare it in this "
                "app's code.filters",
            )


def _check_parameter_chain(
    source: str, path: str, chain: tuple[str, ...], parameters: list[Parameter]
) -> None:
    level = list(walk_parameters(parameters))
    for depth, name in enumerate(chain):
        match = next((p for p in level if p.name == name), None)
        if match is None:
            dotted = ".".join(("parameters", *chain[: depth + 1]))
            expected = ", ".join(sorted(p.name for p in level)) or "(none)"
            raise ManifestError(
                source, path, f"unknown parameter {dotted!r}, expected one of: {expected}"
            )
        if match.type != "collection":
            return  # Deeper attributes are values' own (dict methods, keyvalue keys).
        level = list(walk_parameters(match.fields or []))


def check_json_schema(registry: Registry) -> None:
    """Check every loaded manifest file against the shipped JSON Schemas, too.

    The engine validates with the pydantic models; editors validate with the JSON Schema
    generated from them. ``connector validate`` runs both so that a manifest an editor
    accepts is one the engine accepts, and a drift between the two is caught.
    """
    import jsonschema

    from connector.format.manifest import app_schema, module_schema

    app_validator = jsonschema.Draft202012Validator(app_schema())
    module_validator = jsonschema.Draft202012Validator(module_schema())
    files: list[tuple[str, jsonschema.Draft202012Validator]] = []
    for app in registry.apps.values():
        files.append((app.source, app_validator))
    for module in registry:
        files.append((module.source, module_validator))
    for source, validator in files:
        error = jsonschema.exceptions.best_match(validator.iter_errors(_read_json(Path(source))))
        if error is not None:
            raise ManifestError(source, error.json_path, f"JSON Schema: {error.message}")
