"""Staircase streaming (arXiv 2510.05059): the aggregator starts on the first chunks of the last
layer's proposals, and is called again, continuing its own answer, each time every proposer
has sent a further chunk.

    proposers ▁▂▃▄▅▆▇█
    aggregator  ▁▁▂▂▃▃▄▄▅▅▆▆▇▇██   (each step: longer references + the answer so far)

Each step re-sends the whole prompt with the answer shown so far as a final assistant message
to continue; a step is stopped when the next one is ready, so what the user has seen is never
rewritten. The answer ends when the aggregator stops on its own or when the step that saw the
complete proposals ends. A proposer that fails drops out; the others carry on. A step that
ends on its own while a `required` proposer is still running does not end the answer: the
next step continues it once that proposal is in (or has failed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from moa.call.request import Call
from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.engine.staircase_rules import Spacing, spacing
from moa.errors import AggregatorFailedError, LayerFailedError, ProviderError
from moa.events import (
    AggregatorStarted,
    Event,
    ProposalDelta,
    ProposalFailed,
    ProposalFinished,
    Token,
)
from moa.strategies import Stage
from moa.strategies.base import fall_back
from moa.tokens import messages_tokens
from moa.trace import AggregatorStep, CallRecord, Choice
from moa.types import Sampling, StreamChunk, Usage


@dataclass(slots=True)
class Partials:
    """What each proposer of the last layer has streamed so far, and whether it is done."""

    pieces: list[list[str]]
    state: list[str]  # "running", "done" or "failed"
    # Each proposer's max_tokens: one that has streamed as many chunks is about to end.
    ceilings: list[int | None]
    required: frozenset[int] = frozenset()  # proposers the answer may not end without
    seen: bool = False  # any event yet

    @classmethod
    def of(cls, ceilings: list[int | None], required: frozenset[int] = frozenset()) -> Partials:
        size = len(ceilings)
        return cls([[] for _ in range(size)], ["running"] * size, ceilings, required)

    @property
    def awaiting_required(self) -> bool:
        return any(self.state[i] == "running" for i in self.required)

    def take(self, event: Event) -> None:
        if isinstance(event, ProposalDelta):
            self.pieces[event.index].append(event.text)
        elif isinstance(event, ProposalFinished):
            self.state[event.record.index] = "done"
        elif isinstance(event, ProposalFailed):
            self.state[event.record.index] = "failed"

    @property
    def live(self) -> list[int]:
        return [i for i, s in enumerate(self.state) if s != "failed"]

    @property
    def complete(self) -> bool:
        return "running" not in self.state

    def ready(self, chunks: int) -> bool:
        """Every live proposer has streamed `chunks` pieces, or finished."""
        live = self.live
        return bool(live) and all(
            self.state[i] == "done" or len(self.pieces[i]) >= chunks for i in live
        )

    def ending(self) -> bool:
        """Every proposer still running has streamed its max_tokens (a chunk is at least one
        token): all that is left is their ends, so a step now would be replaced at once."""
        running = [i for i in self.live if self.state[i] == "running"]
        return bool(running) and all(
            (ceiling := self.ceilings[i]) is not None and len(self.pieces[i]) >= ceiling
            for i in running
        )

    def shortest_running(self) -> int:
        return min(
            (len(self.pieces[i]) for i in self.live if self.state[i] == "running"), default=0
        )

    def references(self) -> list[str]:
        return [text for i in self.live if (text := "".join(self.pieces[i]))]

    @property
    def asked(self) -> int | None:
        """The layer's size once a proposer has failed (the prompt's count), else None."""
        return len(self.state) if "failed" in self.state else None


@dataclass(slots=True)
class _Step:
    number: int
    task: asyncio.Task[None]
    record: AggregatorStep


@dataclass(frozen=True, slots=True)
class _Chunk:
    step: int
    chunk: StreamChunk


@dataclass(frozen=True, slots=True)
class _End:
    step: int
    error: Exception | None = None


_Item = Event | _Chunk | _End | None  # None: the layer has no more events


@dataclass(slots=True)
class Staircase:
    stage: Stage
    aggregator: Aggregator  # the stage's, with its staircase settings
    spacing: Spacing  # the first candidate's; each step is spaced for the candidate it calls
    partials: Partials
    inbox: asyncio.Queue[_Item] = field(default_factory=asyncio.Queue)
    written: list[str] = field(default_factory=list)
    records: list[CallRecord] = field(default_factory=list)
    step: _Step | None = None
    threshold: int = 0
    started: float = field(default_factory=time.perf_counter)
    held: bool = False  # a step ended before a required proposal did: the next one continues

    async def run(self) -> AsyncIterator[Event]:
        self.threshold = self.spacing.chunk_tokens
        while True:
            item = await self.inbox.get()
            if isinstance(item, _Chunk | _End):
                if self.step is None or item.step != self.step.number:
                    continue  # from a step already replaced: the user never saw it
                if isinstance(item, _Chunk):
                    self.records[-1].take(item.chunk)  # the shown step's finish and attempts
                    if item.chunk.text:
                        self.written.append(item.chunk.text)
                        self.step.record.tokens_added += 1
                        yield Token(item.chunk.text)
                    continue
                if await self._ended(item):
                    return
            elif item is not None:
                self.partials.take(item)
                yield item
            if not self.partials.live:
                raise LayerFailedError(
                    self.stage.number - 1, self.stage.proposals, self.stage.result
                )
            if self.step is None and not self.records:
                if self.partials.ready(self.threshold):
                    yield self._candidate(0)
                    self._start()
            elif self.held:
                if not self.partials.awaiting_required:
                    self.held = False
                    self._start()
            elif self._next_step_ready():
                await self._stop()
                self._start()

    def _next_step_ready(self) -> bool:
        """The running step saw partial proposals, and each has sent a further chunk since."""
        if self.step is None or self.step.record.final or self._room() == 0:
            return False  # (no room left: the running step ends at the answer's max_tokens)
        if self.partials.complete:
            return True
        return self.partials.ready(self.threshold) and not self.partials.ending()

    def _room(self) -> int | None:
        """Answer chunks still allowed by the aggregator's max_tokens (None: no limit)."""
        agent = self.stage.aggregator.candidates[self.records[-1].index]
        limit = agent.sampling_under(self.stage.overrides, self.stage.caller.defaults)
        if limit.max_tokens is None:
            return None
        return max(0, limit.max_tokens - len(self.written))

    def _candidate(self, index: int) -> AggregatorStarted:
        record = self.stage.record(index, "aggregator")
        self.records.append(record)
        self.stage.result.calls.append(record)
        self.started = time.perf_counter()
        return AggregatorStarted(self.stage.number, record.model)

    def _start(self) -> None:
        record = self.records[-1]
        references = self.partials.references()
        prefix = "".join(self.written)
        overrides = self.stage.overrides
        room = self._room()
        if room is not None:  # the whole answer keeps to max_tokens, not each step
            overrides = replace(overrides, max_tokens=max(1, room))
        agent = self.stage.aggregator.candidates[record.index]
        call = Call(
            agent,
            self.stage.messages,
            references,
            self.stage.aggregator.prompt,
            overrides,
            continuation=prefix,
            asked=self.partials.asked,
        )
        step = AggregatorStep(len(prefix), sum(map(len, references)), final=self.partials.complete)
        number = self.step.number + 1 if self.step else 1
        task = asyncio.create_task(_drive(self.stage, call, number, step, record, self.inbox))
        self.step = _Step(number, task, step)
        self.spacing = spacing(self.aggregator, agent.model, self.stage.caller.registry)
        self.threshold = self.spacing.next_threshold(self.partials.shortest_running())

    async def _stop(self) -> None:
        if self.step is not None:
            self.step.task.cancel()
            await asyncio.gather(self.step.task, return_exceptions=True)

    async def _ended(self, end: _End) -> bool:
        """A step ended by itself. True when the answer is complete; raises when it failed."""
        record = self.records[-1]
        record.usage = _summed(record.steps)
        record.latency_s = time.perf_counter() - self.started
        record.output = "".join(self.written)
        if end.error is not None and not isinstance(end.error, ProviderError):
            raise end.error  # a configuration error or a bug: not the upstream's fault
        if end.error is None and self.partials.awaiting_required:
            self.held = True
            return False
        if end.error is None:
            self.stage.answered(
                Choice(record.output, finish_reason=record.finish_reason, model=record.model)
            )
            return True
        next_may_try = fall_back(record, end.error, shown=bool(self.written))
        if next_may_try and record.index + 1 < len(self.stage.aggregator.candidates):
            self.inbox.put_nowait(self._candidate(record.index + 1))  # yielded, then started
            self.step = None
            self._start()
            return False
        raise AggregatorFailedError([r for r in self.records if not r.ok], self.stage.result)

    async def close(self) -> None:
        await self._stop()
        for record in self.stage.proposals:
            if self.partials.state[record.index] == "running":
                record.status = "cancelled"
                record.output = "".join(self.partials.pieces[record.index])
                record.cut = "staircase"
                record.error = "cancelled: the staircase ended before this proposal did"


