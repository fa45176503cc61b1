from __future__ import annotations

import importlib.metadata
import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from moa import MoA, ProviderConfig, Registry, RetryPolicy
from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.testing import FakeUpstream

# -- the embedded model ------------------------------------------------------------------------


def _have_local() -> bool:
    try:
        import llama_cpp  # noqa: F401

        from moa.providers.local.provider import resolve_model_path

        resolve_model_path("smollm2")
    except Exception:
        return False
    return True


# Skips a test that runs the real embedded model where the `local` extra is missing; CI
# installs it, so there a missing model is a failure, not a skip.
needs_local = pytest.mark.skipif(
    not _have_local() and not os.environ.get("CI"), reason="needs moa[local]"
)


def missing_extras(recipe: Any) -> list[str]:
    """The extras a recipe's embedded models need that this environment lacks. The README's
    test command installs `.[local,dev]` only, so a recipe on Qwen (the `qwen` extra) must
    skip there, whatever model files an older run left in `~/.cache/moa/models`."""
    from moa.providers.local.chunks import QWEN_CODER

    specs = [*(m for layer in recipe.layers for m in layer.models), recipe.aggregator]
    models = {spec if isinstance(spec, str) else spec.model for spec in specs}
    missing = set()
    for model in models:
        provider, _, name = model.partition(":")
        if provider != "local":
            continue
        if not _have_local():
            missing.add("local")
        if chunked := QWEN_CODER.get(name):
            try:
                importlib.metadata.distribution(chunked.dist_name(1))
            except importlib.metadata.PackageNotFoundError:
                missing.add(chunked.extra)
    return sorted(missing)


# -- no test reaches a real provider -----------------------------------------------------------


class RealNetworkCall(RuntimeError):
    """Raised when test code connects to, or resolves, anything but this machine."""


class NetworkGuard:
    """Refuses every connection to a non-loopback address, and every DNS lookup of a name
    other than localhost, for the whole session; each refusal also fails the test that made
    it, even if the code under test caught the error (and, say, retried it as a connection
    error). Loopback (127.0.0.0/8, ::1, localhost) and unix sockets are allowed."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self._saved: dict[str, Any] = {}

    @staticmethod
    def _loopback(host: object) -> bool:
        if host == "localhost":
            return True
        try:
            address = ipaddress.ip_address(str(host).split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.is_loopback

    def _refuse(self, what: str) -> RealNetworkCall:
        message = (
            f"a test tried to reach {what}: tests use moa.testing.FakeUpstream on 127.0.0.1 "
            "or the embedded model, never a real provider"
        )
        self.refused.append(message)
        return RealNetworkCall(message)

    def install(self) -> None:
        guard = self
        connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
        getaddrinfo = socket.getaddrinfo

        def check(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                host = address[0]
                if not guard._loopback(host):
                    raise guard._refuse(f"{host}:{address[1]}")

        def guarded_connect(sock: socket.socket, address: Any) -> None:
            check(sock, address)
            connect(sock, address)

        def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
            check(sock, address)
            return connect_ex(sock, address)

        def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            # Any IP literal is fine to "resolve" (no DNS); the connect is what is checked.
            if host not in (None, "", b"") and not guard._literal(host):
                raise guard._refuse(f"the name {host!r} (a DNS lookup)")
            return getaddrinfo(host, *args, **kwargs)

        self._saved = {"connect": connect, "connect_ex": connect_ex, "gai": getaddrinfo}
        socket.socket.connect = guarded_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = guarded_getaddrinfo

    @staticmethod
    def _literal(host: Any) -> bool:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name == "localhost":
            return True
        try:
            ipaddress.ip_address(name.split("%")[0])
        except ValueError:
            return False
        return True

    def uninstall(self) -> None:
        socket.socket.connect = self._saved["connect"]  # type: ignore[method-assign]
        socket.socket.connect_ex = self._saved["connect_ex"]  # type: ignore[method-assign]
        socket.getaddrinfo = self._saved["gai"]


@pytest.fixture(scope="session", autouse=True)
def _network_guard_installed() -> Iterator[NetworkGuard]:
    guard = NetworkGuard()
    guard.install()
    yield guard
    guard.uninstall()


@pytest.fixture(autouse=True)
def network_guard(_network_guard_installed: NetworkGuard) -> Iterator[NetworkGuard]:
    """Fails the test if its code reached for a non-loopback address, caught or not."""
    guard = _network_guard_installed
    guard.refused.clear()
    yield guard
    if guard.refused:
        pytest.fail(guard.refused[0], pytrace=False)


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def upstream(upstream_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The shared fake upstream, with scripts and recorded requests reset for each test."""
    upstream_server.reset()
    yield upstream_server


