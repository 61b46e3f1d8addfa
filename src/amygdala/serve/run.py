"""Running the app with uvicorn: in the foreground (``amygdala serve``) or on a background thread (tests, bench)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI

logger = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_forever(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, open_access: bool = False,
                  log_level: str = "info") -> None:
    """Serve until interrupted. ``open_access`` (no API key) on a non-loopback host is logged as a warning."""
    import uvicorn

    if open_access and not _is_loopback(host):
        logger.warning("serving on %s without an API key: anyone who can reach it can use the model", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


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