async def _drive(
    stage: Stage,
    call: Call,
    number: int,
    step: AggregatorStep,
    record: CallRecord,
    inbox: asyncio.Queue[_Item],
) -> None:
    """One step: stream the aggregator's continuation into the inbox."""
    try:
        _, built = await stage.caller.build(call)
        # Recorded once it is about to be sent: a step replaced before then cost nothing.
        record.steps.append(step)
        step.input_tokens = messages_tokens(built.request.messages)
        async with aclosing(stage.caller.stream(call, record)) as chunks:
            async for chunk in chunks:
                if chunk.usage is not None and not chunk.usage.estimated:
                    step.input_tokens = chunk.usage.input_tokens
                inbox.put_nowait(_Chunk(number, chunk))
    except Exception as error:  # handed to the staircase, which decides
        inbox.put_nowait(_End(number, error))
        return
    inbox.put_nowait(_End(number))


def _summed(steps: list[AggregatorStep]) -> Usage:
    # Stopped steps never get the upstream's usage: their prompts are estimated (estimate_tokens).
    return Usage(
        sum(s.input_tokens for s in steps), sum(s.tokens_added for s in steps), estimated=True
    )


def ceilings(layer: ProposalLayer, overrides: Sampling, defaults: Sampling) -> list[int | None]:
    """Each of the layer's proposers' max_tokens, as its call will be sent it."""
    return [a.sampling_under(overrides, defaults).max_tokens for a in layer.agents]


async def stream_staircase(
    stage: Stage,
    aggregator: Aggregator,
    layer: AsyncGenerator[Event, None],
    ceilings: list[int | None],
    required: frozenset[int] = frozenset(),
) -> AsyncIterator[Event]:
    """The last layer's events (`layer`, filling `stage.proposals`) and `aggregator`'s
    answer's tokens, as they happen; `ceilings`: each proposer's max_tokens; `required`: the
    proposers (by index) the answer may not end without."""
    first = spacing(aggregator, aggregator.agent.model, stage.caller.registry)
    staircase = Staircase(stage, aggregator, first, Partials.of(ceilings, required))

    async def pump() -> None:
        async with aclosing(layer):
            async for event in layer:
                if not staircase.partials.seen:  # the layer's records exist from its first event
                    staircase.partials.seen = True
                    stage.result.calls.extend(stage.proposals)
                staircase.inbox.put_nowait(event)
        staircase.inbox.put_nowait(None)

    pumping = asyncio.create_task(pump())
    try:
        async for event in staircase.run():
            yield event
    finally:
        pumping.cancel()
        await asyncio.gather(pumping, return_exceptions=True)
        await staircase.close()
