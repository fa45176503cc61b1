"""The response cache: reproducible calls are answered once, then from SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from moa import MoA, Registry, RetryPolicy
from moa.call.agent import Agent
from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.policies.cache import ResponseCache, default_path
from moa.testing import FakeUpstream, Reply
from moa.types import ChatRequest, Message, Sampling


def seeded_moa(registry: Registry, cache: ResponseCache | None, aggregator: str = "agg") -> MoA:
    return MoA(
        ProposalLayer(
            Agent("fake:a", Sampling(temperature=0.7, seed=1)),
            Agent("fake:b", Sampling(temperature=0.0)),
        ),
        Aggregator(Agent(f"fake:{aggregator}", Sampling(temperature=0.0))),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
        cache=cache,
    )


async def test_a_repeated_run_is_answered_from_the_cache(
    upstream: FakeUpstream, registry: Registry, tmp_path: Path
) -> None:
    upstream.script("agg", Reply("final answer"))
    cache = ResponseCache(tmp_path / "cache.sqlite")
    first = await seeded_moa(registry, cache).arun("q")
    second = await seeded_moa(registry, cache).arun("q")
    assert second.text == first.text == "final answer"
    for model in ("a", "b", "agg"):
        assert len(upstream.requests_for(model)) == 1, model  # the upstream saw no repeat
    assert [c.attempts for c in second.calls] == [0, 0, 0]  # 0 attempts: served from cache
    assert second.usage.total_tokens == 0 and first.usage.total_tokens > 0
    assert (cache.hits, cache.misses) == (3, 3)


async def test_another_aggregator_reuses_the_layer_1_proposals(
    upstream: FakeUpstream, registry: Registry, tmp_path: Path
) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    await seeded_moa(registry, cache, aggregator="agg").arun("q")
    result = await seeded_moa(registry, cache, aggregator="agg2").arun("q")
    assert len(upstream.requests_for("a")) == 1 and len(upstream.requests_for("b")) == 1
    assert len(upstream.requests_for("agg2")) == 1
    assert result.text == "answer from agg2"
    refs = upstream.requests_for("agg2")[0]["messages"][0]["content"]
    assert "answer from a" in refs and "answer from b" in refs


async def test_calls_that_are_not_reproducible_are_never_cached(
    upstream: FakeUpstream, registry: Registry, tmp_path: Path
) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    mixture = MoA(
        ProposalLayer("fake:a", Agent("fake:b", Sampling(temperature=0.9))),
        Aggregator("fake:agg"),
        registry=registry,
        cache=cache,
    )
    await mixture.arun("q")
    await mixture.arun("q")
    assert [len(upstream.requests_for(m)) for m in ("a", "b", "agg")] == [2, 2, 2]
    assert await cache.count() == 0


async def test_the_key_covers_messages_and_sampling_and_survives_reopening(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.sqlite"
    request = ChatRequest("m", (Message(role="user", content="hi"),), Sampling(seed=3))
    key = ResponseCache.key("fake", request)
    assert key is not None
    other_seed = ChatRequest("m", request.messages, Sampling(seed=4))
    other_text = ChatRequest("m", (Message(role="user", content="hi!"),), Sampling(seed=3))
    other_model = ChatRequest("n", request.messages, Sampling(seed=3))
    assert (
        len({key, *(ResponseCache.key("fake", r) for r in (other_seed, other_text, other_model))})
        == 4
    )
    from moa.types import Completion

    cache = ResponseCache(path)
    await cache.put("fake", request, Completion("stored"))
    await cache.aclose()
    reopened = ResponseCache(path)
    hit = await reopened.get("fake", request)
    assert hit is not None and hit.text == "stored"
    assert await reopened.get("fake", other_seed) is None
    await reopened.aclose()


async def test_a_cache_file_locked_by_another_process_does_not_stall_the_event_loop(
    tmp_path: Path,
) -> None:
    """Another batch holds the file's write lock: this process's lookups still answer, its
    store waits for the lock, and the rest of the event loop runs on meanwhile."""
    from moa.types import Completion

    path = tmp_path / "cache.sqlite"
    stored = ChatRequest("m", (Message(role="user", content="stored"),), Sampling(seed=1))
    new = ChatRequest("m", (Message(role="user", content="new"),), Sampling(seed=1))
    cache = ResponseCache(path, lock_timeout_s=60)
    await cache.put("fake", stored, Completion("from before"))
    other_process = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other_process.execute("BEGIN IMMEDIATE")  # holds the write lock until it commits
    try:
        store = asyncio.create_task(cache.put("fake", new, Completion("fresh")))
        ticks = 0
        while ticks < 100:  # other work of the loop goes on while the store waits
            await asyncio.sleep(0)
            ticks += 1
            assert not store.done()
        hit = await cache.get("fake", stored)  # a lookup does not queue behind the store
        assert hit is not None and hit.text == "from before"
        assert not store.done()
    finally:
        other_process.execute("COMMIT")
        other_process.close()
    await store
    fresh = await cache.get("fake", new)
    assert fresh is not None and fresh.text == "fresh"
    await cache.aclose()


def test_default_path_follows_moa_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOA_CACHE", str(tmp_path / "x.sqlite"))
    assert default_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("MOA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_path() == tmp_path / "moa" / "cache.sqlite"
