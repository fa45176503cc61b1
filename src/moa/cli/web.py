"""`moa web`: the playground in the browser, on a local server with a free port."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from moa.cli.exposure import NoAuthOpt, check_exposure
from moa.cli.guard import fail, warn
from moa.errors import ConfigError, MissingExtraError


def web(
    recipe: Annotated[
        list[str] | None,
        typer.Option("--recipe", "-r", help="Recipe to offer (repeatable; default: local)."),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the address; do not open a browser.")
    ] = False,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to listen on; beyond loopback needs MOA_API_KEYS or --no-auth."
        ),
    ] = "127.0.0.1",
    no_auth: NoAuthOpt = False,
) -> None:
    """Open the web playground: watch every layer's proposals stream, then the answer."""
    try:
        from moa.server.security import parse_keys
        from moa.server.web import run_playground
    except ModuleNotFoundError as exc:
        if exc.name not in ("fastapi", "starlette", "uvicorn", "prometheus_client"):
            raise
        raise fail(2, str(MissingExtraError("the web playground", "server"))) from None
    keys = parse_keys(os.environ.get("MOA_API_KEYS"))
    try:
        if (warning := check_exposure("moa web", host, keys, no_auth=no_auth)) is not None:
            warn(warning)
        run_playground(
            recipe or ["local"],
            host=host,
            api_keys=keys,
            open_browser=(lambda url: None) if no_browser else _open,
        )
    except ConfigError as exc:
        raise fail(2, str(exc)) from None


def _open(url: str) -> None:
    import webbrowser

    webbrowser.open(url)
