"""The manifest format: pydantic models, the single source of truth.

An *app manifest* (``app.json``) declares the connection (its fields, which are
secret, and how auth is applied), the base URL, retry and error policy, and lists its
module manifests. A *module manifest* declares the parameters a builder maps, how those
parameters become an HTTP request, and the output bundle. Kinds follow Make's: an
``action`` (or ``universal``) sends one request; a ``search`` sends one and follows
its ``pagination``, one bundle per item of each page (``response.iterate``); a
``trigger`` polls the same way and hands over only items newer than its saved state
(``trigger``: each item's id and date); an ``instant_trigger`` has no request: its
``webhook`` section says how a delivery the host received is checked (signature) and
split into events, one output bundle each.

The JSON Schema shipped in ``connector/format/schema/`` is generated from these models
(``connector schema``), and a test fails when the shipped copy drifts. Nothing else
describes the format: the loader validates with these models, the docs are generated
from them.

Every string in ``request``, ``output``, ``webhook.filter`` and ``baseUrl`` is a
template (see :mod:`connector.templating.templates`); the loader compiles them all at load time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "POLL_PARAMETERS",
    "AppCode",
    "AppManifest",
    "AuthSpec",
    "BatchSpec",
    "ConnectionSpec",
    "Constraint",
    "MessageRule",
    "MessagesSpec",
    "ModuleManifest",
    "Option",
    "OutputField",
    "OutputSpec",
    "PaginationSpec",
    "Parameter",
    "PollSpec",
    "RemoteOptions",
    "RequestSpec",
    "ReservedNames",
    "ResponseError",
    "ResponseSpec",
    "RetrySpec",
    "RuleError",
    "SignatureSpec",
    "StatusError",
    "VerifySpec",
    "WebhookSpec",
    "app_schema",
    "module_schema",
]

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
#: An app name, and each half of a module id (``app.module``).
_SEGMENT = r"[a-z][a-z0-9_]*"
APP_NAME_PATTERN = rf"^{_SEGMENT}$"
MODULE_ID_PATTERN = rf"^{_SEGMENT}\.{_SEGMENT}$"
Template = Annotated[str, Field(description="A Jinja2 template, rendered in the sandbox.")]
# A value that is either one template (whose single expression may yield an object)
# or a JSON structure whose string leaves are templates.
TemplateTree = Any


class RuleError(ValueError):
    """A rule across a model's keys that one key breaks; ``at`` is that key's path.

    Pydantic reports a model validator's error at the model itself; the loader appends
    ``at`` so the message points at the key to fix (``$.request``), as for a field rule.
    """

    def __init__(self, message: str, *at: str | int) -> None:
        super().__init__(message)
        self.at = at


class _Model(BaseModel):
    """Strict base: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


#: Value rules of a parameter: manifest key, model attribute.
_RULE_FIELDS = (
    ("minLength", "min_length"),
    ("maxLength", "max_length"),
    ("pattern", "pattern"),
    ("minimum", "minimum"),
    ("maximum", "maximum"),
    ("format", "format"),
)


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


