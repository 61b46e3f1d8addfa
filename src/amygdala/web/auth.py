"""Bearer-token auth for amygdala's HTTP servers (``serve`` and ``memory-serve``), as a pure ASGI middleware.

It runs before anything else of the app, on every path (documentation pages and the OpenAPI schema included),
so an unauthenticated request gets its 401 before its body is read or parsed. The scheme is case-insensitive
(RFC 7235: ``bearer KEY`` works); the key is compared in constant time. Refusals carry
``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any

from amygdala.errors import AmygdalaError

ASGIApp = Any  # (scope, receive, send) -> awaitable; typed loosely so this module needs no web framework


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header (any case, any spacing), else None."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    return token.strip() or None if scheme.lower() == b"bearer" else None


def key_matches(authorization: bytes | None, api_key: str) -> bool:
    token = bearer_token(authorization)
    return token is not None and hmac.compare_digest(token, api_key.encode())


class BearerAuth:
    """Refuse every HTTP request without ``Authorization: Bearer <api_key>`` with a 401 and ``body`` (JSON), except
    on ``open_paths``: routes that check the key themselves (``/ui`` answers its key page instead)."""

    def __init__(self, app: ASGIApp, api_key: str, body: dict[str, Any],
                 open_paths: frozenset[str] = frozenset()) -> None:
        if not api_key.strip():
            raise AmygdalaError("the API key is empty: give a non-empty key")
        self.app, self.api_key, self.body, self.open_paths = app, api_key, json.dumps(body).encode(), open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] != "http" or scope.get("path") in self.open_paths or key_matches(
                headers.get(b"authorization"), self.api_key):
            return await self.app(scope, receive, send)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode()),
            (b"www-authenticate", b'Bearer realm="amygdala"')]})
        await send({"type": "http.response.body", "body": self.body})


__all__ = ["BearerAuth", "bearer_token", "is_loopback", "key_matches"]
