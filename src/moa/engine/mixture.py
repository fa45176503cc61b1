"""The MoA engine: proposal layers run concurrently, then the aggregator streams the answer.

    messages ─▶ layer 1 ─▶ layer 2 ─▶ … ─▶ aggregator ─▶ tokens
               (n calls)  (n calls,      (sees the last
                           sees layer 1)  layer's answers)

`MoA.events()` is the one implementation (one `moa.engine.run.Run` per call); `stream()`,
`arun()` and `run()` take the keyword options (moa.engine.options) and come to it. What a MoA
keeps open between calls, and how it ends, is `moa.engine.lifecycle`'s.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Literal, Unpack

from moa import telemetry
from moa.call.agent import Agent, slot_labels
from moa.call.caller import Caller
from moa.engine.aggregator import Aggregator
from moa.engine.budget import (
    layers_worst_case,
    staircase_steps,
    strategy_worst_case,
    worst_case,
)
from moa.engine.invocation import Invocation, auto_worst_case, check_invocation
from moa.engine.layer import ProposalLayer
from moa.engine.lifecycle import Lifecycle
from moa.engine.options import Options, Prompt, RunOptions, as_messages
from moa.engine.run import Run
from moa.engine.staircase_rules import check_staircase
from moa.errors import ConfigError
from moa.events import Done, Event
from moa.policies.cache import Cache
from moa.policies.retry import RetryPolicy
from moa.pricing import PriceBook
from moa.providers.registry import Registry
from moa.strategies import Stage
from moa.trace import CallRecord, Result
from moa.types import Answering, Message, Sampling


class MoA(Lifecycle):
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
        on_degraded: Literal["answer", "fail"] = "answer",
        invocation: Invocation = "always",
        name: str = "moa",
    ) -> None:
        if on_degraded not in ("answer", "fail"):
            raise ConfigError(f'on_degraded is "answer" or "fail", got {on_degraded!r}')
        self.on_degraded = on_degraded  # what a run that lost members does (moa.engine.run)
        self.name = name  # the recipe's: what a run's workflow span is called (moa.telemetry)
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
            check_staircase(self.layers, self.aggregator, self.registry)
        # "auto": the aggregator decides per request whether to convene the layers
        # (moa.engine.invocation).
        check_invocation(invocation, self.layers, self.aggregator)
        self.invocation: Invocation = invocation

    @property
    def caller(self) -> Caller:
        """How this MoA makes one call (request building, policies)."""
        return self._caller

    @property
    def agents(self) -> list[Agent]:
        return [a for layer in self.layers for a in layer.agents] + list(self.aggregator.candidates)

    def labels(self, options: RunOptions) -> dict[tuple[int, int], str]:
        """Each proposer slot of a run with `options` as people read it, by (layer, index):
        its model, numbered with its settings where the model fills several slots of its layer
        (`moa.call.agent.slot_labels`) — the playground's cards, the layers told as reasoning."""
        labels = {}
        for number, layer in enumerate(self.layers, 1):
            sent = [a.sampling_under(options.sampling, self.caller.defaults) for a in layer.agents]
            for index, label in enumerate(slot_labels(layer.agents, sent)):
                labels[number, index] = label
        return labels

    def __repr__(self) -> str:
        return f"MoA({', '.join(map(repr, (*self.layers, self.aggregator)))})"

    async def events(self, prompt: Prompt, options: RunOptions) -> AsyncGenerator[Event, None]:
        """The one implementation of a run: what happens, as it happens; the last event is
        `Done`. The entry points below take the keyword options (`moa.engine.options.Options`)
        and come here. Traced, the run is a workflow span under the caller's current span."""
        events = telemetry.workflow(
            self._events(prompt, options),
            name=self.name,
            attributes=self._span_attributes(),
            prices=self.prices,
            inputs=lambda: as_messages(prompt),
        )
        async with aclosing(events):
            async for event in events:
                yield event

    def _span_attributes(self) -> dict[str, str | int | bool]:
        return {
            "moa.strategy": self.aggregator.strategy.name,
            "moa.layers": len(self.layers),
            "moa.staircase": self.aggregator.staircase,
            "moa.invocation": self.invocation,
            "moa.on_degraded": self.on_degraded,
        }

    async def _events(self, prompt: Prompt, options: RunOptions) -> AsyncGenerator[Event, None]:
        run = await Run.start(
            self.layers,
            self.aggregator,
            self.caller,
            self.prices,
            prompt,
            options,
            self.max_cost_usd,
            fail_degraded=self.on_degraded == "fail",
            invocation=self.invocation,
        )
        async for event in run.events():
            yield event

    async def result(self, prompt: Prompt, options: RunOptions) -> Result:
        """The run's result, once it has ended (its proposers answer whole: nobody sees them)."""
        # Closed here, on this loop: a generator left to the garbage collector is closed later,
        # on a loop that may be gone.
        events = self.events(prompt, options.whole())
        async with aclosing(events):
            async for event in events:
                if isinstance(event, Done):
                    return event.result
        raise AssertionError("events() always ends with Done or an exception")

    def stream(
        self, prompt: Prompt, *, proposal_deltas: bool = True, **options: Unpack[Options]
    ) -> AsyncGenerator[Event, None]:
        """Run once, yielding what happens as it happens; the last event is `Done`. For the
        options see `moa.engine.options.Options`; `proposal_deltas=False` asks proposers for
        whole answers (less CPU) and yields no `ProposalDelta`."""
        return self.events(prompt, RunOptions.of(**options, proposal_deltas=proposal_deltas))

    async def arun(self, prompt: Prompt, **options: Unpack[Options]) -> Result:
        return await self.result(prompt, RunOptions.of(**options))

    async def worst_case_usd(self, prompt: Prompt, sampling: Sampling | None = None) -> float:
        """The most one whole run of `prompt` may cost, before it starts (`moa batch
        --budget`): every call writes its ceiling, so every reference a later stage reads is
        as long as it can be."""
        return await _run_worst_case(self, as_messages(prompt), sampling or Sampling())

    def run(self, prompt: Prompt, **options: Unpack[Options]) -> Result:
        """Blocking form of `arun`, for scripts and notebooks without an event loop. Inside a
        `with MoA(...) as mixture:` block, calls share one event loop and its connections
        until the block ends; outside one, each call opens and closes its own."""
        return self._blocking(self.arun(prompt, **options))


