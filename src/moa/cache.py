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

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from moa.errors import ConfigError
from moa.types import ChatRequest, Completion, Sampling, StreamChunk, Usage

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


def default_path() -> Path:
    """`MOA_CACHE`, else `$XDG_CACHE_HOME/moa/cache.sqlite`, else `~/.cache/moa/cache.sqlite`."""
    if env := os.environ.get("MOA_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "moa" / "cache.sqlite"


def reproducible(sampling: Sampling) -> bool:
    return sampling.temperature == 0 or sampling.seed is not None


class ResponseCache:
    """Completions by (model, messages, sampling); safe to share between processes (WAL)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection used from the event loop's thread; other processes may write too,
            # so wait for their locks rather than fail.
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the response cache {self.path}: {exc}") from None

    @staticmethod
    def key(provider: str, request: ChatRequest) -> str | None:
        """The cache key of a request, or None when its answer is not reproducible."""
        if not reproducible(request.sampling):
            return None
        s = request.sampling
        payload: dict[str, Any] = {
            "model": f"{provider}:{request.model}",
            "messages": [[m["role"], m["content"]] for m in request.messages],
            "sampling": [s.temperature, s.max_tokens, s.seed, list(s.stop or ())],
        }
        if request.response_format is not None:
            payload["schema"] = dict(request.response_format.schema)
        blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    async def get(self, provider: str, request: ChatRequest) -> Completion | None:
        key = self.key(provider, request)
        if key is None:
            return None
        row = self._db.execute(
            "SELECT text, finish_reason FROM responses WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return Completion(text=row[0], usage=Usage(), finish_reason=row[1])

    async def put(self, provider: str, request: ChatRequest, completion: Completion) -> None:
        key = self.key(provider, request)
        if key is None or not completion.text:
            return
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                f"{provider}:{request.model}",
                completion.text,
                completion.usage.input_tokens,
                completion.usage.output_tokens,
                completion.finish_reason,
                time.time(),
            ),
        )

    async def record(
        self, provider: str, request: ChatRequest, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        """Pass a stream through, storing its text once it has ended normally."""
        if self.key(provider, request) is None:
            async for chunk in chunks:
                yield chunk
            return
        parts: list[str] = []
        usage, finish = Usage(), None
        async for chunk in chunks:
            parts.append(chunk.text)
            usage = chunk.usage or usage
            finish = chunk.finish_reason or finish
            yield chunk
        await self.put(provider, request, Completion("".join(parts), usage, finish))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()
