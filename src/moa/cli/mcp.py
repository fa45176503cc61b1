"""`moa mcp`: the recipes as tools for MCP clients (Claude Code, Claude Desktop, Cursor, Zed):
over stdio by default, over streamable HTTP with `--port`."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from moa.cli.exposure import check_exposure
from moa.cli.guard import fail, warn
from moa.errors import ConfigError, MissingExtraError

# What `moa[mcp]` brings (the SDK, and the server stack whose key check it reuses).
_EXTRA = {"mcp", "fastapi", "starlette", "uvicorn", "prometheus_client", "sse_starlette"}


def mcp(
    recipe: Annotated[
        list[str] | None,
        typer.Option("--recipe", "-r", help="Recipe to offer (repeatable; default: local)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Serve streamable HTTP on this port (0: a free one) instead of stdio."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on over HTTP (default 127.0.0.1).")
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Over HTTP, accept this bearer key (repeatable); also MOA_API_KEYS.",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="Listen beyond loopback with no key (trusted networks)."),
    ] = False,
) -> None:
    """Offer recipes as MCP tools: `ask` (with progress while the layers run) and
    `list_recipes`."""
    try:
        from moa.mcp.main import serve_http, serve_stdio
        from moa.mcp.panel import Panel
        from moa.server.security import parse_keys
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _EXTRA:
            raise
        raise fail(2, str(MissingExtraError("moa mcp", "mcp"))) from None
    keys = [*(api_key or []), *parse_keys(os.environ.get("MOA_API_KEYS"))]
    try:
        if port is None and host is not None:
            raise ConfigError("--host is for HTTP: add --port PORT (stdio needs neither)")
        if port is not None:
            warning = check_exposure("moa mcp", host or "127.0.0.1", keys, no_auth=no_auth)
            if warning:
                warn(warning)
        panel = Panel.load(recipe or ["local"])
    except ConfigError as exc:
        raise fail(2, str(exc)) from None
    offered = ", ".join(panel.names)
    if port is None:
        _say(f"moa mcp: offering {offered} over stdio")
        serve_stdio(panel)
        return
    guarded = " (bearer key required)" if keys else ""

    def announce(url: str) -> None:
        _say(f"moa mcp: offering {offered} at {url}{guarded}")

    serve_http(panel, host=host or "127.0.0.1", port=port, api_keys=keys, announce=announce)


def _say(line: str) -> None:
    """A line on stderr: over stdio, stdout carries the protocol and nothing else."""
    print(line, file=sys.stderr, flush=True)
