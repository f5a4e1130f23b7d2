"""The manifest format: pydantic models, the single source of truth.

An *app manifest* (``app.json``) declares the connection (its fields, which are
secret, and how auth is applied), the base URL, retry and error policy, and lists its
module manifests. A *module manifest* declares the parameters a builder maps, how those
parameters become an HTTP request, and the output bundle.

The JSON Schema shipped in ``connector/schema/`` is generated from these models
(``connector schema``), and a test fails when the shipped copy drifts. Nothing else
describes the format: the loader validates with these models, the docs are generated
from them.

Every string in ``request``, ``output`` and ``baseUrl`` is a template (see
:mod:`connector.templates`); the loader compiles them all at load time.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "PARAMETER_TYPES",
    "AppManifest",
    "AuthSpec",
    "ConnectionSpec",
    "Constraint",
    "ModuleManifest",
    "Option",
    "OutputField",
    "OutputSpec",
    "Parameter",
    "RequestSpec",
    "ReservedNames",
    "RetrySpec",
    "app_schema",
    "module_schema",
]

#: The parameter types a manifest may use; :mod:`connector.types` has one coercer each.
PARAMETER_TYPES = (
    "text",
    "number",
    "integer",
    "boolean",
    "date",
    "email",
    "url",
    "select",
    "collection",
    "array",
    "keyvalue",
    "any",
)
ParameterType = Literal[
    "text",
    "number",
    "integer",
    "boolean",
    "date",
    "email",
    "url",
    "select",
    "collection",
    "array",
    "keyvalue",
    "any",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MODULE_ID_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
APP_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
Template = Annotated[str, Field(description="A Jinja2 template, rendered in the sandbox.")]
# A value that is either one template (whose single expression may yield an object)
# or a JSON structure whose string leaves are templates.
TemplateTree = Any


class _Model(BaseModel):
    """Strict base: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Option(_Model):
    """One choice of a ``select`` parameter."""

    value: str | int | float | bool
    label: str | None = None
    #: Parameters shown only when this option is chosen (as Make's nested parameters).
    nested: list[Parameter] = Field(default_factory=list)


class ReservedNames(_Model):
    """Names a ``keyvalue`` parameter must not use as keys.

    Matching ignores case and ``_``, ``-`` and spaces, so ``First Name`` clashes with
    ``firstName``. ``use`` tells the builder where the value belongs instead; ``{name}``
    is replaced with the reserved name, e.g. ``"traits.{name}"``.
    """

    names: list[str] = Field(min_length=1)
    use: str | None = Field(
        default=None, description="The field to use instead; '{name}' is the reserved name."
    )
    kind: str = Field(default="name", description="What the names are, for messages.")


