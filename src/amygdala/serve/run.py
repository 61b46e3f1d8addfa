"""Running the app with uvicorn: in the foreground (``amygdala serve``) or on a background thread (tests, bench)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI

from amygdala.errors import AmygdalaError
from amygdala.outputs.sanitise import terminal_line
from amygdala.serve.engine import ServeOptions
from amygdala.web.auth import check_access
from amygdala.web.ports import bind_error

logger = logging.getLogger(__name__)


class ServeAddressError(AmygdalaError):
    """The server cannot listen where asked (not a port, address in use, unknown host): names host and port."""


def check_address(host: str, port: int) -> None:
    """Refuse, before a model is loaded, an address the server could not bind."""
    if not 0 < port < 65536:
        raise ServeAddressError(f"--port {port} is not a TCP port: choose one within 1-65535")
    if (reason := bind_error(host, port)) is not None:
        raise ServeAddressError(f"cannot serve on {host}:{port}: {reason}; choose another --host or "
                                f"--port, or stop the process using it")


def check_serve_access(host: str, api_key: str | None) -> None:
    """``amygdala serve``'s side of every server's key rule (``web.auth.check_access``): no empty key, and no
    open server off loopback."""
    check_access(host, api_key, server="serve", exposes="use the model")


def serve_forever(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, open_access: bool = False,
                  log_level: str = "info") -> None:
    """Serve until interrupted. ``open_access`` (an app without an API key) is refused off loopback
    (``AccessError``), as on every amygdala server."""
    import uvicorn

    check_address(host, port)
    if open_access:
        check_serve_access(host, None)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def serve_model(model: str, vectors: Path | None, options: ServeOptions, *, manifest: Path | None = None,
                dtype: str | None = None, device: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                announce: Callable[[str], None] = logger.info) -> None:
    """``amygdala serve``: check the address, the key rule and the artifact before loading the model, then serve until
    interrupted; ``announce`` gets one line saying what is served where."""
    from amygdala.artifact import load_artifact
    from amygdala.forward.devices import describe, resolve_device, resolve_dtype
    from amygdala.forward.models import load_model
    from amygdala.readout.projection import ReadoutOptions, check_options
    from amygdala.serve.app import create_app
    from amygdala.serve.engine import Engine

    check_address(host, port)  # before loading anything: a busy port is a one-line error, not uvicorn's log
    check_serve_access(host, options.api_key)
    artifact = load_artifact(vectors, manifest) if vectors is not None else None
    if artifact is not None:
        check_options(artifact, ReadoutOptions(steer=options.steer, steer_layers=options.steer_layers))
    target = resolve_device(device)
    loaded = load_model(model, dtype=resolve_dtype(dtype, target), device=str(target))
    engine = Engine(loaded, artifact, max_queued_jobs=options.max_queued_jobs)  # refuses a misfit, before binding
    announce(f"serving {terminal_line(loaded.model_id)} ({loaded.dtype} on {describe(target)}) as "
             f"{terminal_line(repr(options.model_name))} on "
             f"http://{host}:{port}/v1 "
             + (f"with {len(artifact.concepts)} concepts x layers {list(artifact.layers)}" if artifact
                else "without vectors (no readout)")
             + (f"; live page on http://{host}:{port}/ui" if options.ui else ""))
    serve_forever(create_app(engine, options), host=host, port=port, open_access=options.api_key is None)


@contextmanager
def serve_in_thread(app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve on a background thread (port 0: a free one) and yield the base URL; stops the server on exit."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="amygdala-uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread ended before it started; see the log above")
            threading.Event().wait(0.02)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
