"""Loaded apps and modules: manifests with every template compiled.

Everything that can be done once per manifest happens when a :class:`LoadedModule` is
built (compiled templates, the field each request part comes from), so a run only
renders and checks. The :class:`Registry` is what hosts hold: it lists modules and
describes them for form drawing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from connector.core.validation import ParameterPlan
from connector.errors import UnknownModuleError
from connector.format.manifest import AppManifest, ModuleManifest
from connector.templating.templates import (
    CompiledTemplate,
    TemplateTree,
    merge_operand_names,
    referenced_names,
)

__all__ = [
    "REQUEST_PARTS",
    "AppCodeLoaded",
    "CompiledCheck",
    "CompiledRemote",
    "CompiledRequest",
    "LoadedApp",
    "LoadedModule",
    "Paging",
    "Registry",
]


#: The parts of a module's request, each a template tree.
REQUEST_PARTS = ("method", "url", "headers", "query", "body")


@dataclass(frozen=True)
class CompiledRequest:
    """A request's parts, each a compiled tree (None: not given, e.g. in pagination)."""

    method: TemplateTree | None
    url: TemplateTree | None
    headers: TemplateTree | None
    query: TemplateTree | None
    body: TemplateTree | None

    def part(self, name: str) -> TemplateTree | None:
        tree: TemplateTree | None = getattr(self, name)
        return tree


@dataclass(frozen=True)
class CompiledCheck:
    """A compiled ``response.valid``/``error``: errors inside a 2xx body."""

    valid: TemplateTree
    message: TemplateTree
    error_type: str


@dataclass(frozen=True)
class Paging:
    """What searches and polling triggers add to a request: the items of each page,
    the limit, the next page's request and when to ask for it, and (triggers) each
    item's id and date."""

    iterate: TemplateTree
    limit: TemplateTree | None
    merge: bool
    next_request: CompiledRequest | None
    merge_with_parent: bool
    condition: TemplateTree | None
    max_pages: int
    item_id: TemplateTree | None = None
    item_date: TemplateTree | None = None

    @functools.cached_property
    def limit_field(self) -> str | None:
        """The parameter the limit is read from, for errors (``parameters.limit``)."""
        return _first_parameter(self.limit) if self.limit is not None else None


@dataclass(frozen=True)
class CompiledRemote:
    """A field's remote options (RPC): its request, items, and each option's parts."""

    field: str
    request: CompiledRequest
    iterate: TemplateTree
    label: TemplateTree
    value: TemplateTree


@dataclass(frozen=True)
class AppCodeLoaded:
    """Python an app ships (``code`` in app.json), loaded: its signer and filters,
    named as in the manifest (shown in dry runs), and a digest of the files."""

    signer: Any = None
    signer_name: str | None = None
    filters: dict[str, str] = field(default_factory=dict)
    digest: str = ""


@dataclass(frozen=True)
class LoadedApp:
    """An app manifest, compiled."""

    manifest: AppManifest
    source: str
    base_url: CompiledTemplate
    secret_fields: frozenset[str]
    #: The app's batch endpoint and extra body keys, when it declares ``batch``.
    batch_url: CompiledTemplate | None = None
    batch_extra: TemplateTree | None = None
    #: App-wide headers and query of module requests (None: none declared).
    headers: TemplateTree | None = None
    query: TemplateTree | None = None
    #: The connection check (``connection.verify``).
    verify: CompiledRequest | None = None
    verify_check: CompiledCheck | None = None
    #: Python from modules/ (``code``).
    code: AppCodeLoaded | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    @functools.cached_property
    def public_fields(self) -> frozenset[str]:
        """The connection fields templates may read: all but the secret ones."""
        return frozenset(f.name for f in self.manifest.connection.fields) - self.secret_fields

    @functools.cached_property
    def info(self) -> dict[str, str]:
        """``{name, version}``, as templates see ``app``. Built once: templates cannot
        change it, and bundles are fresh copies, never sharing it."""
        return {"name": self.manifest.name, "version": self.manifest.version}


