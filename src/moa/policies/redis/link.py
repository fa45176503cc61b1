"""This process's connection to Redis, and what happens when Redis goes away.

Every Redis step goes through `Link.call`. When one fails (refused, timed out, any Redis
error), the link logs one warning line, raises `Unavailable` — the caller then uses its
per-process fallback — and stays down, without touching Redis, for `retry_s`; the next call
after that tries again, and the first that succeeds brings the link back. So a dead Redis
costs a request nothing but the shared view, and a returning one is picked up within seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from moa.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

log = logging.getLogger("moa.shared")  # the name users filter on; kept when the package moved
T = TypeVar("T")


class Unavailable(Exception):
    """Redis could not be used for this step; use the per-process fallback."""


def display(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def check(url: str, *, optional: bool = False, timeout_s: float = 2.0) -> bool:
    """Ping Redis at startup. Unreachable: a ConfigError, or with `optional` a warning and
    False (the caller then starts on per-process limits and picks Redis up when it appears)."""
    try:
        import redis
    except ModuleNotFoundError:
        raise MissingExtraError("Redis support (--redis, --cache redis://)", "redis") from None
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        with client:
            client.ping()
        return True
    except (redis.RedisError, OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if not optional:
            raise ConfigError(
                f"cannot reach Redis at {display(url)} ({reason}); start it, fix --redis / "
                f"MOA_REDIS_URL, or pass --redis-optional to run on per-process limits"
            ) from None
        log.warning(
            "moa: Redis at %s is unreachable (%s); using per-process limits until it answers",
            display(url),
            reason,
        )
        return False


class Link:
    """One Redis server for this process: a client per event loop (an asyncio connection
    belongs to the loop that opened it, and `MoA.run()` starts a loop per call)."""

    def __init__(
        self,
        url: str,
        *,
        fallback: str = "using per-process limits",
        timeout_s: float = 0.5,
        retry_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.fallback = fallback  # what this process does meanwhile, for the warning
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._clock = clock
        self._client: Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._retry_at: float | None = None  # down until then
        self.outages = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def up(self) -> bool:
        return self._retry_at is None

    def usable(self) -> bool:
        """Up, or down long enough that it is worth trying again."""
        return self._retry_at is None or self._clock() >= self._retry_at

    def start_down(self) -> None:
        """Unreachable at startup (already reported): try again after `retry_s`."""
        self._retry_at = self._clock() + self.retry_s

    def mark_down(self, reason: str) -> None:
        if self._retry_at is None and not self._closed:
            self.outages += 1
            log.warning(
                "moa: lost Redis at %s (%s); %s until it returns",
                display(self.url),
                reason,
                self.fallback,
            )
        self._retry_at = self._clock() + self.retry_s
        # Its other pooled connections died with the server too: start afresh when it is back.
        dead, self._client, self._scripts = self._client, None, {}
        if dead is not None:
            self.background(_close_quietly(dead))

    def client(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            # No retries inside redis-py: a failed step falls back at once, and the link
            # decides when to try again.
            self._client = Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            self._loop = loop
            self._scripts = {}
        return self._client

    def script(self, lua: str) -> AsyncScript:
        client = self.client()
        if lua not in self._scripts:
            self._scripts[lua] = client.register_script(lua)
        return self._scripts[lua]

    async def run(self, lua: str, keys: list[str], args: list[Any]) -> Any:
        return await self.call(lambda _: self.script(lua)(keys=keys, args=args))

    async def call(self, step: Callable[[Redis], Awaitable[T]]) -> T:
        from redis import RedisError

        if not self.usable():
            raise Unavailable
        try:
            value = await step(self.client())
        except (RedisError, OSError) as exc:
            self.mark_down(f"{type(exc).__name__}: {exc}")
            raise Unavailable from exc
        if self._retry_at is not None:
            self._retry_at = None
            log.info("moa: Redis at %s is back; limits are shared again", display(self.url))
        return value

    def background(
        self, step: Coroutine[Any, Any, Any], fallback: Callable[[], None] | None = None
    ) -> None:
        """Run a step without holding up the call that caused it (the limiter's `on_success`
        and `on_error` are synchronous); if Redis fails, run `fallback` instead."""

        async def run() -> None:
            try:
                await step
            except Unavailable:
                if fallback is not None:
                    fallback()

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._pending.discard)

    async def settled(self) -> None:
        """Wait for the background steps (of this loop) to reach Redis."""
        loop = asyncio.get_running_loop()
        while mine := [t for t in self._pending if t.get_loop() is loop]:
            await asyncio.gather(*mine, return_exceptions=True)

    async def aclose(self) -> None:
        await self.settled()
        # A step still running (a lease renewal) fails quietly from here on: no warning.
        self._closed = True
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None


async def _close_quietly(client: Redis) -> None:
    with suppress(Exception):  # its connections are dead already; this only tidies up
        await client.aclose()
