"""The web playground: static files (package data in `moa/server/ui/`) served at `/`.

The page itself holds no data, so it is served without a key (a browser cannot send a bearer
token when it navigates); everything it fetches goes through the API and needs one, which the
page asks for and keeps in the tab's sessionStorage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from fastapi import FastAPI
from starlette.responses import Response

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    **{
        f"/ui/{name}": (name, "text/javascript; charset=utf-8")
        for name in ("app.js", "api.js", "board.js", "editor.js", "markdown.js")
    },
    "/ui/app.css": ("app.css", "text/css; charset=utf-8"),
    "/ui/icon.svg": ("icon.svg", "image/svg+xml"),
}
UI_PATHS = tuple(_FILES)

# Nothing but this server: no inline script, no third-party origin, no framing.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_ui(app: FastAPI) -> None:
    folder = resources.files("moa.server").joinpath("ui")
    for path, (name, media_type) in _FILES.items():
        body = folder.joinpath(name).read_bytes()
        app.add_api_route(path, _static(body, media_type), methods=["GET"], include_in_schema=False)


def _static(body: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    async def serve() -> Response:
        return Response(body, media_type=media_type, headers=_HEADERS)

    return serve
