"""One run of a MoA, step by step:

    checks ─▶ layer 1 ─▶ … ─▶ layer n ─▶ aggregator ─▶ Done
              (budget, then the calls; a layer whose answers agree may stop the run early,
               a cluster filter drops outliers before the next layer reads them)

The aggregator reads the last layer's whole answers, or — with staircase — runs that layer
itself and reads its answers as they stream. `MoA.stream()` starts a `Run` and yields its events.

A run that loses a member it asked for is degraded (`Result.degradation`); with
`on_degraded = "fail"` it ends with `DegradedRunError` as soon as the loss is known: after the
layer, before the aggregator's fallback, or at the end (a staircase that answered first).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from moa.call.agent import Agent
from moa.call.caller import Caller
from moa.call.request import check_sampling, check_tool_choice
from moa.engine.adaptive import run_rounds
from moa.engine.aggregator import Aggregator
from moa.engine.answering import answers, offer_tools, refuse_unsupported
from moa.engine.budget import Budget, bounded, layers_worst_case
from moa.engine.cluster import outliers
from moa.engine.invocation import Invocation, auto_worst_case, decide, refuse_without_tools
from moa.engine.layer import ProposalLayer, run_layer
from moa.engine.options import Prompt, RunOptions, as_messages
from moa.engine.spans import aggregate_span, layer_span
from moa.engine.staircase import ceilings, stream_staircase
from moa.engine.staircase_rules import refuse_for_staircase
from moa.errors import DegradedRunError, LayerFailedError
from moa.events import AggregatorStarted, Done, Event, ProposalFailed
from moa.pricing import PriceBook, price_result
from moa.strategies import Stage
from moa.strategies.agreement import agreement
from moa.strategies.base import answer_with
from moa.strategies.final import final_keys
from moa.trace import CallRecord, Result, asked_for
from moa.types import Answering, Message, Sampling


async def _preflight(
    caller: Caller,
    layers: tuple[ProposalLayer, ...],
    aggregator: Aggregator,
    options: RunOptions,
    invocation: Invocation,
) -> tuple[Answering, str | None]:
    """What the aggregator is offered of the client's asks (and the note of what was dropped),
    everything the run would refuse refused before any call."""
    await _refuse_asks(caller, layers, aggregator, options)
    answering, dropped = await offer_tools(caller, aggregator, options.answering)
    await refuse_unsupported(caller, aggregator, answering)
    if aggregator.staircase:
        refuse_for_staircase(answering)
    if invocation == "auto":
        await refuse_without_tools(caller, aggregator, answering.n)
    return answering, dropped


@dataclass
class Run:
    """The state of one run as it goes: the proposals the last layer passed on, the agreed
    answer of a layer that stopped the run early, and the trace (`result`)."""

    layers: tuple[ProposalLayer, ...]
    aggregator: Aggregator
    caller: Caller
    prices: PriceBook
    messages: list[Message]
    overrides: Sampling  # the run's settings for every call
    final: Sampling  # the aggregator's, over `overrides`
    answering: Answering  # the aggregator's tools, response format, logprobs, n
    budget: Budget | None
    result: Result
    started: float = field(default_factory=time.perf_counter)
    proposals: list[CallRecord] = field(default_factory=list)  # what the last layer passed on
    proposers: tuple[Agent, ...] = ()  # the last layer's agents
    agreed: CallRecord | None = None  # the agreed answer of a layer that stopped the run
    proposal_deltas: bool = True  # stream proposers, yielding their words (else whole answers)
    answer_deltas: bool = True  # stream the aggregator (else its whole answer, as one token)
    fail_degraded: bool = False  # on_degraded = "fail": a lost member ends the run
    invocation: Invocation = "always"  # "auto": the aggregator decides whether to convene

    def pattern(self, agent: Agent) -> str | None:  # its own answer_pattern, else the recipe's
        return agent.answer_pattern or self.aggregator.agent.answer_pattern

    @classmethod
    async def start(
        cls,
        layers: tuple[ProposalLayer, ...],
        aggregator: Aggregator,
        caller: Caller,
        prices: PriceBook,
        prompt: Prompt,
        options: RunOptions,
        max_cost_default: float | None = None,
        fail_degraded: bool = False,
        invocation: Invocation = "always",
    ) -> Run:
        """A run of a MoA's stages over `prompt`, its input checked and everything it would
        refuse refused before any call; `max_cost_default` is the MoA's own budget."""
        messages = as_messages(prompt)
        answering, dropped = await _preflight(caller, layers, aggregator, options, invocation)
        limit = options.max_cost_usd if options.max_cost_usd is not None else max_cost_default
        budget = None if limit is None else Budget(limit, prices, options.sampling)
        if budget is not None:
            bounded(aggregator.strategy)  # a strategy that cannot say what it spends: refused now
        return cls(
            layers=layers,
            aggregator=aggregator,
            caller=caller,
            prices=prices,
            messages=messages,
            overrides=options.sampling,
            final=options.final,
            answering=answering,
            budget=budget,
            result=Result(notes=[dropped] if dropped else []),
            proposal_deltas=options.proposal_deltas,
            answer_deltas=options.answer_deltas,
            fail_degraded=fail_degraded,
            invocation=invocation,
        )

    async def events(self) -> AsyncGenerator[Event, None]:
        """What happens, as it happens; the last event is `Done`."""
        if self.invocation == "auto":
            answer = _decide(self)
        else:
            async for event in self._convene():
                yield event
            answer = self._answer(_stage(self))
        answer = aggregate_span(self.aggregator, len(self.layers) + 1, self.result, answer)
        async with aclosing(answer) as answering:
            async for event in answering:
                # A staircase's proposer lost, or a fallback about to answer for the aggregator.
                refuse_degraded(self.result, self.prices, self.fail_degraded, event)
                yield event
        self.result.latency_s = time.perf_counter() - self.started
        refuse_degraded(self.result, self.prices, self.fail_degraded)
        yield Done(self.result)

    async def _convene(self) -> AsyncIterator[Event]:
        """The proposal layers (a staircase aggregator runs the last one itself)."""
        staircase = self.aggregator.staircase
        for number, layer in enumerate(self.layers[:-1] if staircase else self.layers, 1):
            async for event in self._layer(number, layer):
                yield event
            refuse_degraded(self.result, self.prices, self.fail_degraded)
            if self.agreed is not None:
                break

    def _propose(
        self, number: int, layer: ProposalLayer, records: list[CallRecord], *, deltas: bool
    ) -> AsyncGenerator[Event, None]:
        """Layer `number`'s calls over the proposals passed on so far (every layer's, the
        staircase's last one included), filling `records`."""
        references = [r.output for r in self.proposals]
        args = (self.caller, number, layer, self.messages, references, self.overrides)
        if layer.rounds is not None:
            events = run_rounds(self.result, self.pattern, *args, records, deltas)
        else:
            events = run_layer(*args, records, deltas, asked=asked_for(self.result, self.proposals))
        return layer_span(number, len(layer.agents), records, events)

    async def _layer(self, number: int, layer: ProposalLayer) -> AsyncIterator[Event]:
        """Proposal layer `number`: checked against the budget, run, then what it passes on
        (`proposals`) and whether its answers agree enough to stop the run (`agreed`)."""
        self.proposers = layer.agents
        if self.budget is not None:
            references = [r.output for r in self.proposals]
            await self.budget.check_layer(
                number, layer, self.caller, self.messages, references, self.result
            )
        records: list[CallRecord] = []
        async for event in self._propose(number, layer, records, deltas=self.proposal_deltas):
            yield event
        self.result.calls.extend(records)
        answered = [r for r in records if r.ok]
        if not answered:
            self.result.latency_s = time.perf_counter() - self.started
            raise LayerFailedError(number, records, price_result(self.result, self.prices))
        patterns = [self.pattern(layer.agents[r.index]) for r in answered]
        self.agreed = _agreed(
            number, layer, answered, patterns, self.result, len(self.layers), self.aggregator
        )
        self.proposals = _filtered(layer, answered, self.result)

    async def _answer(self, stage: Stage) -> AsyncGenerator[Event, None]:
        """The aggregator's events (with the staircase's last layer's); none when a layer agreed
        and the strategy answers with the agreed proposal (vote: the same one, at no cost)."""
        if self.aggregator.staircase and self.agreed is None:
            if self.budget is not None:  # the last layer and the aggregator, bounded together
                await self.budget.check_staircase(stage, self.aggregator, self.layers[-1])
            events = _staircase(self, stage)
        elif self.agreed is not None and self.aggregator.strategy.answers_agreement:
            why = f"stop_when agree with {self.aggregator.strategy.name}: no aggregator call"
            events = answer_with(stage, self.agreed, why)
        else:
            if self.budget is not None:
                await self.budget.check_aggregator(stage)
            events = answers(stage)
        try:
            async for event in events:
                yield event
        finally:
            price_result(stage.result, self.prices)  # also for AggregatorFailedError's result


