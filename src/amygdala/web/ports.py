"""The one TCP port probe: can a server bind ``host:port`` now? Asked before anything slow loads, so a busy port
is a one-line error, not a server framework's multi-line log (``amygdala serve`` and ``memory-serve``)."""

from __future__ import annotations

import socket


def bind_error(host: str, port: int) -> str | None:
    """The operating system's reason ``host:port`` cannot be bound now (e.g. "Address already in use"), or None
    when it can. The probe socket is closed again before this returns."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return str(exc.strerror or exc)
    return None
