"""A small real OpenAI-compatible writer on loopback, with canned, deterministic replies, for ``synthesize``.

``POST /v1/chat/completions`` reads the test prompts (``Emotion: <e>. Topic: <t>.`` for a story, ``Dialogue.
Topic: <t>.`` for a dialogue) and answers by topic: ``refusal`` a refusal, ``naming`` a story that names its
emotion, ``cutoff`` a reply cut at max_tokens, ``echo`` the same text every time, ``near``
nearly the same text every time, ``short`` three words; any other
topic a unique story of 40 words drawn from the request's seed. The model name picks a fault instead:
``garbage`` (a 200 that is not JSON), ``empty`` (a 200 with an empty body), ``nochoices`` (``{}``), ``busy`` (a
503 on each prompt's first request); every request waits ``--delay`` seconds. Run as a script
(``python writer_server.py PORT [DELAY]``) to be killed; ``writer_app`` for a thread.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

PROMPTS = {"story.txt": "Emotion: {emotion}. Topic: {topic}.", "neutral.txt": "Dialogue. Topic: {topic}.",
           "topics.txt": "garden\nharbour\nkitchen\nlibrary\n"}
_TEXT = ("the old map lay open on a table beside a cup of tea while rain tapped at the window and a clock "
         "ticked somewhere in the hall as someone counted coins sorted letters folded towels checked a list "
         "walked to the door looked out at the street and wrote a short note about bread milk nails paint "
         "string glue stamps keys and a bicycle pump")
WORDS = tuple(_TEXT.split())


def canned_text(message: str, seed: int) -> tuple[str, str]:
    """(text, finish_reason) for one request."""
    found = re.search(r"Topic: (.*)\.", message)
    topic = found.group(1) if found else ""
    emotion = (re.search(r"Emotion: (.*?)\.", message) or [None, "nothing"])[1]
    rng = random.Random(seed)
    story = " ".join(rng.choice(WORDS) for _ in range(40))
    if topic == "refusal":
        return "As an AI language model, I cannot write stories about feelings.", "stop"
    if topic == "naming":
        return f"She felt so {emotion} that day. " + story, "stop"
    if topic == "cutoff":
        return story, "length"
    if topic == "echo":
        return " ".join(WORDS[:40]), "stop"
    if topic == "near":
        return " ".join(WORDS[10:50]) + " " + rng.choice(WORDS), "stop"
    if topic == "short":
        return "Just three words.", "stop"
    return f"{topic.capitalize()}: {story}.", "stop"


def writer_app(delay: float = 0.0) -> FastAPI:
    app = FastAPI()
    seen: dict[str, int] = {}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        body = await request.json()
        await asyncio.sleep(delay)
        message, model = body["messages"][-1]["content"], body.get("model")
        seen[message] = seen.get(message, 0) + 1
        if model == "garbage":
            return PlainTextResponse("<html>502 Bad Gateway</html>")
        if model == "empty":
            return Response(b"", media_type="application/json")
        if model == "nochoices":
            return JSONResponse({})
        if model == "busy" and seen[message] == 1:
            return JSONResponse({"error": {"message": "overloaded"}}, status_code=503, headers={"Retry-After": "0"})
        text, finish = canned_text(message, int(body.get("seed") or 0))
        return JSONResponse({"object": "chat.completion", "model": model,
                             "choices": [{"index": 0, "finish_reason": finish,
                                          "message": {"role": "assistant", "content": text}}],
                             "usage": {"prompt_tokens": len(message.split()), "completion_tokens": len(text.split())}})

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(writer_app(float(sys.argv[2]) if len(sys.argv) > 2 else 0.0), host="127.0.0.1",
                port=int(sys.argv[1]), log_level="warning")
