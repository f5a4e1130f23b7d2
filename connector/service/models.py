"""The API's request and response bodies: pydantic models, from which FastAPI writes
the OpenAPI document served at ``GET /openapi.json`` (one source, as for manifests)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "AckIn",
    "AckOut",
    "BundleOut",
    "BundlesOut",
    "ConnectionIn",
    "ConnectionOut",
    "ConnectionRef",
    "ConnectionsOut",
    "DeletedOut",
    "DeliveryOut",
    "DryRunOut",
    "ErrorDetail",
    "ErrorOut",
    "ExecutionOut",
    "ExecutionsOut",
    "HookIn",
    "HookOut",
    "HooksOut",
    "ModuleSummary",
    "ModulesOut",
    "OptionOut",
    "OptionsIn",
    "OptionsOut",
    "PollIn",
    "PollOut",
    "RetryAllOut",
    "RetryIn",
    "RunIn",
    "RunOut",
    "VerifyIn",
    "VerifyOut",
]

#: A stored connection's id, or the connection's values inline (used for this request
#: only, never stored).
ConnectionRef = str | dict[str, Any]

#: The connection the document's examples use: the local sink's address.
_EXAMPLE_CONNECTION: dict[str, JsonValue] = {
    "writeKey": "wk_example_0123456789",
    "host": "http://127.0.0.1:8765",
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    """An input model's config: extra keys refused, as for every :class:`_In`, and the
    examples its OpenAPI document shows."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class FaultOut(BaseModel):
    field: str | None = Field(description="The field's path, e.g. traits.address.city.")
    rule: str = Field(
        description="The rule it broke: a JSON Schema keyword (required, type, format, "
        "maxLength, enum, ...) or oneOfRequired, reserved, uniqueKeys, mapping, invalid."
    )
    message: str


class ErrorDetail(BaseModel):
    type: str = Field(description="Make's error type, e.g. DataError, InvalidAccessTokenError.")
    message: str
    field: str | None = Field(description="The field at fault, when there is one.")
    origin: str = Field(description="'service' (this service refused) or 'upstream' (the remote).")
    status: int | None = Field(default=None, description="The remote's HTTP status (upstream).")
    attempts: int | None = None
    incompleteId: str | None = Field(
        default=None, description="Set when the run was kept as an incomplete execution."
    )
    retryable: bool | None = None
    faults: list[FaultOut] | None = Field(
        default=None,
        description="Every field at fault, for a form to show at once: always for a "
        "DataError, and for an InvalidConfigurationError about a connection's fields.",
    )


class ErrorOut(BaseModel):
    error: ErrorDetail


class ModuleSummary(BaseModel):
    id: str
    label: str
    kind: str
    app: str
    description: str | None = None


class ModulesOut(BaseModel):
    modules: list[ModuleSummary]


class ConnectionIn(_In):
    model_config = _examples(
        {
            "app": "segment",
            "label": "production",
            "values": {**_EXAMPLE_CONNECTION, "sharedSecret": "whsec_example_42"},
        }
    )
    app: str = Field(min_length=1, max_length=200, description="The app, e.g. segment.")
    values: dict[str, Any] = Field(description="The connection's fields, secrets included.")
    label: str | None = Field(default=None, max_length=200)


class ConnectionOut(BaseModel):
    id: str
    app: str
    label: str | None
    fields: dict[str, Any] = Field(description="The public fields; secrets are never returned.")
    secrets: list[str] = Field(description="The names of the secret fields that are set.")
    created: str


class ConnectionsOut(BaseModel):
    connections: list[ConnectionOut]


class RunIn(_In):
    model_config = _examples(
        {
            "connection": _EXAMPLE_CONNECTION,
            "parameters": {"event": "Signed Up", "userId": "{{ webhook.id }}"},
            "context": {"webhook": {"id": "u-1"}},
        },
        {"connection": "conn_Q2hlY2tlZA", "parameters": {"event": "E", "userId": "u-1"}},
    )

    connection: ConnectionRef = Field(
        description="A stored connection's id, or the connection's values inline."
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] | None = Field(
        default=None, description="Earlier modules' bundles by name, for mapped values."
    )


class RunOut(BaseModel):
    bundles: list[Any]


class DryRunOut(BaseModel):
    request: dict[str, Any] = Field(description="What would be sent, auth redacted.")


class ExecutionOut(BaseModel):
    id: str
    module: str
    state: str
    messageId: str | None
    attempts: int
    error: dict[str, Any] | None
    created: str
    updated: str


class ExecutionsOut(BaseModel):
    executions: list[ExecutionOut]


class RetryIn(_In):
    model_config = _examples({"connection": _EXAMPLE_CONNECTION})
    connection: ConnectionRef = Field(
        description="The connection to send with (secrets are never stored with the run)."
    )


class RetryAllOut(BaseModel):
    outcomes: list[dict[str, Any]]


class DeletedOut(BaseModel):
    deleted: str


class HookIn(_In):
    model_config = _examples(
        {
            "module": "segment.watch_events",
            "connection": "conn_Q2hlY2tlZA",
            "parameters": {"types": ["track"]},
        }
    )
    module: str = Field(min_length=1, max_length=200, description="An instant trigger.")
    connection: str = Field(
        min_length=1, max_length=200, description="A stored connection's id (holds the secret)."
    )
    parameters: dict[str, Any] = Field(default_factory=dict)


class HookOut(BaseModel):
    id: str
    module: str
    connection: str
    parameters: dict[str, Any]
    url: str = Field(description="The public URL the sender posts deliveries to.")
    created: str


class HooksOut(BaseModel):
    hooks: list[HookOut]


class BundleOut(BaseModel):
    id: int = Field(description="Acknowledge with this id.")
    deliveryId: str
    bundle: Any
    received: str


class BundlesOut(BaseModel):
    bundles: list[BundleOut]


class AckIn(_In):
    ids: list[int] = Field(max_length=10000)


class AckOut(BaseModel):
    acked: int = Field(description="How many of the ids were pending (and are now deleted).")


class DeliveryOut(BaseModel):
    deliveryId: str
    bundles: int = Field(description="How many bundles the delivery made (after filters).")


class PollIn(_In):
    connection: str = Field(min_length=1, max_length=200)
    parameters: dict[str, Any] = Field(default_factory=dict)
    trigger: str | None = Field(
        default=None,
        max_length=200,
        description="Names the trigger's state; by default the module, connection and "
        "parameters do.",
    )
    reset: bool = Field(default=False, description="Forget the saved state first.")


class PollOut(BaseModel):
    bundles: list[Any]


class OptionsIn(_In):
    connection: ConnectionRef
    parameters: dict[str, Any] = Field(default_factory=dict)


class OptionOut(BaseModel):
    label: str
    value: Any


class OptionsOut(BaseModel):
    options: list[OptionOut]


class VerifyIn(_In):
    connection: ConnectionRef


class VerifyOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    ok: bool
