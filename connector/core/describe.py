"""Describing a module for people who draw forms and map fields.

``describe_module`` returns the module's parameters as a JSON Schema (draft 2020-12)
with ``title``/``description`` from each field's label/help, plus ``x-`` keys for what
JSON Schema cannot say (advanced fields, fields shown only under one select option,
reserved key names). ``x-shown-when`` is ``{select: value}``, or ``{select: [values]}``
for a field several options share. A form renderer can use the schema alone; a validator can check
a filled form against it. The output interface and a sample bundle let builders map
the module's output before its first run.
"""

from __future__ import annotations

from typing import Any

from connector.core.registry import LoadedModule
from connector.format.manifest import OutputField, Parameter

__all__ = ["describe_module", "parameter_schema", "parameters_schema", "webhook_summary"]

_SCALAR_SCHEMAS: dict[str, dict[str, Any]] = {
    "text": {"type": "string"},
    "number": {"type": "number"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date-time"},
    "email": {"type": "string", "format": "email"},
    "url": {"type": "string", "format": "uri"},
    "any": {},
}
_KEYVALUE_ITEM = {
    "type": "object",
    "properties": {"key": {"type": "string"}, "value": {}},
    "required": ["key"],
}


def parameter_schema(param: Parameter) -> dict[str, Any]:
    """The JSON Schema of one parameter, with its form hints."""
    schema: dict[str, Any]
    if param.type == "collection":
        schema = parameters_schema(param.fields or [])
    elif param.type == "array":
        schema = {"type": "array"}
        if param.items is not None:
            schema["items"] = parameter_schema(param.items)
        if param.min_items is not None:
            schema["minItems"] = param.min_items
        if param.max_items is not None:
            schema["maxItems"] = param.max_items
    elif param.type == "select":
        options = param.options or []
        schema = {"enum": [o.value for o in options]}
        schema["x-options"] = [
            {"value": o.value, "label": o.label or str(o.value)} for o in options
        ]
    elif param.type == "keyvalue":
        schema = {
            "oneOf": [
                {"type": "object"},
                {"type": "array", "items": _KEYVALUE_ITEM},
            ]
        }
        if param.reserved is not None:
            schema["x-reserved"] = {
                "names": list(param.reserved.names),
                "use": param.reserved.use,
                "matching": "case, '_', '-' and spaces are ignored",
            }
    else:
        schema = dict(_SCALAR_SCHEMAS[param.type])
    schema["title"] = param.label or param.name
    if param.help:
        schema["description"] = param.help
    schema["x-type"] = param.type
    if param.default is not None:
        schema["default"] = param.default
    for key, value in param.rules.items():
        schema["x-format" if key == "format" else key] = value
    if param.example is not None:
        schema["examples"] = [param.example]
    if param.advanced:
        schema["x-advanced"] = True
    return schema


def _mark_remote(module: LoadedModule, schema: dict[str, Any]) -> None:
    """Fields whose options come from a call: ``x-remote-options`` says how to load them."""
    for name in module.remote:
        schema["properties"][name]["x-remote-options"] = {
            "command": f"connector options {module.id} {name}"
        }


def parameters_schema(params: list[Parameter]) -> dict[str, Any]:
    """An object schema for one level of parameters (nested select options included)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in params:
        properties[param.name] = parameter_schema(param)
        if param.required and param.default is None:
            required.append(param.name)
        for option in param.options or ():
            for nested in option.nested:
                shown = properties.get(nested.name, {}).get("x-shown-when", {}).get(param.name)
                if shown is not None:
                    # The same field under several options (one definition, checked at
                    # load time): shown when any of them is chosen.
                    values = shown if isinstance(shown, list) else [shown]
                    properties[nested.name]["x-shown-when"] = {param.name: [*values, option.value]}
                    continue
                sub = parameter_schema(nested)
                sub["x-shown-when"] = {param.name: option.value}
                properties[nested.name] = sub
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _output_field(field: OutputField) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": field.name,
        "type": field.type,
        "label": field.label or field.name,
    }
    if field.help:
        out["help"] = field.help
    if field.fields:
        out["fields"] = [_output_field(f) for f in field.fields]
    return out


def describe_module(module: LoadedModule) -> dict[str, Any]:
    """Everything a host needs to draw the module's form and map its output."""
    manifest = module.manifest
    schema = parameters_schema(list(manifest.parameters))
    _mark_remote(module, schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = manifest.label
    if manifest.constraints:
        schema["allOf"] = [
            {"anyOf": [{"required": [n]} for n in c.one_of_required]} for c in manifest.constraints
        ]
    app = module.app.manifest
    connection = parameters_schema(list(app.connection.fields))
    for name in module.app.secret_fields:
        connection["properties"][name].update({"writeOnly": True, "x-secret": True})
    described: dict[str, Any] = {
        "id": manifest.id,
        "app": app.name,
        "label": manifest.label,
        "description": manifest.description,
        "kind": manifest.kind,
        "parameters": schema,
        "constraints": [
            {"oneOfRequired": list(c.one_of_required), "message": c.message}
            for c in manifest.constraints
        ],
        "connection": connection,
        "output": {
            "fields": [_output_field(f) for f in manifest.output.fields],
            "sample": manifest.output.sample,
        },
    }
    if manifest.webhook is not None:
        described["webhook"] = webhook_summary(module)
    if module.is_polling:
        described["poll"] = {
            "state": "pass the state the last poll returned; save the new one after handing "
            "the bundles on (connector poll --state FILE does both)",
            "parameters": ["start", "since", "limit"],
        }
    if module.paging is not None and module.manifest.pagination is not None:
        described["pagination"] = {"maxPages": module.manifest.pagination.max_pages}
    return described


def webhook_summary(module: LoadedModule) -> dict[str, Any]:
    """What a host must know to accept a trigger's deliveries (the secret's field, not it)."""
    webhook = module.manifest.webhook
    assert webhook is not None
    signature = webhook.signature
    return {
        "method": "POST",
        "signature": (
            None
            if signature is None
            else {
                "header": signature.header,
                "algorithm": signature.algorithm,
                "encoding": signature.encoding,
                "prefix": signature.prefix,
                "secretField": signature.secret,
            }
        ),
        "itemsKey": webhook.items_key,
        "requiredKeys": list(webhook.required_keys),
        "maxBodyBytes": webhook.max_body_bytes,
    }
