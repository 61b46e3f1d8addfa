"""A small real HTTP server that plays one recorded turn (``amygdala watch --record``'s line) to the live page.

``GET /v1/readout/manifest`` answers the record's concepts and layers, with its calibration when ``calibrated``
(else the page falls back to running statistics); every ``POST /v1/completions`` streams the recorded tokens, one
chunk each with its id and readout, as ``amygdala serve`` does; ``/ui`` is amygdala's page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from amygdala.serve.ui import ui_router


def _chunk(choice: dict[str, Any]) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "finish_reason": None} | choice]}) + "\n\n"


def replay_app(row: dict[str, Any], *, calibrated: bool) -> FastAPI:
    app = FastAPI()

    async def open_access(_authorization: str | None) -> None:
        return None

    app.include_router(ui_router(open_access))
    manifest = {"concepts": row["concepts"], "layers": row["layers"], "calibrated": calibrated}
    if calibrated:
        manifest["calibration"] = row["calibration"]
    app.get("/v1/readout/manifest")(lambda: manifest)
    app.get("/v1/models")(lambda: {"object": "list", "data": [{"id": "recorded", "object": "model"}]})

    @app.post("/v1/completions")
    async def completions() -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            for text, token_id, readout in zip(row["tokens"], row["token_ids"], row["readout"], strict=True):
                yield _chunk({"text": text, "token_id": token_id, "readout": readout})
                await asyncio.sleep(0.005)
            yield _chunk({"text": "", "finish_reason": row["finish_reason"]})
            yield "data: [DONE]\n\n"

        return StreamingResponse(lines(), media_type="text/event-stream")

    return app