#: Parameter types whose options may come from a call (a select's are listed).
_REMOTE_TYPES = ("text", "integer", "number", "array")


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
    remote: RemoteOptions | None = Field(
        default=None,
        description="Options loaded from the app's API (Make's RPC): `connector options`.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @property
    def rules(self) -> dict[str, Any]:
        """The value rules set on this parameter, by manifest key (``minLength``, ...)."""
        return {
            key: getattr(self, attr)
            for key, attr in _RULE_FIELDS
            if getattr(self, attr) is not None
        }

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
        if self.remote is not None and self.type not in _REMOTE_TYPES:
            raise ValueError(
                f"'remote' options apply to {', '.join(_REMOTE_TYPES)}, not {self.type}"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"'pattern' is not a valid regular expression: {exc}") from exc
        if self.fields is not None:
            check_parameter_names(self.fields, "field")
        return self


class Constraint(_Model):
    """A rule across several parameters, checked after each one is valid on its own."""

    one_of_required: list[str] = Field(
        alias="oneOfRequired",
        min_length=2,
        description="At least one of these parameters must have a value.",
    )
    message: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class ResponseError(_Model):
    """The error an answer that is not ``valid`` raises (Make's ``response.error``)."""

    message: Template = Field(
        default="the API reported an error in a {{ response.status }} answer",
        description="The error's message, a template over the answer (redacted like every error).",
    )
    type: str = Field(
        default="RuntimeError",
        description="Make's error type: DataError, InvalidConfigurationError, "
        "InvalidAccessTokenError, RateLimitError, ConnectionError or RuntimeError.",
    )


_VALID = (
    "Errors inside a 2xx body (Make's response.valid): the answer is a success when this "
    "renders truthy ('response', 'request', 'parameters', 'connection' in scope), else "
    "'error' is raised."
)


def _check_error_needs_valid(valid: str | None, error: ResponseError | None) -> None:
    if error is not None and valid is None:
        raise RuleError("'error' is raised when 'valid' renders falsy: give 'valid'", "error")


class StatusError(_Model):
    """How one HTTP status of a module maps onto Make's errors, over the app's
    ``errors``: e.g. a 404 that means the builder's id names no profile."""

    type: str = Field(description="Make's error type, e.g. DataError.")
    field: str | None = Field(default=None, description="The parameter the error names.")
    message: str | None = Field(
        default=None, description="Said before the remote's answer, e.g. 'no such profile'."
    )


class ResponseSpec(_Model):
    """What a search or polling trigger reads from each page, and the body check."""

    iterate: Template | None = Field(
        default=None,
        description="The page's items (Make's iterate), e.g. '{{ response.body.data }}'; "
        "the output bundle is rendered once per item with 'item' in scope. Searches and "
        "polling triggers need it.",
    )
    limit: Template | None = Field(
        default=None,
        description="Most items in all (searches): paging stops once reached, e.g. "
        "'{{ parameters.limit }}'.",
    )
    merge: bool = Field(
        default=False,
        description="Searches: shallow-merge the bundles of all items of all pages into one.",
    )
    valid: Template | None = Field(default=None, description=_VALID)
    error: ResponseError | None = Field(
        default=None, description="The error of an answer that is not valid."
    )

    @model_validator(mode="after")
    def _error_needs_valid(self) -> ResponseSpec:
        _check_error_needs_valid(self.valid, self.error)
        return self


class PaginationSpec(_Model):
    """How the next page is asked for (Make's pagination).

    Each template sees the module's scope plus ``response`` (the previous page's status,
    headers and body) and ``page`` (the number of the page just read, from 1). With
    ``mergeWithParent`` (the default) the parts given here are merged over the first
    request (headers and query key by key, an object body too); without it they replace
    it (method GET unless given). ``condition`` decides whether to go on; by default a
    page without items is the last. Paging also stops at ``maxPages`` (an error, since
    items would be left unread) and refuses to ask for the same request twice (an API
    that keeps answering the same cursor would loop forever).
    """

    method: Template | None = None
    url: Template | None = None
    headers: TemplateTree = None
    query: TemplateTree = None
    body: TemplateTree = None
    merge_with_parent: bool = Field(default=True, alias="mergeWithParent")
    condition: Template | None = Field(
        default=None, description="Go on while truthy; default: the page had items."
    )
    max_pages: int = Field(default=100, alias="maxPages", ge=1, le=10_000)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class PollSpec(_Model):
    """Each item's identity and date, for a polling trigger's state (Make's trigger).

    A poll hands over only items newer than the saved state, oldest first, at most the
    ``limit`` parameter; the rest come in the next poll. Items of the same date are told
    apart by ``id``, so none is skipped and none comes twice.
    """

    id: Template = Field(description="The item's unique id, e.g. '{{ item.id }}'.")
    date: Template = Field(
        description="The item's date (ISO 8601, epoch, or parse it with parseDate), "
        "e.g. '{{ item.created_at }}'."
    )


#: The parameters the engine gives every polling trigger (Make's epoch dialog): where
#: to start on the first poll and how many items one poll hands over at most.
POLL_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "name": "start",
        "type": "select",
        "label": "Start",
        "help": "On the first poll: only items from now on, all items, or items since a date.",
        "default": "now",
        "options": [
            {"value": "now", "label": "From now on"},
            {"value": "all", "label": "All"},
            {
                "value": "since",
                "label": "Since a date",
                "nested": [
                    {
                        "name": "since",
                        "type": "date",
                        "label": "Since",
                        "help": "Items dated after this.",
                        "required": True,
                    }
                ],
            },
        ],
    },
    {
        "name": "limit",
        "type": "integer",
        "label": "Limit",
        "help": "Most items one poll hands over; the rest come in the next poll.",
        "default": 100,
        "minimum": 1,
        "maximum": 10_000,
    },
)


