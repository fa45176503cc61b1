"""Serving the tools: over stdio (the client starts `moa mcp` and talks on its stdin and
stdout), or over streamable HTTP on a port, behind the same bearer keys as `moa serve`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Sequence

import uvicorn

from moa.mcp.panel import Panel
from moa.mcp.tools import build_server
from moa.server.security import AuthGate, BearerAuth

# Where the SDK's streamable HTTP transport answers (its default, which clients expect).
MCP_PATH = "/mcp"
# In-flight runs get this long to finish on Ctrl-C / SIGTERM; open event streams are then cut.
GRACEFUL_TIMEOUT_S = 10


def serve_stdio(panel: Panel) -> None:
    """Until the client closes stdin. Nothing but the protocol may reach stdout."""
    server = build_server(panel)

    async def main() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await panel.aclose()

    asyncio.run(main())


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (bound now, so port 0 picks a free port and the address printed is
    the one clients reach)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


def url_of(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{MCP_PATH}"


def serve_http(
    panel: Panel,
    *,
    host: str,
    port: int,
    api_keys: Sequence[str],
    announce: Callable[[str], None],
) -> None:
    """Until SIGINT/SIGTERM. With `api_keys`, every request needs `Authorization: Bearer KEY`
    (checked before the body is read, as `moa serve` checks it); `announce` gets the URL once
    the port is open."""
    sock = listen(host, port)
    server = build_server(panel, host=host, port=sock.getsockname()[1])
    app = AuthGate(server.streamable_http_app(), BearerAuth(api_keys), open_paths=())
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S)

    async def main() -> None:
        try:
            announce(url_of(sock, host))
            await uvicorn.Server(config).serve(sockets=[sock])
        finally:
            sock.close()
            await panel.aclose()

    asyncio.run(main())
