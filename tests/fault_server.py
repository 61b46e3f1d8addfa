"""A small real HTTP server that streams what a broken readout stream sends, for the watch client and the live page.

``POST /v1/completions`` plays a script chosen by the prompt (``faults``: a malformed chunk, a readout of the
wrong shape, tokens without a readout, a payload without choices; ``cut``: the connection drops after two
tokens, on each prompt's first request only; ``error``: an error event; ``merged``: vLLM's merged chunks;
``busy``: a 503, then ``faults``). ``GET /v1/readout/manifest`` answers two concepts at layers 1 and 2, without
calibration; with ``ui=True`` it also serves amygdala's ``/ui`` page.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

GOOD = [[0.5, -1.0], [2.0, 0.25]]
FAULT_MANIFEST = {"concepts": ["joy", "fear"], "layers": [1, 2]}


def _chunk(text: str, readout: object = None, **extra: object) -> str:
    choice = {"index": 0, "text": text, "finish_reason": None, **extra}
    if readout is not None:
        choice["readout"] = readout
    return "data: " + json.dumps({"choices": [choice]}) + "\n\n"


SCRIPTS: dict[str, list[str]] = {
    "faults": [_chunk("A", GOOD, token_id=1), "data: {not json\n\n", _chunk("B", [[1.0]], token_id=2),
               _chunk("C", token_id=3), _chunk("D", token_id=4), "data: [1, 2]\n\n",
               _chunk("E", GOOD, token_id=5), "data: [DONE]\n\n"],
    "cut": [_chunk("A", GOOD, token_id=1), _chunk("B", GOOD, token_id=2), "CUT"],
    "error": [_chunk("A", GOOD, token_id=1),
              "data: " + json.dumps({"error": {"message": "generation failed: boom"}}) + "\n\n", "data: [DONE]\n\n"],
    "merged": [_chunk("", GOOD), _chunk("", [[1.0, 1.0], [1.0, 1.0]]), _chunk("xyz", GOOD, token_ids=[7, 8, 9]),
               _chunk("", None, finish_reason="length"), "data: [DONE]\n\n"],
}


def fault_app(*, ui: bool = False) -> FastAPI:
    app = FastAPI()
    if ui:
        from amygdala.serve.ui import ui_router

        async def open_access(_authorization: str | None) -> None:
            return None

        app.include_router(ui_router(open_access))
    requests: dict[str, int] = {}
    app.get("/v1/readout/manifest")(lambda: FAULT_MANIFEST)

    @app.post("/v1/completions", response_model=None)
    async def completions(request: Request) -> StreamingResponse | JSONResponse:
        prompt = (await request.json())["prompt"]
        requests[prompt] = requests.get(prompt, 0) + 1
        if prompt == "busy" and requests[prompt] == 1:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503)
        script = SCRIPTS["faults" if prompt == "busy" else prompt.split("-")[0]]
        if prompt.startswith("cut") and requests[prompt] > 1:  # each prompt's first request is cut, later ones not
            script = script[:-1] + ["data: [DONE]\n\n"]

        async def lines() -> AsyncIterator[str]:
            for line in script:
                if line == "CUT":
                    raise ConnectionResetError("the test server drops the connection")
                yield line
                await asyncio.sleep(0.01)

        return StreamingResponse(lines(), media_type="text/event-stream")

    return app