class RemoteOptions(_Model):
    """A field's options from the app's API (Make's RPC), for forms.

    ``request`` is sent like a module's (``parameters`` holds what the builder filled in
    so far, unchecked: fields may be missing); ``iterate`` gives the answer's items and
    ``label``/``value`` make each one an option.
    """

    request: RequestSpec
    iterate: Template = Field(description="The answer's items, e.g. '{{ response.body.data }}'.")
    label: Template = Field(description="Each option's label, 'item' in scope.")
    value: Template = Field(description="Each option's value, 'item' in scope.")


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


HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
#: What a trigger's output bundle is when the manifest does not say: the event itself.
TRIGGER_BUNDLE = "{{ event }}"
#: What a search's or polling trigger's bundle is when the manifest does not say.
ITEM_BUNDLE = "{{ item }}"


class SignatureSpec(_Model):
    """How a webhook delivery proves it comes from the app: an HMAC of the raw body.

    The sender signs the exact bytes it posts with a secret both sides know; the engine
    recomputes the HMAC over the bytes it received and compares in constant time. The
    secret lives in a *secret* connection field, so it is redacted like a write key and
    no template can read it.
    """

    header: str = Field(
        pattern=HEADER_NAME_PATTERN, description="The request header carrying the signature."
    )
    algorithm: Literal["hmac-sha1", "hmac-sha256", "hmac-sha512"] = "hmac-sha256"
    encoding: Literal["hex", "base64"] = Field(
        default="hex", description="How the digest is written in the header."
    )
    prefix: str = Field(
        default="", description="Text before the digest in the header, e.g. 'sha256='."
    )
    secret: str = Field(
        pattern=NAME_PATTERN,
        description="The name of the secret connection field that holds the shared secret.",
    )


