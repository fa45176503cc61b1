"""The response cache on Redis (`--cache redis://…?ttl=S`): one cache for every host, the
keys and the rule of the SQLite cache, entries that expire, and no call failing for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from moa.errors import ConfigError
from moa.policies.cache import ResponseCache
from moa.policies.redis.cache import RedisCache, split_ttl
from moa.types import ChatRequest, Completion, Sampling, StreamChunk, Usage

SEEDED = ChatRequest("m", ({"role": "user", "content": "hi"},), Sampling(temperature=0.7, seed=1))
SAMPLED = ChatRequest("m", ({"role": "user", "content": "hi"},), Sampling(temperature=0.7))
ANSWER = Completion("hello", Usage(3, 1), "stop")


async def test_a_reproducible_answer_stored_by_one_host_is_a_free_hit_on_another(
    redis_server,
) -> None:
    writer, reader = RedisCache(redis_server.url), RedisCache(redis_server.url)
    await writer.put("fake", SEEDED, ANSWER)
    hit = await reader.get("fake", SEEDED)
    assert hit == Completion("hello", Usage(), "stop")  # zero usage: no upstream call
    assert (reader.hits, reader.misses) == (1, 0)
    assert await reader.get("other", SEEDED) is None  # the provider is part of the key
    await writer.aclose()
    await reader.aclose()


async def test_it_keys_entries_like_the_sqlite_cache_and_lets_them_expire(redis_server) -> None:
    import redis.asyncio as aioredis

    cache = RedisCache(redis_server.url + "?ttl=60")
    await cache.put("fake", SEEDED, ANSWER)
    key = "moa:cache:" + str(ResponseCache.key("fake", SEEDED))
    client = aioredis.Redis.from_url(redis_server.url)
    assert 0 < await client.ttl(key) <= 60
    await client.aclose()
    await cache.aclose()


async def test_unreproducible_calls_are_neither_stored_nor_looked_up(redis_server) -> None:
    cache = RedisCache(redis_server.url)
    await cache.put("fake", SAMPLED, ANSWER)
    assert await cache.get("fake", SAMPLED) is None
    assert (cache.hits, cache.misses) == (0, 0)
    await cache.aclose()


async def test_a_stream_is_stored_once_it_has_ended(redis_server) -> None:
    async def chunks() -> AsyncIterator[StreamChunk]:
        yield StreamChunk("hel")
        yield StreamChunk("lo", Usage(3, 1), "stop")

    cache = RedisCache(redis_server.url)
    passed = [c.text async for c in cache.record("fake", SEEDED, chunks())]
    assert passed == ["hel", "lo"]
    assert await cache.get("fake", SEEDED) == Completion("hello", Usage(), "stop")
    await cache.aclose()


async def test_without_redis_the_cache_misses_and_no_call_fails(redis_server) -> None:
    cache = RedisCache(redis_server.url)
    redis_server.stop()
    await cache.put("fake", SEEDED, ANSWER)  # no error: a lost write only costs a later call
    assert await cache.get("fake", SEEDED) is None
    assert cache.link.outages == 1
    await cache.aclose()


def test_the_ttl_is_taken_from_the_url() -> None:
    assert split_ttl("redis://h:1/2?ttl=60&ssl_cert_reqs=none") == (
        "redis://h:1/2?ssl_cert_reqs=none",
        60,
    )
    with pytest.raises(ConfigError, match="whole seconds"):
        split_ttl("redis://h/0?ttl=soon")


def test_a_batch_on_another_host_replays_seeded_calls_from_the_shared_cache(
    upstream, recipe_file, redis_server, tmp_path
) -> None:
    """Two `moa batch` runs with their own working files but one `--cache redis://…`: the
    second pays for nothing its seeded calls already cost the first."""
    from typer.testing import CliRunner

    from moa.cli.app import app

    seeded = (
        '[defaults]\ntemperature = 0\n[[layers]]\nmodels = ["fake:p"]\n'
        '[aggregator]\nmodel = "fake:agg"\n'
    )
    recipe = str(recipe_file(seeded))
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "prompt": "one"}\n{"id": 2, "prompt": "two"}\n')
    for host in ("a", "b"):
        out = tmp_path / f"{host}.jsonl"
        args = ["batch", str(source), "-o", str(out), "-r", recipe, "-q"]
        done = CliRunner().invoke(app, [*args, "--cache", redis_server.url + "?ttl=600"])
        assert done.exit_code == 0, done.stderr
    assert len(upstream.requests_for("p")) == 2 and len(upstream.requests_for("agg")) == 2
    assert "cache 4 hits / 0 misses" in done.stderr
