"""A proposal layer (`ProposalLayer`) and how it runs (`run_layer`): its proposers run
concurrently; the layer moves on once all have answered, or once its quorum is in and its
deadline has passed (stragglers cancelled).

Proposers stream when someone watches their words (`deltas`: the events API, a thinking block,
a staircase aggregator); otherwise each is asked for its whole answer at once: one JSON body
costs less CPU than chunks parsed one by one and passed through every policy (benchmark row 3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal

from moa.call.agent import Agent
from moa.call.caller import Caller
from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE
from moa.call.request import Call
from moa.errors import ConfigError, ProviderError
from moa.events import Event, ProposalDelta, ProposalFailed, ProposalFinished, ProposalStarted
from moa.trace import CallRecord
from moa.types import Message, Sampling, Tally


@dataclass(frozen=True, slots=True)
class Rounds:
    """Adaptive self-consistency (Aggarwal et al. 2023): the layer's calls drawn `first` at
    once, then `size` at a time, until the leading final result cannot be overtaken or holds
    `stop_share` of the answers drawn (moa.engine.adaptive)."""

    first: int
    size: int
    stop_share: float


class ProposalLayer:
    """Proposers that answer concurrently; from layer 2 on they see the previous answers.

    `min_proposals` (k of n, default n) and `deadline_s` set when the layer may move on: once
    all answers are in, or once k are in and the deadline has passed (with no deadline, as soon
    as k are in). Stragglers are then cancelled and recorded as such. An agent with `samples`
    fills that many slots. A `required` agent holds the layer open: neither the quorum nor the
    deadline lets the layer move on before it has answered or failed.

    `stop_when="agree"`: once `agree` (a share, default 0.6) of the layer's answers agree after
    normalization, the remaining layers are skipped. `filter="cluster"`: answers far from the
    majority are dropped before they are passed on. `adaptive=True`: its calls are drawn in
    rounds (`first_round`, then `round_size` at a time, concurrently within a round) until the
    leading final result cannot be overtaken or holds `stop_share` of the answers (`Rounds`).
    """

    def __init__(
        self,
        *agents: str | Agent,
        prompt: str = AGGREGATE_AND_SYNTHESIZE,
        min_proposals: int | None = None,
        deadline_s: float | None = None,
        stop_when: Literal["agree"] | None = None,
        agree: float | None = None,
        filter: Literal["cluster"] | None = None,
        adaptive: bool = False,
        first_round: int | None = None,
        round_size: int | None = None,
        stop_share: float | None = None,
    ) -> None:
        if not agents:
            raise ConfigError("a proposal layer needs at least one model")
        self.agents: tuple[Agent, ...] = tuple(
            sample for a in agents for sample in Agent.of(a).fan_out()
        )
        self.prompt = prompt
        if min_proposals is not None and not 1 <= min_proposals <= len(self.agents):
            raise ConfigError(
                f"min_proposals must be between 1 and {len(self.agents)} (the layer's size), "
                f"got {min_proposals}"
            )
        self.min_proposals = min_proposals or len(self.agents)
        self.required = frozenset(i for i, a in enumerate(self.agents) if a.required)
        if len(self.required) > self.min_proposals:
            raise ConfigError(
                f"{len(self.required)} members of the layer are required but min_proposals is "
                f"{self.min_proposals}: raise min_proposals to at least {len(self.required)}, "
                f"or mark fewer members required"
            )
        self.deadline_s = deadline_s
        self.stop_when, self.agree = _stopping(stop_when, agree)
        if filter not in (None, "cluster"):
            raise ConfigError(f'unknown filter {filter!r} — the one filter is "cluster"')
        self.filter = filter
        self.rounds = _rounds(self, adaptive, first_round, round_size, stop_share)

    def __repr__(self) -> str:
        return f"ProposalLayer({', '.join(a.model for a in self.agents)})"


def _rounds(
    layer: ProposalLayer,
    adaptive: bool,
    first_round: int | None,
    round_size: int | None,
    stop_share: float | None,
) -> Rounds | None:
    if not adaptive:
        if (first_round, round_size, stop_share) != (None, None, None):
            raise ConfigError("first_round, round_size and stop_share need adaptive=True")
        return None
    if layer.min_proposals != len(layer.agents) or layer.deadline_s is not None:
        raise ConfigError("adaptive draws every round whole: drop min_proposals / deadline_s")
    rounds = Rounds(first_round or 3, round_size or 2, 1.0 if stop_share is None else stop_share)
    if rounds.first < 1 or rounds.size < 1 or not 0 < rounds.stop_share <= 1:
        raise ConfigError(
            f"adaptive: first_round and round_size are 1 or more, stop_share in (0, 1]; got "
            f"{rounds.first}, {rounds.size}, {rounds.stop_share}"
        )
    return rounds


def _stopping(stop_when: str | None, agree: float | None) -> tuple[str | None, float]:
    if stop_when not in (None, "agree"):
        raise ConfigError(f'unknown stop_when {stop_when!r} — the one condition is "agree"')
    if agree is not None and stop_when is None:
        raise ConfigError('agree is the share for stop_when="agree"; set stop_when too')
    if agree is not None and not 0 < agree <= 1:
        raise ConfigError(f"agree is a share of the layer's answers in (0, 1], got {agree}")
    return stop_when, 0.6 if agree is None else agree


async def run_layer(
    caller: Caller,
    number: int,
    layer: ProposalLayer,
    messages: list[Message],
    references: list[str],
    overrides: Sampling,
    records: list[CallRecord],
    deltas: bool = True,
    draw: range | None = None,
    asked: int | None = None,
) -> AsyncGenerator[Event, None]:
    """Each proposer's start, its `ProposalDelta`s (with `deltas`), its finish or failure; its
    record goes in `records`. `draw`: only these calls (an adaptive round), all awaited;
    `asked`: how many answers `references` should have held (see `Call.asked`)."""
    loop = asyncio.get_running_loop()
    # Deltas and finished records of every proposer, in the order they happen.
    happened: asyncio.Queue[ProposalDelta | CallRecord] = asyncio.Queue()
    chosen = range(len(layer.agents)) if draw is None else draw
    slots = [CallRecord(number, i, layer.agents[i].model, "proposer") for i in chosen]
    records.extend(slots)
    quorum_size = layer.min_proposals if draw is None else len(slots)
    required = layer.required & set(chosen)
    calls = _calls(layer, chosen, messages, references, overrides, asked)
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
            quorum = answered >= quorum_size and required <= arrived
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
    for slot in (s for s in slots if s.index not in arrived):
        slot.status, slot.cut = "cancelled", "quorum" if layer.deadline_s is None else "deadline"
        slot.error = f"cancelled: layer {number} moved on with {answered} answers"
        yield ProposalFailed(slot)


def _calls(
    layer: ProposalLayer,
    chosen: range,
    messages: list[Message],
    references: list[str],
    overrides: Sampling,
    asked: int | None,
) -> list[Call]:
    return [
        Call(layer.agents[i], messages, references, layer.prompt, overrides, asked=asked)
        for i in chosen
    ]


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
    tally = Tally()
    try:
        if streamed:
            await _take_stream(caller, call, record, tally, happened)
        else:
            completion = await caller.complete(call, record)
            tally.parts.append(completion.text)
            record.take(completion)
    except ProviderError as error:
        record.fail(error)
    except asyncio.CancelledError:
        # A straggler keeps what it had said, for the trace.
        _settle(record, tally, started)
        raise
    except Exception as error:  # a provider bug must not take the whole run down
        record.status, record.error = "failed", f"{type(error).__name__}: {error}"
    _settle(record, tally, started)
    happened.put_nowait(record)


def _settle(record: CallRecord, tally: Tally, started: float) -> None:
    record.output = tally.text
    record.latency_s = time.perf_counter() - started


async def _take_stream(
    caller: Caller,
    call: Call,
    record: CallRecord,
    tally: Tally,
    happened: asyncio.Queue[ProposalDelta | CallRecord],
) -> None:
    async with aclosing(caller.stream(call, record)) as chunks:
        async for chunk in chunks:
            tally.add(chunk)
            record.take(tally)
            if chunk.text:
                happened.put_nowait(
                    ProposalDelta(record.layer, record.index, record.model, chunk.text)
                )
