"""``amygdala serve``: an OpenAI-compatible server streaming per-token readouts.

``Engine`` and ``ServeOptions`` import no web framework; ``create_app`` and the runners import FastAPI and
uvicorn only when called. The engine (torch) is imported on first use, so ``amygdala.serve.client`` (httpx only)
imports neither torch nor a web framework.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from amygdala.serve.engine import Engine, GenerationJob, JobRecord, ServeOptions

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


_ENGINE_NAMES = ("Engine", "GenerationJob", "JobRecord", "ServeOptions")


def __getattr__(name: str) -> Any:
    if name not in _ENGINE_NAMES:
        raise AttributeError(f"module 'amygdala.serve' has no attribute {name!r}")
    return getattr(import_module("amygdala.serve.engine"), name)