async def _run_worst_case(moa: MoA, messages: list[Message], overrides: Sampling) -> float:
    every, calls, references = await layers_worst_case(moa.caller, moa.layers, messages, overrides)
    total = worst_case(every, moa.prices)
    if moa.invocation == "auto":
        # The aggregator's question and its answer after the panel, over every layer.
        asked = await auto_worst_case(
            moa.caller, moa.aggregator, messages, references, overrides, Answering(), moa.prices
        )
        return total + worst_case(asked, moa.prices)
    if moa.aggregator.staircase:
        steps = await staircase_steps(
            moa.caller, moa.aggregator, messages, calls, overrides, moa.prices
        )
        return total + worst_case(steps, moa.prices)
    # Distinct, so that no two agree (`vote` would answer one with no call).
    proposals = [
        CallRecord(len(moa.layers), i, "", "proposer", output=f"{i}{text}")
        for i, text in enumerate(references)
    ]
    stage = Stage(
        number=len(moa.layers) + 1,
        messages=messages,
        proposals=proposals,
        aggregator=moa.aggregator,
        caller=moa.caller,
        overrides=overrides,
        result=Result(),
        proposers=moa.layers[-1].agents if moa.layers else (),
    )
    return total + worst_case(await strategy_worst_case(stage, moa.prices), moa.prices)


def alone(mixture: MoA) -> MoA:
    """This MoA's aggregator (its fallbacks after it) answering alone, in one call: no
    layers, the same registry, prices and policies — for a chat UI's side requests (a
    title, tags), which a whole mixture run would answer minutes later at many times
    the cost."""
    caller, aggregator = mixture.caller, mixture.aggregator
    return MoA(
        Aggregator(aggregator.agent, prompt=aggregator.prompt, fallbacks=aggregator.fallbacks),
        registry=mixture.registry,
        defaults=caller.defaults,
        timeout_s=caller.timeout_s,
        retry=caller.retry,
        cache=caller.cache,
        prices=mixture.prices,
        max_cost_usd=mixture.max_cost_usd,
        on_degraded=mixture.on_degraded,
    )
