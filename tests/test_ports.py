"""The one port probe shared by ``serve`` and ``memory-serve``: a busy port is named, a free one is left free."""

from __future__ import annotations

import socket

from amygdala.web.ports import bind_error


def test_bind_error_names_a_busy_port_and_passes_a_free_one() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert bind_error("127.0.0.1", port) == "Address already in use"
    assert bind_error("127.0.0.1", port) is None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
        again.bind(("127.0.0.1", port))  # the probe closed its socket: the port is still free