class WebhookSpec(_Model):
    """How a trigger turns one webhook delivery (raw headers and body) into bundles.

    The body must be JSON. A JSON array is a batch, and so is an object whose
    ``itemsKey`` holds a list; any other object is one event. Each event must be an
    object with the ``requiredKeys``; ``filter`` (a template over ``event`` and
    ``parameters``) drops the events the builder did not ask for.
    """

    signature: SignatureSpec | None = Field(
        default=None, description="Refuse deliveries whose signature does not match."
    )
    items_key: str | None = Field(
        default=None,
        alias="itemsKey",
        description="The key of an object body that holds a batch of events.",
    )
    required_keys: list[str] = Field(
        default_factory=list,
        alias="requiredKeys",
        description="Keys every event must have, or the delivery is malformed.",
    )
    filter: Template | None = Field(
        default=None,
        description="Keeps an event when it renders truthy; 'event' and 'parameters' in scope.",
    )
    max_body_bytes: int = Field(
        default=5 * 1024 * 1024,
        alias="maxBodyBytes",
        gt=0,
        description="Refuse bigger deliveries (DataError) before reading them as JSON.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


# An instant trigger has a webhook and no request; every other kind has a request and
# no webhook, a polling trigger a 'trigger' section and a search or polling trigger
# 'response.iterate'. A 'trigger' with a webhook and no request is the format before
# instant triggers were named apart: read as an instant trigger. Said in JSON Schema
# too, so editors flag a module that misses its half.
_WEBHOOK_ONLY = {"required": ["webhook"], "not": {"required": ["request"]}}
_REQUEST_ONLY = {"required": ["request"], "not": {"required": ["webhook"]}}
_ITERATES = {
    "required": ["response"],
    "properties": {"response": {"required": ["iterate"]}},
}


def _when(kinds: list[str], then: dict[str, Any], *, default: bool = False) -> dict[str, Any]:
    condition: dict[str, Any] = {"properties": {"kind": {"enum": kinds}}}
    if not default:
        condition["required"] = ["kind"]
    return {"if": condition, "then": then}


_KIND_RULES: dict[str, Any] = {
    "allOf": [
        _when(["instant_trigger"], _WEBHOOK_ONLY),
        _when(["action", "universal"], _REQUEST_ONLY, default=True),
        _when(["search"], {"allOf": [_REQUEST_ONLY, _ITERATES]}),
        _when(
            ["trigger"],
            {
                "anyOf": [
                    {"allOf": [_REQUEST_ONLY, _ITERATES, {"required": ["trigger"]}]},
                    _WEBHOOK_ONLY,
                ]
            },
        ),
    ]
}

ModuleKind = Literal["action", "universal", "search", "trigger", "instant_trigger"]
#: Kinds that send nothing when run: they are handed deliveries or polled.
TRIGGER_KINDS = ("trigger", "instant_trigger")


class ModuleManifest(_Model):
    """One module: its form, its request (or, for a trigger, its webhook) and its output."""

    schema_: str | None = Field(default=None, alias="$schema")
    id: str = Field(pattern=MODULE_ID_PATTERN, description="'app.module', e.g. segment.track.")
    label: str
    description: str
    kind: ModuleKind = Field(
        default="action",
        description="'action' and 'universal' send one request; a 'search' follows its "
        "pagination and outputs one bundle an item; a 'trigger' polls for new items; an "
        "'instant_trigger' receives webhooks.",
    )
    parameters: list[Parameter] = Field(default_factory=list)
    constraints: list[Constraint] = Field(default_factory=list)
    request: RequestSpec | None = Field(
        default=None,
        description="The request the module sends (a search's or trigger's first page); "
        "required unless an instant trigger.",
    )
    response: ResponseSpec | None = Field(
        default=None, description="Items to iterate, a limit, and errors in a 2xx body."
    )
    pagination: PaginationSpec | None = Field(
        default=None, description="How searches and polling triggers ask for the next page."
    )
    trigger: PollSpec | None = Field(
        default=None, description="Polling triggers: each item's id and date."
    )
    webhook: WebhookSpec | None = Field(
        default=None, description="How an instant trigger reads webhook deliveries."
    )
    output: OutputSpec = Field(default_factory=OutputSpec)
    retry: bool = Field(default=True, description="Whether failed sends may be retried.")
    errors: dict[str, StatusError] = Field(
        default_factory=dict,
        description="HTTP status -> the error this module's requests raise for it "
        "(type, the parameter named, a message), over the app's 'errors'.",
    )
    batchable: bool = Field(
        default=False,
        description="Whether batch runs may pack this module's request bodies into the "
        "app's batch endpoint.",
    )

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        json_schema_extra=_KIND_RULES,
        defer_build=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_trigger(cls, data: Any) -> Any:
        """``kind: trigger`` with a webhook and no request was the webhook trigger before
        polling triggers took Make's name: it is read as an ``instant_trigger``."""
        if (
            isinstance(data, dict)
            and data.get("kind") == "trigger"
            and "webhook" in data
            and "request" not in data
        ):
            return {**data, "kind": "instant_trigger"}
        return data

    @model_validator(mode="after")
    def _check_names(self) -> ModuleManifest:
        check_parameter_names(self.parameters, "parameter")
        return self

    @model_validator(mode="after")
    def _check_kind(self) -> ModuleManifest:
        kind = self.kind
        if kind == "instant_trigger":
            if self.webhook is None:
                raise RuleError("Field required: an instant_trigger needs 'webhook'", "webhook")
            for key in ("request", "response", "pagination", "trigger"):
                if getattr(self, key) is not None:
                    raise RuleError(f"an instant_trigger receives webhooks: it has no {key!r}", key)
        else:
            if self.request is None:
                raise RuleError(
                    f"Field required: a module of kind {kind!r} needs 'request'", "request"
                )
            if self.webhook is not None:
                raise RuleError(
                    f"'webhook' is for instant triggers only, not {kind} modules", "webhook"
                )
        paged = kind in ("search", "trigger")
        if paged and (self.response is None or self.response.iterate is None):
            raise RuleError(
                f"Field required: a {kind} needs 'response.iterate' (the page's items)",
                "response",
            )
        if not paged:
            if self.pagination is not None:
                raise RuleError(
                    f"'pagination' is for searches and triggers, not {kind}", "pagination"
                )
            response = self.response
            if response is not None and (
                response.iterate is not None or response.limit is not None or response.merge
            ):
                raise RuleError(
                    f"'response' of a {kind} only checks errors ('valid', 'error'): iterate, limit "
                    "and merge are for searches and triggers",
                    "response",
                )
        if kind == "trigger":
            if self.trigger is None:
                raise RuleError("Field required: a polling trigger needs 'trigger'", "trigger")
            if self.response is not None and (self.response.limit or self.response.merge):
                raise RuleError(
                    "a trigger's limit is its 'limit' parameter; it does not merge", "response"
                )
            taken = {p["name"] for p in POLL_PARAMETERS} | {"since"}
            for i, param in enumerate(self.parameters):
                if param.name in taken:
                    raise RuleError(
                        f"parameter {param.name!r} is the engine's (start, since, limit are "
                        "given to every polling trigger)",
                        "parameters",
                        i,
                    )
        elif self.trigger is not None:
            raise RuleError(f"'trigger' is for polling triggers, not {kind}", "trigger")
        if kind in TRIGGER_KINDS and self.batchable:
            raise RuleError("a trigger cannot be batchable", "batchable")
        return self

    @property
    def output_bundle(self) -> Any:
        """The output template in effect: an instant trigger's default bundle is its
        event, a search's or polling trigger's its item."""
        if "bundle" in self.output.model_fields_set:
            return self.output.bundle
        if self.kind == "instant_trigger":
            return TRIGGER_BUNDLE
        if self.kind in ("search", "trigger"):
            return ITEM_BUNDLE
        return self.output.bundle


class AuthSpec(_Model):
    """How the connection authenticates each request.

    ``type`` picks an entry of :data:`connector.core.auth.AUTH_TYPES`. Auth templates are the
    only templates that see the connection's secret fields.
    """

    type: str = Field(description="'basic', 'bearer', 'header', 'headers' or 'none'.")
    username: Template | None = Field(default=None, description="basic: the user name.")
    password: Template | None = Field(default=None, description="basic: the password.")
    header: str | None = Field(default=None, description="header: the header's name.")
    value: Template | None = Field(
        default=None, description="header: the header's value; bearer: the token."
    )
    headers: dict[str, Template] | None = Field(
        default=None,
        description="headers: several headers, each built from secrets, e.g. an account id "
        "and a passcode.",
    )


class ConnectionField(Parameter):
    """A connection field; ``secret`` ones never reach module templates or output."""

    secret: bool = False


class VerifySpec(_Model):
    """A request that checks a connection works (``connector verify``).

    Its templates see ``connection`` (the public fields); auth and the app's headers
    are added. A non-2xx answer fails with its Make error type, and so does a 2xx one
    that ``valid`` refuses (with ``error``).
    """

    request: RequestSpec
    valid: Template | None = Field(default=None, description=_VALID)
    error: ResponseError | None = Field(
        default=None, description="The error of an answer that is not valid."
    )

    @model_validator(mode="after")
    def _error_needs_valid(self) -> VerifySpec:
        _check_error_needs_valid(self.valid, self.error)
        return self


class ConnectionSpec(_Model):
    """What a user enters once to connect, and how it authenticates requests."""

    fields: list[ConnectionField] = Field(default_factory=list)
    auth: AuthSpec
    verify: VerifySpec | None = Field(
        default=None, description="How `connector verify` checks the connection."
    )


class AppCode(_Model):
    """Python an app ships where a manifest truly cannot do the job.

    Each reference is ``"file:function"``, the file a ``.py`` path under the app's
    ``modules/`` folder (beside app.json, else the package's top-level ``modules/``),
    e.g. ``"acme/sign.py:sign"``. Loaded with the app, by the CLI and Python alike.
    """

    signer: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_/]+\.py:[A-Za-z_][A-Za-z0-9_]*$",
        description="Called with the final request (method, url, query, headers, body "
        "bytes) and the whole connection, secrets included; returns headers to add.",
    )
    filters: dict[
        str, Annotated[str, Field(pattern=r"^[A-Za-z0-9_/]+\.py:[A-Za-z_][A-Za-z0-9_]*$")]
    ] = Field(
        default_factory=dict,
        description="Template filters, used as '<app>_<name>' (e.g. acme_normalize).",
    )


