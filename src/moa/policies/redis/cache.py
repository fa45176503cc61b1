"""The response cache on Redis (`--cache redis://HOST:PORT/DB?ttl=SECONDS`): one cache for
every host, with the keys and the rule of the SQLite cache (`moa.policies.cache`: reproducible calls
only, a hit comes back with zero usage). Entries expire after `ttl` (default 30 days).

Keys: `moa:cache:<sha256 of the request>`, a JSON string each. While Redis is unreachable
the cache is off (every lookup misses, nothing is stored) and no call fails because of it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import suppress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from moa.errors import ConfigError
from moa.policies.cache import ResponseCache, record_stream
from moa.policies.redis.link import Link, Unavailable
from moa.types import ChatRequest, Completion, StreamChunk, Usage

DEFAULT_TTL_S = 30 * 24 * 3600
PREFIX = "moa:cache:"


def split_ttl(url: str) -> tuple[str, int]:
    """`redis://h/0?ttl=60` → (`redis://h/0`, 60); the rest of the query goes to redis-py."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    ttls = [v for k, v in query if k == "ttl"]
    try:
        ttl = int(ttls[-1]) if ttls else DEFAULT_TTL_S
    except ValueError:
        raise ConfigError(f"the cache URL's ttl must be whole seconds, got {ttls[-1]!r}") from None
    if ttl < 1:
        raise ConfigError(f"the cache URL's ttl must be at least 1 second, got {ttl}")
    rest = urlencode([(k, v) for k, v in query if k != "ttl"])
    return urlunsplit(parts._replace(query=rest)), ttl


class RedisCache:
    """Completions by (model, messages, sampling) in Redis; the async cache interface."""

    def __init__(self, url: str, *, link: Link | None = None) -> None:
        self.url, self.ttl_s = split_ttl(url)
        self.link = link or Link(self.url, fallback="the response cache is off")
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(provider: str, request: ChatRequest) -> str | None:
        digest = ResponseCache.key(provider, request)
        return None if digest is None else PREFIX + digest

    async def get(self, provider: str, request: ChatRequest) -> Completion | None:
        key = self.key(provider, request)
        if key is None:
            return None
        try:
            raw = await self.link.call(lambda r: r.get(key))
        except Unavailable:
            raw = None
        if raw is None:
            self.misses += 1
            return None
        entry = json.loads(raw)
        self.hits += 1
        return Completion(text=entry["text"], usage=Usage(), finish_reason=entry["finish_reason"])

    async def put(self, provider: str, request: ChatRequest, completion: Completion) -> None:
        key = self.key(provider, request)
        if key is None or not completion.text:
            return
        entry = {
            "model": f"{provider}:{request.model}",
            "text": completion.text,
            "input_tokens": completion.usage.input_tokens,
            "output_tokens": completion.usage.output_tokens,
            "finish_reason": completion.finish_reason,
        }
        blob = json.dumps(entry, ensure_ascii=False)
        with suppress(Unavailable):  # a lost write only costs a future call
            await self.link.call(lambda r: r.set(key, blob, ex=self.ttl_s))

    def record(
        self, provider: str, request: ChatRequest, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        """Pass a stream through, storing its text once it has ended normally."""
        return record_stream(self, provider, request, chunks)

    async def aclose(self) -> None:
        await self.link.aclose()

    def close(self) -> None:
        """Nothing to flush: every write went to Redis when it was made."""