async def _refuse_asks(
    caller: Caller, layers: tuple[ProposalLayer, ...], aggregator: Aggregator, options: RunOptions
) -> None:
    """What the run is asked that no upstream could honour, refused before any call: a
    `tool_choice` that is no choice, and a setting a model would be sent that its provider does
    not declare (`top_k`: the aggregator's, and the proposers' when the run sets it for every
    call)."""
    if options.answering.tools is not None:
        check_tool_choice(options.answering.tools)
    asked = [(agent, options.final) for agent in aggregator.candidates]
    if options.sampling.top_k is not None:
        asked += [(agent, options.sampling) for layer in layers for agent in layer.agents]
    for agent, sampling in asked:
        if sampling.top_k is not None:
            check_sampling(sampling, await caller.profile(agent), agent.model)


def _staircase(run: Run, stage: Stage) -> AsyncIterator[Event]:
    """The last layer runs under the aggregator, which reads its proposals as they stream."""
    last = run.layers[-1]
    stage.proposers, stage.proposals = last.agents, []
    layer_events = run._propose(stage.number - 1, last, stage.proposals, deltas=True)
    limits = ceilings(last, run.overrides, run.caller.defaults)
    return stream_staircase(stage, run.aggregator, layer_events, limits, last.required)


async def _decide(run: Run) -> AsyncGenerator[Event, None]:
    """`invocation = "auto"` (moa.engine.invocation): the aggregator is asked first, and
    convenes the layers only if it calls for them; a budget is checked against the path that
    spends most, before the first call."""
    stage = _stage(run)
    if run.budget is not None:
        every, _, references = await layers_worst_case(
            run.caller, run.layers, run.messages, run.overrides
        )
        asked = await auto_worst_case(
            run.caller,
            run.aggregator,
            run.messages,
            references,
            run.final,
            run.answering,
            run.prices,
        )
        what = "invocation auto: the aggregator's question, every layer and its answer"
        run.budget.check(what, [asked[0], *every, asked[1]], run.result)
    try:
        async for event in decide(stage, run._convene, lambda: run.proposals):
            yield event
    finally:
        price_result(run.result, run.prices)


