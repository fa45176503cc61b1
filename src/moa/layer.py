"""One proposal layer: its proposers run concurrently; the layer moves on once all have
answered, or once its quorum is in and its deadline has passed (stragglers cancelled).

Proposers stream when someone watches their words (`deltas`: the events API, a thinking block,
a staircase aggregator); otherwise each is asked for its whole answer at once: one JSON body
costs less CPU than chunks parsed one by one and passed through every policy (benchmark row 3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

from moa.agents import ProposalLayer
from moa.call.caller import Caller
from moa.call.request import Call
from moa.errors import ProviderError
from moa.events import Event, ProposalDelta, ProposalFailed, ProposalFinished, ProposalStarted
from moa.trace import CallRecord
from moa.types import Completion, Message, Sampling


async def run_layer(
    caller: Caller,
    number: int,
    layer: ProposalLayer,
    messages: list[Message],
    references: list[str],
    overrides: Sampling,
    records: list[CallRecord],
    deltas: bool = True,
) -> AsyncGenerator[Event, None]:
    """The layer's events: each proposer's start, then (with `deltas`) its `ProposalDelta`s as
    it speaks, then its finish or failure. Its call records are appended to `records`."""
    loop = asyncio.get_running_loop()
    # Deltas and finished records of every proposer, in the order they happen.
    happened: asyncio.Queue[ProposalDelta | CallRecord] = asyncio.Queue()
    slots = [
        CallRecord(layer=number, index=i, model=agent.model, role="proposer")
        for i, agent in enumerate(layer.agents)
    ]
    records.extend(slots)
    calls = [Call(agent, messages, references, layer.prompt, overrides) for agent in layer.agents]
    tasks = [
        asyncio.create_task(_propose(caller, call, slot, happened, streamed=deltas))
        for call, slot in zip(calls, slots, strict=True)
    ]
    for slot in slots:
        yield ProposalStarted(number, slot.index, slot.model)
    deadline = None if layer.deadline_s is None else loop.time() + layer.deadline_s
    arrived: set[int] = set()
    answered = 0
    try:
        while len(arrived) < len(tasks):
            quorum = answered >= layer.min_proposals
            if quorum and happened.empty() and (deadline is None or loop.time() >= deadline):
                break
            if quorum and deadline is not None:
                try:
                    async with asyncio.timeout(deadline - loop.time()):
                        item = await happened.get()
                except TimeoutError:
                    continue
            else:  # no clock to watch (most waits: one per streamed chunk)
                item = await happened.get()
            if isinstance(item, ProposalDelta):
                yield item
                continue
            arrived.add(item.index)
            answered += item.ok
            yield ProposalFinished(item) if item.ok else ProposalFailed(item)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for slot in slots:
        if slot.index not in arrived:
            slot.status = "cancelled"
            slot.error = f"cancelled: layer {number} moved on with {answered} answers"
            yield ProposalFailed(slot)


async def _propose(
    caller: Caller,
    call: Call,
    record: CallRecord,
    happened: asyncio.Queue[ProposalDelta | CallRecord],
    *,
    streamed: bool,
) -> None:
    """One proposer's answer into `record`, then `record` into `happened` (`streamed`: each
    piece too, as it arrives)."""
    started = time.perf_counter()
    parts: list[str] = []
    try:
        if streamed:
            await _take_stream(caller, call, record, parts, happened)
        else:
            _take_whole(record, parts, await caller.complete(call, record))
    except ProviderError as error:
        record.fail(error)
    except asyncio.CancelledError:
        # A straggler keeps what it had said, for the trace.
        record.output = "".join(parts)
        record.latency_s = time.perf_counter() - started
        raise
    except Exception as error:  # a provider bug must not take the whole run down
        record.status, record.error = "failed", f"{type(error).__name__}: {error}"
    record.output = "".join(parts)
    record.latency_s = time.perf_counter() - started
    happened.put_nowait(record)


def _take_whole(record: CallRecord, parts: list[str], completion: Completion) -> None:
    parts.append(completion.text)
    record.attempts = completion.attempts
    record.usage = completion.usage
    record.finish_reason = completion.finish_reason


async def _take_stream(
    caller: Caller,
    call: Call,
    record: CallRecord,
    parts: list[str],
    happened: asyncio.Queue[ProposalDelta | CallRecord],
) -> None:
    async with aclosing(caller.stream(call, record)) as chunks:
        async for chunk in chunks:
            if chunk.attempts is not None:
                record.attempts = chunk.attempts
            if chunk.text:
                parts.append(chunk.text)
                happened.put_nowait(
                    ProposalDelta(record.layer, record.index, record.model, chunk.text)
                )
            record.usage = chunk.usage or record.usage
            record.finish_reason = chunk.finish_reason or record.finish_reason
