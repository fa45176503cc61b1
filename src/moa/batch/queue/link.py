"""The work queue's connection to Redis and its key names (see moa.batch.queue.work).

Unlike the shared limits (moa.policies.redis.link) the queue has no per-process fallback: a worker
without its Redis cannot take or record work, so a lost Redis stops it with one line, and the
prompts it held return to the other workers after the visibility timeout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from moa.errors import ConfigError, MissingExtraError, RunError
from moa.policies.redis.link import display

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

GROUP = "moa"
DEFAULT_NAME = "default"


class QueueLostError(RunError):
    """Redis went away under a worker; what it held returns to the others."""


def split_name(url: str) -> tuple[str, str]:
    """`redis://h/0?name=evals` → (`redis://h/0`, `evals`); the rest of the query goes to
    redis-py."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"--queue takes a redis:// URL (redis://HOST:PORT/DB), got {url!r}")
    query = parse_qsl(parts.query)
    names = [v for k, v in query if k == "name"]
    name = names[-1] if names else DEFAULT_NAME
    if not name or any(c in name for c in "{}: "):
        raise ConfigError(f"the queue name must be a plain word, got {name!r}")
    rest = urlencode([(k, v) for k, v in query if k != "name"])
    return urlunsplit(parts._replace(query=rest)), name


def keys(name: str) -> dict[str, str]:
    tag = "{moa:queue:" + name + "}"
    parts = ("meta", "stream", "todo", "results", "failures", "workers")
    return {part: f"{tag}:{part}" for part in parts}


class QueueConnection:
    def __init__(self, url: str, *, block_ms: int = 1000) -> None:
        self.redis_url, self.name = split_name(url)
        self.where = f"{display(self.redis_url)} (queue {self.name!r})"
        self.block_ms = block_ms
        self.keys = keys(self.name)
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    # -- connection --------------------------------------------------------------------------

    def client(self) -> Redis:
        if self._client is None:
            try:
                from redis.asyncio import Redis
            except ModuleNotFoundError:
                raise MissingExtraError("the work queue (--queue)", "redis") from None
            # A blocked XREADGROUP holds its connection for block_ms: the timeout is longer.
            self._client = Redis.from_url(
                self.redis_url,
                decode_responses=True,
                socket_connect_timeout=5,
                socket_timeout=self.block_ms / 1000 + 10,
            )
        return self._client

    async def _do(self, step: Any) -> Any:
        from redis import RedisError

        try:
            return await step
        except (RedisError, OSError) as exc:
            raise QueueLostError(
                f"lost the queue at {self.where} ({type(exc).__name__}: {exc}); the prompts "
                f"this worker held go back to the others after the visibility timeout — "
                f"start it again once Redis answers"
            ) from None

    async def _run(self, lua: str, keys: list[str], args: Sequence[Any]) -> Any:
        client = self.client()
        if lua not in self._scripts:
            self._scripts[lua] = client.register_script(lua)
        return await self._do(self._scripts[lua](keys=keys, args=list(args)))

    async def ping(self) -> None:
        from redis import RedisError

        try:
            await self.client().ping()
        except (RedisError, OSError) as exc:
            raise ConfigError(
                f"cannot reach the queue's Redis at {display(self.redis_url)} "
                f"({type(exc).__name__}: {exc}); start it or fix --queue"
            ) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