def _stage(run: Run) -> Stage:
    """What the aggregator's stage reads of a run whose proposal layers are done."""
    return Stage(
        number=len(run.layers) + 1,
        messages=run.messages,
        proposals=run.proposals,  # a staircase replaces them with the last layer's
        aggregator=run.aggregator,
        caller=run.caller,
        overrides=run.final,
        result=run.result,
        proposers=run.proposers,
        answering=run.answering,
        whole=not run.answer_deltas,
    )


def refuse_degraded(
    result: Result, prices: PriceBook, fail: bool, event: Event | None = None
) -> None:
    """DegradedRunError, with the trace so far, once a member is lost under on_degraded =
    "fail" (`fail`); `event`: what the run was about to yield (a proposal lost, an aggregator
    candidate starting: the moments a loss shows)."""
    if event is not None and not isinstance(event, ProposalFailed | AggregatorStarted):
        return
    if not fail or not result.degraded:
        return
    if isinstance(event, AggregatorStarted):  # the fallback is recorded, but never called
        fallback = result.calls[-1]
        fallback.status, fallback.cut = "cancelled", "on_degraded"
        fallback.error = 'not called: on_degraded = "fail"'
    raise DegradedRunError(price_result(result, prices))


def _filtered(
    layer: ProposalLayer, proposals: list[CallRecord], result: Result
) -> list[CallRecord]:
    """The proposals the layer passes on: with `filter = "cluster"`, the outliers are dropped
    (kept in the trace, marked with why)."""
    if layer.filter != "cluster":
        return proposals
    far = outliers([p.output for p in proposals])
    for outlier in far:
        record = proposals[outlier.index]
        record.dropped = (
            f"cluster filter: similarity to the other answers {outlier.similarity:.2f}, "
            f"the layer's median {outlier.typical:.2f}"
        )
        result.notes.append(
            f"layer {record.layer}: dropped {record.model} #{record.index + 1} as an outlier"
        )
    dropped = {o.index for o in far}
    return [p for i, p in enumerate(proposals) if i not in dropped]


def _agreed(
    number: int,
    layer: ProposalLayer,
    proposals: list[CallRecord],
    patterns: list[str | None],
    result: Result,
    layers: int,
    aggregator: Aggregator,
) -> CallRecord | None:
    """The first of the agreeing answers when layer `number` (of `layers`) meets its
    `stop_when`; then the trace says what is skipped and why. Answers agree on their final
    results (moa.strategies.final), as `vote` compares them."""
    if layer.stop_when != "agree":
        return None
    strategy = aggregator.strategy
    found = agreement(final_keys([p.output for p in proposals], patterns)[0])
    if found.winner is None or found.share < layer.agree:
        return None
    skipped = layers - number
    what = f"layers {number + 1}-{layers}" if skipped > 1 else f"layer {number + 1}"
    if strategy.answers_agreement:
        what = f"{what} and the aggregator" if skipped else "the aggregator"
    elif not skipped:
        return None  # the last layer: nothing to skip
    result.stopped_early = (
        f"layer {number}: {found.count} of {found.total} answers agree "
        f"({found.share:.0%} >= {layer.agree:.0%}) — {what} skipped"
    )
    return proposals[found.winner]
