"""The one workload every case uses: a Segment track event with 10 custom properties.

Ours and the peers get the same values, so the messages on the wire are comparable
(~480 bytes each): event, userId, revenue, currency and the same 10 properties. Ours
takes the custom properties the way a Make builder maps them (a list of key/value
pairs); the official library takes a ``properties`` dict.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "EVENT",
    "MAPPED_CONTEXT",
    "MAPPED_PARAMETERS",
    "OFFICIAL_PROPERTIES",
    "PARAMETERS",
    "WRITE_KEY",
    "auth_headers",
    "connection",
    "parameter_stream",
    "raw_message",
]

WRITE_KEY = "wk_bench_0123456789"
EVENT = "Order Completed"

#: The 10 custom properties: text, numbers and a boolean, none of them reserved.
CUSTOM: dict[str, Any] = {
    "orderId": "A-1001",
    "sku": "SKU-42",
    "quantity": 2,
    "coupon": "SPRING",
    "shipping": 4.5,
    "tax": 1.25,
    "category": "Shoes",
    "brand": "Acme",
    "giftWrap": False,
    "channel": "web",
}

#: ``segment.track`` parameters, literal values (nothing to render but the manifest).
PARAMETERS: dict[str, Any] = {
    "event": EVENT,
    "userId": "user-1",
    "revenue": 19.99,
    "currency": "USD",
    "customProperties": [{"key": key, "value": value} for key, value in CUSTOM.items()],
}

#: The same run with three values mapped from an earlier module's output, as a
#: scenario would have them: this adds the cost of rendering builder expressions.
MAPPED_PARAMETERS: dict[str, Any] = {
    **PARAMETERS,
    "event": "{{ webhook.event }}",
    "userId": "{{ webhook.user.id }}",
    "revenue": "{{ webhook.total }}",
}
MAPPED_CONTEXT: dict[str, Any] = {
    "webhook": {"event": EVENT, "user": {"id": "user-1"}, "total": "19.99"}
}

#: The official library's ``properties``: the same values, as one dict.
OFFICIAL_PROPERTIES: dict[str, Any] = {"revenue": 19.99, "currency": "USD", **CUSTOM}


def connection(url: str) -> dict[str, str]:
    """A Segment connection pointed at the benchmark receiver."""
    return {"writeKey": WRITE_KEY, "host": url}


def auth_headers() -> dict[str, str]:
    """What the raw httpx peers send: Segment's Basic auth and a JSON content type."""
    token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def parameter_stream(count: int) -> Iterator[dict[str, Any]]:
    """``count`` parameter sets, made lazily (a batch run must not need them all at once)."""
    for index in range(count):
        yield {**PARAMETERS, "userId": f"user-{index}"}


def raw_message(index: int) -> dict[str, Any]:
    """The message the raw httpx peers send: what a minimal client must build per event
    (a fresh messageId and timestamp), with the same body our engine sends."""
    return {
        "type": "track",
        "event": EVENT,
        "userId": f"user-{index}",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
        "messageId": str(uuid.uuid4()),
        "properties": OFFICIAL_PROPERTIES,
        "context": {"library": {"name": "raw-httpx", "version": "0"}},
    }


def raw_body(index: int = 0) -> bytes:
    """One prebuilt single-event body (the raw single-POST peer sends it as is)."""
    return json.dumps(raw_message(index), separators=(",", ":")).encode()
