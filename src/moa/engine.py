"""The MoA engine: proposal layers run concurrently, then the aggregator streams the answer.

    messages ─▶ layer 1 ─▶ layer 2 ─▶ … ─▶ aggregator ─▶ tokens
               (n calls)  (n calls,      (sees the last
                           sees layer 1)  layer's answers)

`MoA.stream()` is the one implementation; `arun()` and `run()` drain it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import replace
from types import TracebackType
from typing import Any

from moa.agents import Agent, Aggregator, ProposalLayer
from moa.cache import Cache
from moa.caller import Caller
from moa.cluster import outliers
from moa.errors import ConfigError, InputError, LayerFailedError
from moa.events import (
    Done,
    Event,
)
from moa.layer import run_layer
from moa.pricing import PriceBook, price_result
from moa.providers.registry import Registry, split_model_ref
from moa.retry import RetryPolicy
from moa.spending import Budget
from moa.staircase import stream_staircase
from moa.strategies import Stage
from moa.strategies.base import answers, offer_tools, refuse_unsupported
from moa.strategies.vote import agreement, answer_with
from moa.trace import CallRecord, Result
from moa.types import Answering, Message, Sampling, Tools

Prompt = str | Sequence[Message]
ToolList = Sequence[Mapping[str, Any]]  # OpenAI's {"type": "function", "function": {...}}


def with_tools(answering: Answering | None, tools: ToolList | None) -> Answering:
    answering = answering or Answering()
    if tools is None:
        return answering
    return replace(answering, tools=Tools(tuple(dict(t) for t in tools)))


def as_messages(prompt: Prompt) -> list[Message]:
    """A prompt string or a chat history, checked: the last turn must be a non-empty user turn,
    or a tool's result (an agent loop continuing after running the calls it was given)."""
    if isinstance(prompt, str):
        prompt = [Message(role="user", content=prompt)]
    messages = [m.copy() for m in prompt]
    if not messages or messages[-1]["role"] not in ("user", "tool"):
        raise InputError("the conversation must end with a user message (or a tool's result)")
    if messages[-1]["role"] == "user" and not messages[-1]["content"].strip():
        raise InputError("the prompt is empty: the last user message has no text")
    return messages


