"""A response cache for reproducible calls, in one SQLite file shared by every run.

A call is cached only when asking again should give the same answer: temperature 0 or a fixed
seed. The key is the model (`provider:model`), the exact messages the model sees (references
included) and the sampling settings. So a batch rerun with a different aggregator replays the
seeded layer-1 proposals from here instead of paying for them again: the proposers' requests
are byte-for-byte the same, only the aggregator's differ.

A hit costs nothing: it is returned with zero usage and zero attempts (no upstream call was
made), which is how a trace tells a cached call from a live one.

The provider name stands for its endpoint: two recipes that declare `[providers.x]` with
different base URLs share entries; use `--cache` with separate files to keep them apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from moa.errors import ConfigError
from moa.types import ChatRequest, Completion, Sampling, StreamChunk, Tally, Usage

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    finish_reason TEXT,
    created REAL NOT NULL
)
"""


class _Connection:
    """One SQLite connection that lives on its own thread: the event loop hands it work and
    goes on, so a lock held by another process (a second batch on the same file) delays the
    calls that need the cache, never the whole loop."""

    def __init__(self, path: Path, lock_timeout_s: float, name: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"moa-cache-{name}")
        self._db: sqlite3.Connection | None = None

        def connect() -> None:
            self._db = sqlite3.connect(path, timeout=lock_timeout_s, isolation_level=None)

        self._thread.submit(connect).result()

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise sqlite3.ProgrammingError("the response cache is closed")
        return work(self._db)

    def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Do `work` on the connection's thread and wait for it (setup and teardown only)."""
        return self._thread.submit(self._call, work).result()

    async def arun(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._thread.submit(self._call, work))

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def close(self) -> None:
        if self._db is not None:
            self._thread.submit(self._close).result()
        self._thread.shutdown()

    async def aclose(self) -> None:
        if self._db is not None:
            await asyncio.wrap_future(self._thread.submit(self._close))
        self._thread.shutdown(wait=False)


class Cache(Protocol):
    """What the engine needs of a response cache: SQLite (`ResponseCache`) or Redis
    (`moa.policies.redis.cache.RedisCache`). Only reproducible calls are stored; a hit has zero
    usage."""

    hits: int
    misses: int

    async def get(self, provider: str, request: ChatRequest) -> Completion | None: ...

    async def put(self, provider: str, request: ChatRequest, completion: Completion) -> None: ...

    def record(
        self, provider: str, request: ChatRequest, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]: ...

    async def aclose(self) -> None: ...


def default_path() -> Path:
    """`MOA_CACHE`, else `$XDG_CACHE_HOME/moa/cache.sqlite`, else `~/.cache/moa/cache.sqlite`."""
    if env := os.environ.get("MOA_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moa" / "cache.sqlite"


def reproducible(sampling: Sampling) -> bool:
    return sampling.temperature == 0 or sampling.seed is not None


class ResponseCache:
    """Completions by (model, messages, sampling); safe to share between processes (WAL).

    Reads and writes go through two connections, each on its own thread: in WAL mode a
    lookup never waits for a writer, here or in another process.
    """

    def __init__(self, path: str | Path, *, lock_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Other processes may write too: wait for their locks (off the loop) rather than
            # fail.
            self._writer = _Connection(self.path, lock_timeout_s, "writer")
            self._writer.run(_create)
            self._reader = _Connection(self.path, lock_timeout_s, "reader")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the response cache {self.path}: {exc}") from None

    @staticmethod
    def key(provider: str, request: ChatRequest) -> str | None:
        """The cache key of a request, or None when its answer is not reproducible."""
        if not reproducible(request.sampling):
            return None
        if request.tools or request.top_logprobs is not None:
            # The cache keeps text only: tool calls and log probabilities would be lost.
            return None
        if any(m["role"] == "tool" or m.get("tool_calls") for m in request.messages):
            return None
        s = request.sampling
        payload: dict[str, Any] = {
            "model": f"{provider}:{request.model}",
            "messages": [[m["role"], m["content"]] for m in request.messages],
            "sampling": [s.temperature, s.max_tokens, s.seed, list(s.stop or ())],
        }
        if s.top_p is not None:  # only when set: keys stored before top_p existed stay valid
            payload["top_p"] = s.top_p
        if request.response_format is not None:
            f = request.response_format
            payload["format"] = [f.kind, f.name, f.strict, dict(f.schema)]
        blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    async def get(self, provider: str, request: ChatRequest) -> Completion | None:
        key = self.key(provider, request)
        if key is None:
            return None

        def select(db: sqlite3.Connection) -> Any:
            query = "SELECT text, finish_reason FROM responses WHERE key = ?"
            return db.execute(query, (key,)).fetchone()

        row = await self._reader.arun(select)
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Completion(text=row[0], usage=Usage(), finish_reason=row[1])

    async def put(self, provider: str, request: ChatRequest, completion: Completion) -> None:
        key = self.key(provider, request)
        if key is None or not completion.text:
            return
        row = (
            key,
            f"{provider}:{request.model}",
            completion.text,
            completion.usage.input_tokens,
            completion.usage.output_tokens,
            completion.finish_reason,
            time.time(),
        )

        def insert(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", row)

        await self._writer.arun(insert)

    def record(
        self, provider: str, request: ChatRequest, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        """Pass a stream through, storing its text once it has ended normally."""
        return record_stream(self, provider, request, chunks)

    async def count(self) -> int:
        def count(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

        return await self._reader.arun(count)

    def close(self) -> None:
        """Close from synchronous code; from a coroutine, `await aclose()`."""
        self._reader.close()
        self._writer.close()

    async def aclose(self) -> None:
        await self._reader.aclose()
        await self._writer.aclose()


def _create(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(_SCHEMA)


async def record_stream(
    cache: Cache, provider: str, request: ChatRequest, chunks: AsyncIterator[StreamChunk]
) -> AsyncIterator[StreamChunk]:
    """A stream passed through `cache`: its text is stored once it has ended normally (and only
    when the call is reproducible), as every cache does."""
    if ResponseCache.key(provider, request) is None:
        async for chunk in chunks:
            yield chunk
        return
    tally = Tally()
    async for chunk in chunks:
        tally.add(chunk)
        yield chunk
    await cache.put(provider, request, tally.completion())
