"""Bearer-token auth for amygdala's HTTP servers (``serve`` and ``memory-serve``), as a pure ASGI middleware.

It runs before anything else of the app, on every path (documentation pages and the OpenAPI schema included),
so an unauthenticated request gets its 401 before its body is read or parsed. The scheme is case-insensitive
(RFC 7235: ``bearer KEY`` works); the key is compared in constant time. Refusals carry
``WWW-Authenticate: Bearer`` and the same OpenAI-shaped body on every server (``unauthorized_body``).

The key policy is one rule for every server (``check_access``): a key, when given, must not be empty or blank
(an empty ``AMYGDALA_API_KEY`` is a mistake, never "no key"); without a key a server binds loopback only, since
anyone who can reach it could otherwise use it. ``--host 0.0.0.0`` therefore needs ``--api-key``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from amygdala.errors import AmygdalaError
from amygdala.web.payloads import error_body, strict_json

ASGIApp = Any  # (scope, receive, send) -> awaitable; typed loosely so this module needs no web framework


API_KEY_VAR = "AMYGDALA_API_KEY"
UNAUTHORIZED_MESSAGE = "missing or wrong API key: send 'Authorization: Bearer <key>'"


class AccessError(AmygdalaError):
    """A server would start with an empty key, or without a key off loopback: names the flag that fixes it."""


def unauthorized_body() -> dict[str, Any]:
    """The 401's body on every server: OpenAI's error shape with ``code: invalid_api_key``."""
    return error_body(UNAUTHORIZED_MESSAGE, code="invalid_api_key")


def requested_key(given: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """``--api-key``, else ``AMYGDALA_API_KEY`` read again here: click treats an empty variable as unset, and an
    empty key must reach ``check_access`` to be refused, not silently serve open."""
    return given if given is not None else environ.get(API_KEY_VAR)


def key_problem(api_key: str | None) -> str | None:
    """Why ``api_key`` cannot be a key (empty or blank), or None; no key at all (None) is ``access_problem``'s."""
    if api_key is not None and not api_key.strip():
        return f"the API key is empty: give a non-empty --api-key or unset {API_KEY_VAR}"
    return None


def access_problem(host: str, api_key: str | None, *, server: str, exposes: str) -> str | None:
    """Why ``server`` must not start on ``host`` with ``api_key`` (``exposes``: what an open server would let
    anyone who can reach it do), or None when it may: the one rule of every amygdala server."""
    if (problem := key_problem(api_key)) is not None:
        return problem
    if api_key is None and not is_loopback(host):
        return (f"{server} on {host} without an API key would let anyone who can reach it {exposes}: set --api-key "
                f"(or {API_KEY_VAR}), or bind 127.0.0.1")
    return None


def check_access(host: str, api_key: str | None, *, server: str, exposes: str) -> None:
    """Raise ``AccessError`` with ``access_problem``'s line; checked before anything is loaded or bound."""
    if (problem := access_problem(host, api_key, server=server, exposes=exposes)) is not None:
        raise AccessError(problem)


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
    """Refuse every HTTP request without ``Authorization: Bearer <api_key>`` with a 401 and ``unauthorized_body``,
    except on ``open_paths``: routes that check the key themselves (``/ui`` answers its key page instead)."""

    def __init__(self, app: ASGIApp, api_key: str, open_paths: frozenset[str] = frozenset()) -> None:
        if (problem := key_problem(api_key)) is not None:
            raise AccessError(problem)
        self.app, self.api_key, self.open_paths = app, api_key, open_paths
        self.body = strict_json(unauthorized_body()).encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] != "http" or scope.get("path") in self.open_paths or key_matches(
                headers.get(b"authorization"), self.api_key):
            return await self.app(scope, receive, send)
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode()),
            (b"www-authenticate", b'Bearer realm="amygdala"')]})
        await send({"type": "http.response.body", "body": self.body})


__all__ = ["API_KEY_VAR", "UNAUTHORIZED_MESSAGE", "AccessError", "BearerAuth", "access_problem", "bearer_token",
           "check_access", "is_loopback", "key_matches", "key_problem", "requested_key", "unauthorized_body"]
