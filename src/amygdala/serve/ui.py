"""``GET /ui`` (``amygdala serve --ui``): the live page, one self-contained HTML file that loads nothing else.

A browser cannot send a bearer header when it navigates, so on a server with an API key ``/ui`` answers 401 with
a small key page. That page asks for the key, fetches ``/ui`` again with ``Authorization: Bearer <key>`` (the same
check every ``/v1`` route makes) and swaps itself for the live page; the key stays in the tab's sessionStorage
and goes, as the same header, with each of the page's requests. No cookie is set, so no other site can make the
browser act with the key. The content security policy lets the page talk to this server only.

The live page draws with ``amygdala.readout.scale``'s constants, rendered into its JSON block here, so the page
holds no copy of them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from amygdala.readout.scale import page_constants
from amygdala.serve.schemas import APIError

UI_PATH = "/ui"
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


_SCALE_MARK = "/*AMYGDALA_SCALE*/"


@cache
def page(name: str) -> str:
    """``ui.html`` (the live page, with the readout scale's constants in it) or ``ui_key.html`` (the key page),
    shipped as package data."""
    text = files("amygdala.serve").joinpath(name).read_text(encoding="utf-8")
    # "<" escaped, so no value can close the script element it sits in.
    return text.replace(_SCALE_MARK, json.dumps(page_constants()).replace("<", "\\u003c"))


def ui_router(check_key: Callable[[str | None], Awaitable[None]]) -> APIRouter:
    """The ``/ui`` route; ``check_key(authorization header)`` raises APIError unless the request may pass."""
    router = APIRouter()

    @router.get(UI_PATH, include_in_schema=False)
    async def ui(request: Request) -> HTMLResponse:
        try:
            await check_key(request.headers.get("authorization"))
        except APIError:
            return HTMLResponse(page("ui_key.html"), status_code=401,
                                headers=_HEADERS | {"WWW-Authenticate": 'Bearer realm="amygdala"'})
        return HTMLResponse(page("ui.html"), headers=_HEADERS)

    return router
