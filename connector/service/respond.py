"""JSON responses written by orjson (the engine's serialiser; FastAPI's Json
is deprecated). Bundles are plain JSON values already, so nothing is validated again on
the way out: the response models document the shape, the engine made it."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse

__all__ = ["Json"]


class Json(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=str)
