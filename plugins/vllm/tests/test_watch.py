"""``amygdala watch`` against the plugin's real vLLM OpenAI server: it runs in amygdala's MAIN interpreter (as a
user would run it beside their vLLM), streams, draws its final screen (``--once``) and records every token.

It relies only on the client contract: ``GET /v1/readout/manifest`` and ``choices[i].readout`` in stream chunks.
The record must equal what the same server answers without streaming (greedy), token by token.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from conftest import CONCEPTS, LAYERS, Server, assert_close, main_python

CHAT = "Say something kind."
COMPLETION = "Once upon a time"
MAX_TOKENS = 8


def _whole(server: Server, chat: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": server.model, "temperature": 0, "max_tokens": MAX_TOKENS,
                            "return_token_ids": True}
    body |= {"messages": [{"role": "user", "content": CHAT}]} if chat else {"prompt": COMPLETION}
    response = httpx.post(f"{server.url}/v1/{'chat/completions' if chat else 'completions'}", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]


@pytest.mark.parametrize("chat", [False, True], ids=["completion", "chat"])
def test_watch_once_records_the_plugin_stream(server: Server, tmp_path: Path, chat: bool) -> None:
    record = tmp_path / "watch.jsonl"
    command = [main_python(), "-m", "amygdala.cli", "watch", "--url", server.url, "--chat" if chat else "--completion",
               "--prompt", CHAT if chat else COMPLETION, "--max-tokens", str(MAX_TOKENS), "--temperature", "0",
               "--once", "--record", str(record)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "110", "LINES": "30"})
    assert done.returncode == 0, done.stderr
    screen = done.stdout
    assert "Traceback" not in done.stderr and f"watched {MAX_TOKENS} tokens in 1 turns" in done.stderr
    assert f"layer {max(LAYERS)} ({len(LAYERS)}/{len(LAYERS)})" in screen and f"{MAX_TOKENS} tokens" in screen
    # The plugin's manifest carries the artifact's calibration (the payload amygdala serve answers): watch uses it.
    assert "z-scores: manifest calibration" in screen
    assert all(concept in screen for concept in CONCEPTS)

    (line,) = [json.loads(text) for text in record.read_text().splitlines()]
    whole = _whole(server, chat)
    assert (line["concepts"], line["layers"], line["zscore"]) == (list(CONCEPTS), list(LAYERS), False)
    assert line["kind"] == ("chat" if chat else "completion") and line["finish_reason"] == "length"
    assert line["token_ids"] == whole["token_ids"]
    assert "".join(line["tokens"]) == (whole["message"]["content"] if chat else whole["text"])
    assert_close(line["readout"], torch.tensor(whole["readout"]), "watch's record vs the non-streamed readout")
