"""A queue worker: takes prompts from a `moa.batch.queue.work.WorkQueue`, answers them with a job
(as `moa batch` does, `items.answer_job`), and records each answer atomically with its ack.

Up to `concurrency` prompts at a time. A heartbeat every third of the visibility timeout
keeps the entries it holds from being claimed; entries that other workers took and left idle
past the timeout (their worker died) are claimed with XAUTOCLAIM. A prompt delivered more than
`max_deliveries` times (it kills every worker that takes it) is failed instead of tried again.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from moa.batch.items import Item, Job
from moa.batch.queue.work import Entry, WorkQueue
from moa.errors import RunError
from moa.types import NO_USAGE, Usage


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def item_from(entry: Entry) -> Item:
    body = json.loads(entry.item)
    return Item(body["id"], tuple(body["messages"]))


@dataclass(slots=True)
class WorkerStats:
    answered: int = 0  # answers kept
    second: int = 0  # answers dropped: another worker had answered the prompt first
    failed: int = 0
    claimed: int = 0  # prompts taken over from a worker that went quiet
    usage: Usage = NO_USAGE
    failures: list[tuple[Any, str]] = field(default_factory=list)


class Worker:
    def __init__(
        self,
        queue: WorkQueue,
        job: Job,
        *,
        visibility_s: float,
        concurrency: int = 4,
        max_deliveries: int = 5,
        consumer: str | None = None,
        on_answer: Callable[[], None] | None = None,
    ) -> None:
        self.queue = queue
        self.job = job
        self.visibility_s = visibility_s
        self.concurrency = concurrency
        self.max_deliveries = max_deliveries
        self.name = consumer or consumer_name()
        self.stats = WorkerStats()
        self.on_answer = on_answer
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        self._held: dict[str, asyncio.Task[None]] = {}

    async def run(self, done: Callable[[], Awaitable[bool]] | None = None) -> WorkerStats:
        """Work until `done()` says so when there is nothing to take (checked when idle;
        default: until the queue has no prompt left unanswered)."""
        await self.queue.renew(self.name, self.info, [])  # visible to `moa queue status` now
        heartbeat = asyncio.create_task(self._heartbeat())
        claim_every = max(0.05, self.visibility_s / 4)
        next_claim = 0.0
        try:
            while True:
                self._sweep(heartbeat)
                free = self.concurrency - len(self._held)
                if free <= 0:
                    tasks = [*self._held.values(), heartbeat]
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                entries: list[Entry] = []
                if time.monotonic() >= next_claim:
                    entries = await self.queue.reclaim(self.name, free, self._idle_ms())
                    self.stats.claimed += len(entries)
                    next_claim = time.monotonic() + claim_every
                if not entries:
                    wait = min(self.queue.block_ms, int(claim_every * 1000))
                    entries = await self.queue.take(self.name, free, wait)
                for entry in entries:
                    if entry.id in self._held:  # its own, claimed back after a late heartbeat
                        continue
                    self._held[entry.id] = asyncio.create_task(self._answer(entry))
                if not entries and not self._held and await (done or self._drained)():
                    break
        finally:
            heartbeat.cancel()
            for task in self._held.values():
                task.cancel()
            await asyncio.gather(heartbeat, *self._held.values(), return_exceptions=True)
        await self.queue.leave(self.name, {**self.info, "left": True})
        return self.stats

    async def _drained(self) -> bool:
        return await self.queue.outstanding() == 0

    def _idle_ms(self) -> int:
        return int(self.visibility_s * 1000)

    def _sweep(self, heartbeat: asyncio.Task[None]) -> None:
        """Forget the prompts done with. A worker stops on what is not a prompt's own failure
        (Redis lost, a key missing): what it holds goes back to the others after the
        visibility timeout."""
        for entry_id, task in list(self._held.items()):
            if task.done():
                del self._held[entry_id]
                if not task.cancelled() and (error := task.exception()):
                    raise error
        if heartbeat.done() and not heartbeat.cancelled() and (error := heartbeat.exception()):
            raise error

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.visibility_s / 3)
            await self.queue.renew(self.name, self.info, list(self._held))

    async def _answer(self, entry: Entry) -> None:
        if entry.deliveries > self.max_deliveries:
            message = (
                f"given up after {entry.deliveries - 1} deliveries: every worker that took it "
                f"stopped before answering it"
            )
            await self._failed(entry, message)
            return
        item = item_from(entry)
        try:
            record, usage = await self.job(item)
        except RunError as exc:
            await self._failed(entry, str(exc))
            return
        answer = {"record": {"id": item.id, **record}, "usage": _usage(usage)}
        if await self.queue.record(self.name, entry, json.dumps(answer, ensure_ascii=False)):
            self.stats.answered += 1
            self.stats.usage = self.stats.usage + usage
        else:
            self.stats.second += 1
        if self.on_answer is not None:
            self.on_answer()

    async def _failed(self, entry: Entry, message: str) -> None:
        await self.queue.fail(entry, message)
        self.stats.failed += 1
        self.stats.failures.append((json.loads(entry.key), message))


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "estimated": usage.estimated,
        "cost_usd": usage.cost_usd,
    }


def usage_of(answer: dict[str, Any]) -> Usage:
    u = answer.get("usage") or {}
    return Usage(
        int(u.get("input_tokens", 0)),
        int(u.get("output_tokens", 0)),
        bool(u.get("estimated", False)),
        u.get("cost_usd"),
    )
