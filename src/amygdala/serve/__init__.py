"""``amygdala serve``: an OpenAI-compatible server streaming per-token readouts.

``Engine`` and ``ServeOptions`` import no web framework; ``create_app`` and the runners import FastAPI and
uvicorn only when called, so ``import amygdala`` (and ``import amygdala.serve``) stays light.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from amygdala.serve.engine import Engine, GenerationJob, JobRecord, ServeOptions

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Engine", "GenerationJob", "JobRecord", "ServeOptions", "create_app", "serve_forever", "serve_in_thread"]


def create_app(engine: Engine, options: ServeOptions) -> FastAPI:
    from amygdala.serve.app import create_app as _create_app

    return _create_app(engine, options)


def serve_forever(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, open_access: bool = False,
                  log_level: str = "info") -> None:
    from amygdala.serve.run import serve_forever as _serve_forever

    _serve_forever(app, host=host, port=port, open_access=open_access, log_level=log_level)


@contextmanager
def serve_in_thread(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    from amygdala.serve.run import serve_in_thread as _serve_in_thread

    with _serve_in_thread(app, host=host, port=port) as url:
        yield url
