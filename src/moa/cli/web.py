"""`moa web`: the playground in the browser, on a local server with a free port."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from moa.cli.guard import fail
from moa.errors import ConfigError, MissingExtraError


def web(
    recipe: Annotated[
        list[str] | None,
        typer.Option("--recipe", "-r", help="Recipe to offer (repeatable; default: local)."),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the address; do not open a browser.")
    ] = False,
) -> None:
    """Open the web playground: watch every layer's proposals stream, then the answer."""
    try:
        from moa.server.security import parse_keys
        from moa.server.web import run_playground
    except ModuleNotFoundError as exc:
        if exc.name not in ("fastapi", "starlette", "uvicorn", "prometheus_client"):
            raise
        raise fail(2, str(MissingExtraError("the web playground", "server"))) from None
    try:
        run_playground(
            recipe or ["local"],
            api_keys=parse_keys(os.environ.get("MOA_API_KEYS")),
            open_browser=(lambda url: None) if no_browser else _open,
        )
    except ConfigError as exc:
        raise fail(2, str(exc)) from None


def _open(url: str) -> None:
    import webbrowser

    webbrowser.open(url)