class Parameter(_Model):
    """A field a builder fills in: one form input, or a group of them."""

    name: str = Field(pattern=NAME_PATTERN)
    type: ParameterType
    label: str | None = None
    help: str | None = None
    required: bool = False
    default: Any = None
    advanced: bool = Field(default=False, description="Shown under 'advanced settings'.")
    example: Any = None
    options: list[Option] | None = Field(default=None, description="Choices of a select.")
    fields: list[Parameter] | None = Field(default=None, description="Fields of a collection.")
    items: Parameter | None = Field(default=None, description="The spec of an array's items.")
    reserved: ReservedNames | None = None
    # Validation rules, checked after coercion.
    min_length: int | None = Field(default=None, alias="minLength", ge=0)
    max_length: int | None = Field(default=None, alias="maxLength", ge=0)
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    min_items: int | None = Field(default=None, alias="minItems", ge=0)
    max_items: int | None = Field(default=None, alias="maxItems", ge=0)
    format: str | None = Field(
        default=None, description="A named format from the engine's registry, e.g. 'currency'."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_type_specific(self) -> Parameter:
        if self.type == "select" and not self.options:
            raise ValueError("a select parameter needs 'options'")
        if self.type != "select" and self.options is not None:
            raise ValueError(f"'options' only applies to select, not {self.type}")
        if self.type == "collection" and self.fields is None:
            raise ValueError("a collection parameter needs 'fields'")
        if self.type != "collection" and self.fields is not None:
            raise ValueError(f"'fields' only applies to collection, not {self.type}")
        if self.type != "array" and self.items is not None:
            raise ValueError(f"'items' only applies to array, not {self.type}")
        if self.type != "keyvalue" and self.reserved is not None:
            raise ValueError(f"'reserved' only applies to keyvalue, not {self.type}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a valid regular expression: {exc}") from exc
        if self.fields is not None:
            _check_unique([f.name for f in self.fields], "field")
        return self


class Constraint(_Model):
    """A rule across several parameters, checked after each one is valid on its own."""

    one_of_required: list[str] = Field(
        alias="oneOfRequired",
        min_length=2,
        description="At least one of these parameters must have a value.",
    )
    message: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RequestSpec(_Model):
    """How the rendered parameters become one HTTP request."""

    method: Template = "POST"
    url: Template = Field(description="A path relative to the app's base URL.")
    headers: TemplateTree = Field(default_factory=dict)
    query: TemplateTree = Field(default_factory=dict)
    body: TemplateTree = None
    #: A body that renders to a string is sent as-is; an object or list as JSON.
    max_body_bytes: int | None = Field(
        default=None, alias="maxBodyBytes", gt=0, description="Refuse bigger bodies (DataError)."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OutputField(_Model):
    """One field of the output bundle, so builders can map it before the first run."""

    name: str
    type: str = "any"
    label: str | None = None
    help: str | None = None
    fields: list[OutputField] | None = None


class OutputSpec(_Model):
    """The output bundle: a template over ``request`` and ``response``, and its fields."""

    bundle: TemplateTree = Field(
        default="{{ response.body }}",
        description="Rendered with request (method, url, headers, body) and response "
        "(status, headers, body) in scope.",
    )
    fields: list[OutputField] = Field(default_factory=list)
    sample: Any = Field(default=None, description="An example bundle, for mapping before a run.")


class ModuleManifest(_Model):
    """One module: its form, its request and its output."""

    schema_: str | None = Field(default=None, alias="$schema")
    id: str = Field(pattern=MODULE_ID_PATTERN, description="'app.module', e.g. segment.track.")
    label: str
    description: str
    kind: Literal["action", "universal"] = "action"
    parameters: list[Parameter] = Field(default_factory=list)
    constraints: list[Constraint] = Field(default_factory=list)
    request: RequestSpec
    output: OutputSpec = Field(default_factory=OutputSpec)
    retry: bool = Field(default=True, description="Whether failed sends may be retried.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_names(self) -> ModuleManifest:
        _check_unique([p.name for p in self.parameters], "parameter")
        return self


class AuthSpec(_Model):
    """How the connection authenticates each request.

    ``type`` picks an entry of :data:`connector.auth.AUTH_TYPES`. Auth templates are the
    only templates that see the connection's secret fields.
    """

    type: str = Field(description="'basic', 'header' or 'none'.")
    username: Template | None = None
    password: Template | None = None
    header: str | None = None
    value: Template | None = None


class ConnectionField(Parameter):
    """A connection field; ``secret`` ones never reach module templates or output."""

    secret: bool = False


class ConnectionSpec(_Model):
    """What a user enters once to connect, and how it authenticates requests."""

    fields: list[ConnectionField] = Field(default_factory=list)
    auth: AuthSpec


class RetrySpec(_Model):
    """When and how failed sends are retried."""

    attempts: int = Field(default=3, ge=1, le=20, description="Tries in all, the first included.")
    backoff: float = Field(default=0.5, ge=0, description="First backoff ceiling, seconds.")
    max_backoff: float = Field(default=30.0, alias="maxBackoff", ge=0)
    statuses: list[int] = Field(
        default_factory=lambda: [408, 429, 500, 502, 503, 504],
        description="HTTP statuses that are retried.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AppManifest(_Model):
    """An app: one connection and the modules that use it."""

    schema_: str | None = Field(default=None, alias="$schema")
    name: str = Field(pattern=APP_NAME_PATTERN)
    label: str
    version: str = "1.0.0"
    description: str = ""
    base_url: Template = Field(alias="baseUrl", description="Rendered with 'connection' in scope.")
    connection: ConnectionSpec
    timeout: float = Field(default=10.0, gt=0, description="Seconds per request.")
    retry: RetrySpec = Field(default_factory=RetrySpec)
    errors: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP status -> Make error type, overriding the engine's defaults.",
    )
    modules: list[str] = Field(description="Module manifest files, relative to app.json.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check_fields(self) -> AppManifest:
        _check_unique([f.name for f in self.connection.fields], "connection field")
        return self


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} name {name!r}")
        seen.add(name)


def app_schema() -> dict[str, Any]:
    """The JSON Schema of app manifests (``app.json``)."""
    schema = AppManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://connector.invalid/schema/app.schema.json"
    return schema


def module_schema() -> dict[str, Any]:
    """The JSON Schema of module manifests."""
    schema = ModuleManifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://connector.invalid/schema/module.schema.json"
    return schema


Option.model_rebuild()
Parameter.model_rebuild()