class RetrySpec(_Model):
    """When and how failed sends are retried."""

    attempts: int = Field(default=3, ge=1, le=20, description="Tries in all, the first included.")
    backoff: float = Field(default=0.5, ge=0, description="First backoff ceiling, seconds.")
    max_backoff: float = Field(default=30.0, alias="maxBackoff", ge=0)
    statuses: list[int] = Field(
        default_factory=lambda: [408, 429, 500, 502, 503, 504],
        description="HTTP statuses that are retried.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class BatchSpec(_Model):
    """How many messages of a ``batchable`` module travel in one request.

    The engine packs prepared message bodies into ``{itemsKey: [...], **extra}`` up to
    the limits, so a batch run sends few large requests instead of one per bundle.
    A message over ``maxItemBytes`` is a DataError for that bundle alone.
    """

    url: Template = Field(description="The batch endpoint, relative to the base URL.")
    method: str = "POST"
    items_key: str = Field(default="batch", alias="itemsKey")
    extra: dict[str, Any] = Field(
        default_factory=dict,
        description="More top-level keys of each batch body (templates; 'run' in scope).",
    )
    max_items: int = Field(default=2500, alias="maxItems", ge=1)
    max_bytes: int = Field(default=512_000, alias="maxBytes", ge=1024)
    max_item_bytes: int = Field(default=32_768, alias="maxItemBytes", ge=1)
    unwrap: bool = Field(
        default=False,
        description="Each message body is already {itemsKey: [items]} (an API whose one "
        "endpoint takes a list, as LiveLike's): a batch sends the items of those lists, "
        "not the bodies.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class MessageRule(_Model):
    """The checks one type of message gets, wherever a universal module sends it."""

    path: str = Field(
        pattern=r"^/", description="The endpoint that takes this message alone, e.g. /v1/track."
    )
    required: list[str] = Field(
        default_factory=list, description="Keys the message must have, with a value."
    )
    one_of_required: list[list[str]] = Field(
        default_factory=list,
        alias="oneOfRequired",
        description="Groups of keys: at least one key of each group must have a value.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class MessagesSpec(_Model):
    """The app's message endpoints and what a message needs, so that a request a
    universal module (Make an API Call) sends to one gets the checks the app's own
    modules give their parameters: the size limit and the required keys, for a message
    posted alone to its type's ``path`` and for each item of a batch sent to the app's
    ``batch.url`` (told apart by ``typeKey``)."""

    type_key: str = Field(
        default="type", alias="typeKey", description="The key naming a batch item's type."
    )
    max_bytes: int | None = Field(
        default=None, alias="maxBytes", ge=1, description="Largest message, in bytes as sent."
    )
    types: dict[str, MessageRule] = Field(description="Each message type's endpoint and rules.")
    batch_paths: list[str] = Field(
        default_factory=list,
        alias="batchPaths",
        description="More endpoints that take a batch like batch.url does (aliases of it).",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


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
    batch: BatchSpec | None = Field(
        default=None, description="The app's batch endpoint, used by batchable modules."
    )
    headers: dict[str, Template] = Field(
        default_factory=dict,
        description="Headers of every module request ('connection' in scope, public fields); "
        "a module's own header of the same name wins.",
    )
    query: dict[str, Template] = Field(
        default_factory=dict,
        description="Query parameters of every module request, as 'headers'.",
    )
    code: AppCode | None = Field(
        default=None, description="Python from modules/: a request signer, filters."
    )
    messages: MessagesSpec | None = Field(
        default=None,
        description="Message endpoints whose checks also apply to universal modules' requests.",
    )
    modules: list[str] = Field(description="Module manifest files, relative to app.json.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)

    @model_validator(mode="after")
    def _check_fields(self) -> AppManifest:
        check_parameter_names(list(self.connection.fields), "connection field")
        if self.messages is not None and self.messages.batch_paths and self.batch is None:
            raise ValueError("messages.batchPaths are aliases of batch.url: declare 'batch' too")
        return self


def walk_parameters(params: Sequence[Parameter]) -> Iterator[Parameter]:
    """Every parameter at one level, including select options' nested ones."""
    for param in params:
        yield param
        for option in param.options or ():
            yield from walk_parameters(option.nested)


def check_parameter_names(params: list[Parameter], what: str) -> None:
    """One level of names is one namespace, select options' nested parameters included.

    Templates read every one of them as ``parameters.<name>``, so a nested name may not
    repeat a name of its level. The one exception: options of the same select are never
    shown together, so each may list the same parameter (the same definition, say the
    ``quest_id`` of several LiveLike events). Different definitions under one name
    would make the form and the docs ambiguous, so they are refused.
    """
    seen: dict[str, tuple[Parameter, tuple[tuple[int, int], ...]]] = {}
    for param, chain in _with_option_chains(params, ()):
        earlier = seen.get(param.name)
        if earlier is None:
            seen[param.name] = (param, chain)
            continue
        if not _exclusive(earlier[1], chain):
            raise ValueError(f"duplicate {what} name {param.name!r}")
        if earlier[0] != param:
            raise ValueError(
                f"{what} {param.name!r} appears under several options with different "
                "definitions: give it one definition, or another name"
            )


def _with_option_chains(
    params: list[Parameter], chain: tuple[tuple[int, int], ...]
) -> list[tuple[Parameter, tuple[tuple[int, int], ...]]]:
    """Each parameter with the (select, option) positions it is nested under."""
    out: list[tuple[Parameter, tuple[tuple[int, int], ...]]] = []
    for i, param in enumerate(params):
        out.append((param, chain))
        for j, option in enumerate(param.options or ()):
            out.extend(_with_option_chains(option.nested, (*chain, (i, j))))
    return out


def _exclusive(a: tuple[tuple[int, int], ...], b: tuple[tuple[int, int], ...]) -> bool:
    """Whether two chains part at different options of one select (never both shown)."""
    for (select_a, option_a), (select_b, option_b) in zip(a, b, strict=False):
        if select_a != select_b:
            return False
        if option_a != option_b:
            return True
    return False


def json_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one of the format's files, for editors: shipped
    as ``connector/format/schema/<name>.schema.json``."""
    schema = model.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://connector.invalid/schema/{name}.schema.json"
    return schema


def app_schema() -> dict[str, Any]:
    """The JSON Schema of app manifests (``app.json``)."""
    return json_schema(AppManifest, "app")


def module_schema() -> dict[str, Any]:
    """The JSON Schema of module manifests."""
    return json_schema(ModuleManifest, "module")
