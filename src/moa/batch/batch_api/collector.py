"""The barrier: calls of Batch-API providers wait here until every running prompt has parked.

A prompt is parked when at least one of its calls waits here and none of its real-time calls
is in flight: it cannot go on before a job answers. When every prompt still running is parked
(and the event loop has had a few turns with nothing new arriving, for calls whose tasks were
just created), the parked calls are one round of jobs: a layer's, or a strategy's further
calls, or the aggregator's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from moa.batch.batch_api.state import Results, custom_id
from moa.providers.base import BatchRow
from moa.trace import CallRecord
from moa.types import ChatRequest

# The prompt (its output id, as JSON text) a task works for: set by each prompt's task and
# inherited by the tasks its run creates (the layer's proposers).
CURRENT: ContextVar[str] = ContextVar("moa_batch_prompt")
# Loop turns with nothing new before a round is sent: a layer's calls are created as tasks
# together and each reaches its request in a turn or two (routes are resolved beforehand).
SETTLE_TURNS = 20


@dataclass(slots=True)
class Waiter:
    """One parked call: its request as a batch line, and the future its answer sets."""

    cid: str
    item: str
    provider: str
    model: str  # `provider:model`
    request: ChatRequest
    line: bytes
    layer: str  # "layer 1", "layer 3 (aggregator)": how progress and costs are grouped
    worst_usd: float | None  # the most it may cost at the batch price (None: unpriced)
    future: asyncio.Future[BatchRow] = field(repr=False)
    record: CallRecord | None = None


class Collector:
    def __init__(self, results: Results) -> None:
        self.results = results
        self.waiters: dict[str, Waiter] = {}
        self._waiting: Counter[str] = Counter()
        self._realtime: Counter[str] = Counter()
        self._active: set[str] = set()
        self._seen: Counter[tuple[str, str]] = Counter()
        self._version = 0
        self._changed = asyncio.Event()
        self.notes: dict[str, list[str]] = {}  # prompt → what happened to its calls
        self.jobs_of: dict[str, set[str]] = {}  # prompt → the jobs that answered it
        self.spent_usd = 0.0  # answered calls at the batch price, this invocation
        self.layer_costs: dict[str, float] = {}
        self.unpriced = 0

    def spend(self, layer: str, cost: float | None) -> None:
        if cost is None:
            self.unpriced += 1
            return
        self.spent_usd += cost
        self.layer_costs[layer] = self.layer_costs.get(layer, 0.0) + cost

    def note(self, item: str, record: CallRecord | None, note: str) -> None:
        self.notes.setdefault(item, []).append(note)
        if record is not None:
            record.notes.append(note)

    def start(self, item: str) -> None:
        self._active.add(item)
        self._bump()

    def finished(self, item: str) -> None:
        self._active.discard(item)
        self._bump()

    def custom_id(self, item: str, provider: str, body: object) -> str:
        key = custom_id(item, provider, body, 0)
        self._seen[(item, key)] += 1
        n = self._seen[(item, key)]
        return key if n == 1 else custom_id(item, provider, body, n - 1)

    async def ask(self, waiter: Waiter) -> BatchRow:
        """The row that answers the call: at once when an earlier run read it, else once
        its job (this round's, or a resumed one's) is in."""
        known = self.results.get(waiter.cid)
        if known is not None:
            return known
        self.waiters[waiter.cid] = waiter
        self._waiting[waiter.item] += 1
        self._bump()
        try:
            return await waiter.future
        finally:
            del self.waiters[waiter.cid]
            self._waiting[waiter.item] -= 1
            self._bump()

    @contextmanager
    def realtime(self, item: str | None) -> Iterator[None]:
        """A real-time call of `item` in flight: its prompt is not parked meanwhile."""
        if item is None:
            yield
            return
        self._realtime[item] += 1
        self._bump()
        try:
            yield
        finally:
            self._realtime[item] -= 1
            self._bump()

    def answer(self, cid: str, row: BatchRow, job: str) -> None:
        waiter = self.waiters.get(cid)
        if waiter is not None and not waiter.future.done():
            self.jobs_of.setdefault(waiter.item, set()).add(job)
            waiter.future.set_result(row)

    async def parked(self) -> bool:
        """Wait until every running prompt is parked: True, and the waiters are a round;
        False once no prompt is running."""
        while True:
            if not self._active:
                return False
            if self._all_parked():
                version = self._version
                for _ in range(SETTLE_TURNS):
                    await asyncio.sleep(0)
                    if self._version != version:
                        break
                else:
                    return True
                continue
            self._changed.clear()
            await self._changed.wait()

    def _all_parked(self) -> bool:
        return all(self._waiting[i] > 0 and self._realtime[i] == 0 for i in self._active)

    def _bump(self) -> None:
        self._version += 1
        self._changed.set()