@pytest.fixture
def registry(upstream: FakeUpstream) -> Registry:
    return Registry({"fake": ProviderConfig("fake", upstream.base_url)}, env={})


@pytest.fixture
def make_moa(registry: Registry):
    """Build a MoA on the fake upstream: make_moa([["a", "b"], ["c"]], "agg")."""

    def make(
        layers: list[list[str]],
        aggregator: str = "agg",
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        **layer_kwargs: object,
    ) -> MoA:
        return MoA(
            *(ProposalLayer(*(f"fake:{m}" for m in models), **layer_kwargs) for models in layers),
            Aggregator(f"fake:{aggregator}"),
            registry=registry,
            retry=retry or RetryPolicy(max_attempts=1),
            timeout_s=timeout_s,
        )

    return make


@pytest.fixture
def recipe_file(tmp_path: Path, upstream: FakeUpstream):
    """Write a recipe TOML whose `fake` provider is the fake upstream."""

    def write(body: str, name: str = "recipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(
            body + f'\n[providers.fake]\nbase_url = "{upstream.base_url}"\n', encoding="utf-8"
        )
        return path

    return write


# -- the OpenAI-compatible server, over real HTTP --------------------------------------------

SERVER_RECIPE = """
name = "test-moa"
[retry]
max_attempts = 1
[[layers]]
models = ["fake:a", "fake:b"]
[aggregator]
model = "fake:agg"
"""


class ServerThread:
    """A uvicorn server for an ASGI app on a pre-bound 127.0.0.1 socket, in a thread (the
    same arrangement as FakeUpstream): clients may connect as soon as it is constructed."""

    def __init__(self, app: object, *, graceful_timeout_s: int = 10) -> None:
        import socket
        import threading

        import uvicorn

        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(128)
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_level="warning",
            timeout_graceful_shutdown=graceful_timeout_s,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=15)
        self._socket.close()

    @property
    def stopped(self) -> bool:
        return not self._thread.is_alive()


@pytest.fixture
def serve_moa(recipe_file):
    """Start the moa server on the fake upstream: serve_moa(max_concurrent_runs=1, ...)."""
    from moa import recipes
    from moa.server import create_app

    servers: list[ServerThread] = []

    def start(recipe: str = SERVER_RECIPE, **options: object) -> ServerThread:
        loaded = recipes.load(recipe_file(recipe, name=f"recipe{len(servers)}.toml"))
        graceful = int(options.pop("graceful_timeout_s", 10))  # type: ignore[call-overload]
        server = ServerThread(
            create_app({loaded.name: loaded}, **options), graceful_timeout_s=graceful
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def moa_server(serve_moa) -> ServerThread:
    """The moa server with default options, serving the `test-moa` recipe."""
    return serve_moa()


def wait_until(condition, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll `condition` until true; fail (not hang) after `timeout_s`."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- Redis (issue 14: limits and cache shared between processes) ------------------------------


@pytest.fixture
def redis_server():
    """A fresh, empty `redis-server` on a free loopback port (CI installs the package)."""
    from moa.testing.redis_server import RedisServer

    if not RedisServer.available():
        pytest.skip("redis-server is not installed here (apt install redis-server); CI runs these")
    with RedisServer() as server:
        yield server