@dataclass(frozen=True)
class LoadedModule:
    """A module manifest, compiled, with the app it belongs to."""

    manifest: ModuleManifest
    app: LoadedApp
    source: str
    method: TemplateTree
    url: TemplateTree
    headers: TemplateTree
    query: TemplateTree
    body: TemplateTree
    output: TemplateTree
    #: For each request part, the first parameter it is built from (names errors).
    part_fields: dict[str, str | None] = field(default_factory=dict)
    #: A trigger's event filter (``webhook.filter``); None keeps every event.
    webhook_filter: TemplateTree | None = None
    #: Errors in a 2xx body (``response.valid``/``error``); None: every 2xx is a success.
    response_check: CompiledCheck | None = None
    #: Searches and polling triggers: how pages and items are read.
    paging: Paging | None = None
    #: Fields whose options come from a call, by name.
    remote: dict[str, CompiledRemote] = field(default_factory=dict)
    #: The parameters' checks, compiled when the module is loaded.
    parameter_plan: ParameterPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plan = ParameterPlan(self.manifest.parameters, self.manifest.constraints)
        object.__setattr__(self, "parameter_plan", plan)

    @functools.cached_property
    def static_head(self) -> bool:
        """Whether method, URL, headers and query are literal (no template): their
        checked form then depends on the connection only, and is reused."""
        return all(tree.literal for tree in (self.method, self.url, self.headers, self.query))

    @functools.cached_property
    def output_reads_parameters(self) -> bool:
        """Whether the output template names ``parameters`` (else a batch item need
        not keep them)."""
        return self.output.reads("parameters")

    @functools.cached_property
    def output_merged_names(self) -> frozenset[str] | None:
        """When the output is ``{{ request.body | merge(X) }}``, the names X reads
        (see :func:`~connector.templating.templates.merge_operand_names`); else None."""
        return merge_operand_names(self.output, ("request", "body"))

    @functools.cached_property
    def body_is_json(self) -> bool:
        """Whether the body is an object or list in the manifest: it is then rendered
        as one (or dropped) and serialised by the engine, never text a builder mapped."""
        return type(self.body.node) in (dict, list)

    @functools.cached_property
    def max_body_bytes(self) -> int | None:
        spec = self.manifest.request
        return spec.max_body_bytes if spec is not None else None

    # Cached: read several times for every run (manifests are frozen).
    @functools.cached_property
    def is_trigger(self) -> bool:
        """Whether the module is a trigger of either kind: it is never simply run."""
        return self.manifest.kind in ("trigger", "instant_trigger")

    @functools.cached_property
    def is_instant(self) -> bool:
        """Whether the module receives webhook deliveries."""
        return self.manifest.kind == "instant_trigger"

    @functools.cached_property
    def is_polling(self) -> bool:
        """Whether the module is a polling trigger."""
        return self.manifest.kind == "trigger"

    @functools.cached_property
    def id(self) -> str:
        return self.manifest.id

    @classmethod
    def from_trees(
        cls,
        manifest: ModuleManifest,
        app: LoadedApp,
        source: str,
        trees: dict[str, TemplateTree],
        *,
        response_check: CompiledCheck | None = None,
        paging: Paging | None = None,
        remote: dict[str, CompiledRemote] | None = None,
    ) -> LoadedModule:
        """The module from its compiled parts (the loader compiles and checks them):
        ``method``, ``url``, ``headers``, ``query``, ``body``, ``output``, ``filter``."""
        has_filter = manifest.webhook is not None and manifest.webhook.filter is not None
        return cls(
            response_check=response_check,
            paging=paging,
            remote=remote or {},
            manifest=manifest,
            app=app,
            source=source,
            method=trees["method"],
            url=trees["url"],
            headers=trees["headers"],
            query=trees["query"],
            body=trees["body"],
            output=trees["output"],
            part_fields={name: _first_parameter(trees[name]) for name in REQUEST_PARTS},
            webhook_filter=trees["filter"] if has_filter else None,
        )


def _first_parameter(tree: TemplateTree) -> str | None:
    for _, template in tree.templates():
        for chain in referenced_names(template):
            if len(chain) >= 2 and chain[0] == "parameters":
                return chain[1]
    return None


class Registry:
    """The loaded apps and their modules, by id."""

    def __init__(self) -> None:
        self.apps: dict[str, LoadedApp] = {}
        self._modules: dict[str, LoadedModule] = {}

    def add(self, app: LoadedApp, modules: list[LoadedModule]) -> None:
        self.apps[app.name] = app
        for module in modules:
            self._modules[module.id] = module

    def __contains__(self, module_id: object) -> bool:
        return module_id in self._modules

    def __iter__(self) -> Iterator[LoadedModule]:
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)

    def module_ids(self) -> list[str]:
        return sorted(self._modules)

    def get(self, module_id: str) -> LoadedModule:
        try:
            return self._modules[module_id]
        except KeyError:
            raise UnknownModuleError(module_id, self.module_ids()) from None

    def describe(self, module_id: str) -> dict[str, Any]:
        """The module for form drawing: see :func:`connector.core.describe.describe_module`."""
        from connector.core.describe import describe_module

        return describe_module(self.get(module_id))

    def list(self) -> list[dict[str, Any]]:
        """One summary per module: id, label, kind, app, description."""
        return [
            {
                "id": m.id,
                "label": m.manifest.label,
                "kind": m.manifest.kind,
                "app": m.app.name,
                "description": m.manifest.description,
            }
            for m in sorted(self._modules.values(), key=lambda m: m.id)
        ]
