"""`moa web`: the playground on a free local port, opened in the browser once it listens."""

from __future__ import annotations

import socket
import webbrowser
from collections.abc import Callable, Sequence

import uvicorn

from moa.server.app import create_app
from moa.server.main import load_recipes, log_to_stderr


class _Server(uvicorn.Server):
    """Calls `ready` once the server accepts connections (not before: the page would fail)."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._ready()


def free_socket(host: str) -> socket.socket:
    """A listening socket on a port the OS picked, so no other program can take it meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(128)
    return sock


def run_playground(
    recipe_refs: Sequence[str],
    *,
    host: str = "127.0.0.1",
    api_keys: Sequence[str] = (),
    open_browser: Callable[[str], object] = webbrowser.open,
    announce: Callable[[str], None] = lambda line: print(line, flush=True),
    log_level: str = "warning",
) -> None:
    """Serve `recipe_refs` with the playground until Ctrl-C, on a free port of `host`."""
    log_to_stderr(log_level)
    app = create_app(load_recipes(recipe_refs), api_keys=api_keys)
    sock = free_socket(host)
    url = f"http://{host}:{sock.getsockname()[1]}/"

    def ready() -> None:
        announce(f"moa playground: {url}  (Ctrl-C stops it)")
        open_browser(url)

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5)
    try:
        _Server(config, ready).run(sockets=[sock])
    finally:
        sock.close()