class MoA:
    """A Mixture-of-Agents, composed like `torch.nn.Sequential`:

    MoA(ProposalLayer("local:smollm2", "local:smollm2"), Aggregator("local:smollm2"))
    """

    def __init__(
        self,
        *stages: ProposalLayer | Aggregator,
        registry: Registry | None = None,
        defaults: Sampling | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        cache: Cache | None = None,
        prices: PriceBook | None = None,
        max_cost_usd: float | None = None,
    ) -> None:
        if not stages or not isinstance(stages[-1], Aggregator):
            raise ConfigError("a MoA ends with exactly one Aggregator")
        layers = stages[:-1]
        if any(not isinstance(s, ProposalLayer) for s in layers):
            raise ConfigError("only the last stage of a MoA may be an Aggregator")
        self.layers: tuple[ProposalLayer, ...] = layers  # type: ignore[assignment]
        self.aggregator: Aggregator = stages[-1]
        self.registry = registry or Registry()
        self.prices = prices or PriceBook()
        self.max_cost_usd = max_cost_usd  # per run; a run may pass its own
        self._runner: asyncio.Runner | None = None  # the event loop of blocking `run()` calls
        self._caller = Caller(
            registry=self.registry,
            retry=retry or RetryPolicy(),
            timeout_s=timeout_s,
            defaults=defaults or Sampling(),
            cache=cache,
        )
        for agent in self.agents:
            self._caller.check(agent)
        if self.aggregator.staircase:
            self._check_staircase()

    def _check_staircase(self) -> None:
        """Staircase needs proposals to stream and an aggregator that continues its own answer:
        refused now rather than silently run as wait-for-all."""
        if not self.layers:
            raise ConfigError("staircase needs at least one proposal layer to stream from")
        for agent in self.aggregator.candidates:
            provider = split_model_ref(agent.model)[0]
            if self.registry.capabilities(provider).continuation == "none":
                raise ConfigError(
                    f"staircase: {agent.model}'s provider {provider!r} does not continue a "
                    f'partial answer (continuation = "none") — use an aggregator on a provider '
                    f"that does (local, vLLM, llama.cpp's server: declare "
                    f'[providers.{provider}] continuation = "assistant" if it does), or turn '
                    f"staircase off"
                )

    @property
    def caller(self) -> Caller:
        """How this MoA makes one call (request building, policies)."""
        return self._caller

    @property
    def agents(self) -> list[Agent]:
        return [a for layer in self.layers for a in layer.agents] + list(self.aggregator.candidates)

    def __repr__(self) -> str:
        return f"MoA({', '.join(map(repr, (*self.layers, self.aggregator)))})"

    async def stream(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
        max_cost_usd: float | None = None,
        answering: Answering | None = None,
        tools: ToolList | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Run once, yielding what happens as it happens; the last event is `Done`.

        `sampling` overrides every call of the run; `aggregator_sampling` only the aggregator's
        (over `sampling`), e.g. a client's max_tokens for the final answer. `max_cost_usd`
        (default: the MoA's) refuses any stage whose worst case would pass it (moa.spending).
        `answering` (tools, response format, logprobs, n) applies to the aggregator only, and is
        refused before any call when an aggregator candidate's provider cannot honour it;
        `tools` is its shorthand for OpenAI-shaped function specs (the answer's calls are in
        `Result.tool_calls`).
        """
        messages = as_messages(prompt)
        answering, dropped = await offer_tools(
            self._caller, self.aggregator, with_tools(answering, tools)
        )
        await refuse_unsupported(self._caller, self.aggregator, answering)
        overrides = sampling or Sampling()
        final = (aggregator_sampling or Sampling()).merged_over(overrides)
        result = Result(notes=[dropped] if dropped else [])
        started = time.perf_counter()
        proposals: list[CallRecord] = []
        limit = max_cost_usd if max_cost_usd is not None else self.max_cost_usd
        budget = None if limit is None else Budget(limit, self.prices, overrides)
        proposers: tuple[Agent, ...] = ()
        agreed: CallRecord | None = None  # the agreed answer of a layer that stopped the run
        staircase = self.aggregator.staircase
        if staircase and budget is not None:
            raise ConfigError("max_cost_usd cannot bound a staircase aggregator yet; turn one off")
        if staircase and answering != Answering():
            raise ConfigError(
                "a staircase aggregator streams one plain-text answer: tools, response_format, "
                "logprobs and n need the aggregator to answer whole — turn staircase off for them"
            )
        for number, layer in enumerate(self.layers[:-1] if staircase else self.layers, 1):
            if agreed is not None:
                break
            proposers = layer.agents
            references = [r.output for r in proposals]
            if budget is not None:
                await budget.check_layer(number, layer, self._caller, messages, references, result)
            records: list[CallRecord] = []
            async for event in run_layer(
                self._caller, number, layer, messages, references, overrides, records
            ):
                yield event
            result.calls.extend(records)
            proposals = [r for r in records if r.ok]
            if not proposals:
                result.latency_s = time.perf_counter() - started
                raise LayerFailedError(number, records, price_result(result, self.prices))
            agreed = _agreed(
                number, layer, proposals, result, len(self.layers), self.aggregator.strategy.name
            )
            proposals = _filtered(layer, proposals, result)

        stage = Stage(
            number=len(self.layers) + 1,
            messages=messages,
            proposals=[] if staircase else proposals,  # staircase: the last layer's, as it runs
            aggregator=self.aggregator,
            caller=self._caller,
            overrides=final,
            result=result,
            proposers=proposers,
            answering=answering,
        )
        events = None
        if staircase and agreed is None:
            # The last layer runs under the aggregator, which reads its proposals as they stream.
            last = self.layers[-1]
            stage.proposers, stage.proposals = last.agents, []
            references = [r.output for r in proposals]
            layer_events = run_layer(
                self._caller,
                stage.number - 1,
                last,
                messages,
                references,
                overrides,
                stage.proposals,
            )
            events = stream_staircase(stage, layer_events, len(last.agents))
        async for event in self._answer(stage, agreed, budget, events):
            yield event
        result.latency_s = time.perf_counter() - started
        yield Done(result)

    async def _answer(
        self,
        stage: Stage,
        agreed: CallRecord | None,
        budget: Budget | None,
        staircase: AsyncIterator[Event] | None = None,
    ) -> AsyncIterator[Event]:
        """The aggregator's events (`staircase`'s when it runs one); none when a layer agreed
        and the strategy is vote (it would answer with the same proposal, at no cost)."""
        if staircase is not None:
            events = staircase
        elif agreed is not None and self.aggregator.strategy.name == "vote":
            events = answer_with(stage, agreed, "stop_when agree with vote: no aggregator call")
        else:
            if budget is not None:
                await budget.check_aggregator(stage)
            events = answers(stage)
        try:
            async for event in events:
                yield event
        finally:
            price_result(stage.result, self.prices)  # also for AggregatorFailedError's result

    async def arun(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
        max_cost_usd: float | None = None,
        answering: Answering | None = None,
        tools: ToolList | None = None,
    ) -> Result:
        # Closed here, on this loop: a generator left to the garbage collector is closed later,
        # on a loop that may be gone.
        events = self.stream(
            prompt,
            sampling=sampling,
            aggregator_sampling=aggregator_sampling,
            max_cost_usd=max_cost_usd,
            answering=answering,
            tools=tools,
        )
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Done):
                    return event.result
        raise AssertionError("stream() always ends with Done or an exception")

    def run(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
        answering: Answering | None = None,
        tools: ToolList | None = None,
    ) -> Result:
        """Blocking form of `arun`, for scripts and notebooks without an event loop. Inside a
        `with MoA(...) as mixture:` block, calls share one event loop and its connections
        until the block ends; outside one, each call opens and closes its own."""
        coro = self.arun(
            prompt,
            sampling=sampling,
            aggregator_sampling=aggregator_sampling,
            answering=answering,
            tools=tools,
        )
        if self._runner is not None:
            return self._runner.run(coro)

        async def once() -> Result:
            try:
                return await coro
            finally:
                await self.registry.aclose()

        return asyncio.run(once())

    def close(self) -> None:
        """End what `run()` opened: its connections and its event loop."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            runner.run(self.registry.aclose())
            runner.close()

    def __enter__(self) -> MoA:
        self._runner = self._runner or asyncio.Runner()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def aclose(self) -> None:
        await self.registry.aclose()

    async def __aenter__(self) -> MoA:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


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
    result: Result,
    layers: int,
    strategy: str,
) -> CallRecord | None:
    """The first of the agreeing answers when layer `number` (of `layers`) meets its
    `stop_when`; then the trace says what is skipped and why."""
    if layer.stop_when != "agree":
        return None
    found = agreement([p.output for p in proposals])
    if found.winner is None or found.share < layer.agree:
        return None
    skipped = layers - number
    what = f"layers {number + 1}-{layers}" if skipped > 1 else f"layer {number + 1}"
    if strategy == "vote":
        what = f"{what} and the aggregator" if skipped else "the aggregator"
    elif not skipped:
        return None  # the last layer: nothing to skip
    result.stopped_early = (
        f"layer {number}: {found.count} of {found.total} answers agree "
        f"({found.share:.0%} >= {layer.agree:.0%}) — {what} skipped"
    )
    return proposals[found.winner]
