"""The MoA engine: proposal layers run concurrently, then the aggregator streams the answer.

    messages ─▶ layer 1 ─▶ layer 2 ─▶ … ─▶ aggregator ─▶ tokens
               (n calls)  (n calls,      (sees the last
                           sees layer 1)  layer's answers)

`MoA.stream()` is the one implementation; `arun()` and `run()` drain it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from moa.agents import Agent, Aggregator, ProposalLayer
from moa.cache import ResponseCache
from moa.caller import Caller
from moa.errors import ConfigError, InputError, LayerFailedError
from moa.events import (
    Done,
    Event,
)
from moa.layer import run_layer
from moa.pricing import PriceBook, price_result
from moa.providers.registry import Registry
from moa.retry import RetryPolicy
from moa.spending import Budget
from moa.strategies import Stage
from moa.trace import CallRecord, Result
from moa.types import Message, Sampling

Prompt = str | Sequence[Message]


def as_messages(prompt: Prompt) -> list[Message]:
    """A prompt string or a chat history, checked: the last turn must be a non-empty user turn."""
    if isinstance(prompt, str):
        prompt = [Message(role="user", content=prompt)]
    messages = [Message(role=m["role"], content=m["content"]) for m in prompt]
    if not messages or messages[-1]["role"] != "user":
        raise InputError("the conversation must end with a user message")
    if not messages[-1]["content"].strip():
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
        cache: ResponseCache | None = None,
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
    ) -> AsyncIterator[Event]:
        """Run once, yielding what happens as it happens; the last event is `Done`.

        `sampling` overrides every call of the run; `aggregator_sampling` only the aggregator's
        (over `sampling`), e.g. a client's max_tokens for the final answer. `max_cost_usd`
        (default: the MoA's) refuses any stage whose worst case would pass it (moa.spending).
        """
        messages = as_messages(prompt)
        overrides = sampling or Sampling()
        final = (aggregator_sampling or Sampling()).merged_over(overrides)
        result = Result()
        started = time.perf_counter()
        references: list[str] = []
        proposals: list[CallRecord] = []
        limit = max_cost_usd if max_cost_usd is not None else self.max_cost_usd
        budget = None if limit is None else Budget(limit, self.prices, overrides)
        for number, layer in enumerate(self.layers, 1):
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
            references = [r.output for r in proposals]

        stage = Stage(
            number=len(self.layers) + 1,
            messages=messages,
            proposals=proposals,
            aggregator=self.aggregator,
            caller=self._caller,
            overrides=final,
            result=result,
        )
        if budget is not None:
            await budget.check_aggregator(stage)
        try:
            async for event in self.aggregator.strategy.aggregate(stage):
                yield event
        finally:
            price_result(result, self.prices)  # also for AggregatorFailedError's result
        result.latency_s = time.perf_counter() - started
        yield Done(result)

    async def arun(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
        max_cost_usd: float | None = None,
    ) -> Result:
        async for event in self.stream(
            prompt,
            sampling=sampling,
            aggregator_sampling=aggregator_sampling,
            max_cost_usd=max_cost_usd,
        ):
            if isinstance(event, Done):
                return event.result
        raise AssertionError("stream() always ends with Done or an exception")

    def run(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
    ) -> Result:
        """Blocking form of `arun`, for scripts and notebooks without an event loop. Inside a
        `with MoA(...) as mixture:` block, calls share one event loop and its connections
        until the block ends; outside one, each call opens and closes its own."""
        coro = self.arun(prompt, sampling=sampling, aggregator_sampling=aggregator_sampling)
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
