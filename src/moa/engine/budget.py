"""Money budgets: a run is refused before a stage that could take it past `max_cost_usd`.

Before each proposal layer the engine calls `Budget.check_layer`, before the aggregator
`Budget.check_aggregator`: every call the strategy says it may make (its `worst_case` steps —
`analysis` two, `rank` a ranking per proposer, a `window` one per window, …), each priced as
its dearest candidate (a fallback answers only when the one before it failed), once per answer
asked for. A stage's worst case is priced from the requests it is about to send —
their prompt tokens (estimated high, see moa.tokens) and `max_tokens` as the ceiling of every
answer (without max_tokens: the rest of the model's context window). If what the run has spent
plus that worst case would pass the budget, `BudgetExceededError` is raised and no call of the
stage is made. A staircase aggregator runs alongside the last layer, so the two are checked
together (`Budget.check_staircase`), the aggregator as every step it may take. `MoA.worst_case_usd`
bounds a whole run before it starts (`moa batch --budget`).

A model whose price is unknown cannot be bounded, so a budget refuses it too (price it in the
recipe with `price = { input = …, output = … }`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from moa.call.caller import Caller
from moa.call.request import Call
from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.engine.staircase_rules import spacing
from moa.errors import BudgetExceededError, ConfigError, UnpricedModelError
from moa.pricing import PriceBook, format_usd, price_result
from moa.tokens import CHARS_PER_TOKEN, estimate_tokens, messages_tokens
from moa.trace import Result
from moa.types import ChatRequest, Message, Sampling, Usage

if TYPE_CHECKING:
    from moa.strategies import Stage, Step, Strategy

KNOBS = "max_cost_usd in the recipe, --max-cost, or moa_max_cost_usd in a request"


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """A call about to be made: its prompt size and the most it may write."""

    model: str  # `provider:model`
    input_tokens: int
    max_output_tokens: int


@dataclass(frozen=True, slots=True)
class Budget:
    max_cost_usd: float
    prices: PriceBook = field(default_factory=PriceBook)
    overrides: Sampling = field(default_factory=Sampling)  # the run's settings for proposers

    def __post_init__(self) -> None:
        if self.max_cost_usd <= 0:
            raise ConfigError(f"max_cost_usd must be positive, got {self.max_cost_usd:g}")

    def worst_case(self, calls: Sequence[PlannedCall]) -> float:
        return worst_case(calls, self.prices)

    def check(self, stage: str, calls: Sequence[PlannedCall], result: Result) -> None:
        """Raise `BudgetExceededError` if `result`'s spend plus the stage's worst case would
        pass the budget; prices `result`'s calls on the way."""
        spent = price_result(result, self.prices).known_cost_usd
        worst = self.worst_case(calls)
        if spent + worst > self.max_cost_usd:
            raise BudgetExceededError(
                budget_usd=self.max_cost_usd,
                spent_usd=spent,
                worst_case_usd=worst,
                stage=stage,
                knob=KNOBS,
                result=result,
            )

    async def check_layer(
        self,
        number: int,
        layer: ProposalLayer,
        caller: Caller,
        messages: Sequence[Message],
        references: Sequence[str],
        result: Result,
    ) -> None:
        """Before proposal layer `number` starts: its calls as the caller would send them."""
        calls = [Call(a, messages, references, layer.prompt, self.overrides) for a in layer.agents]
        planned = [await plan_call(caller, call) for call in calls]
        self.check(f"layer {number}", planned, result)

    async def check_aggregator(self, stage: Stage) -> None:
        """Before the aggregator starts: all its strategy may spend, `n` times over."""
        planned = await strategy_worst_case(stage, self.prices) * stage.answering.n
        calls = f"{len(planned)} call{'s' if len(planned) != 1 else ''}"
        name = stage.aggregator.strategy.name
        self.check(f"the aggregator ({name}, {calls})", planned, stage.result)

    async def check_staircase(
        self, stage: Stage, aggregator: Aggregator, layer: ProposalLayer
    ) -> None:
        """Before the last layer starts under a staircase aggregator: both run at once, so
        they are bounded at once, before either makes a call. The layer reads the stage's
        proposals (those of the layer before it)."""
        references = stage.references
        calls = [
            Call(a, stage.messages, references, layer.prompt, self.overrides) for a in layer.agents
        ]
        proposals = [await plan_call(stage.caller, call) for call in calls]
        steps = await staircase_steps(
            stage.caller, aggregator, stage.messages, proposals, stage.overrides, self.prices
        )
        self.check(
            f"layer {stage.number - 1} and the staircase aggregator",
            proposals + steps,
            stage.result,
        )

    def describe(self) -> str:
        return f"budget {format_usd(self.max_cost_usd)}"


async def layers_worst_case(
    caller: Caller,
    layers: Sequence[ProposalLayer],
    messages: Sequence[Message],
    overrides: Sampling,
) -> tuple[list[PlannedCall], list[PlannedCall], list[str]]:
    """Every call of the proposal layers, each writing its ceiling, so that every reference a
    later layer reads is as long as it can be: all the planned calls, the last layer's, and the
    references it passes on."""
    references: list[str] = []
    every: list[PlannedCall] = []
    calls: list[PlannedCall] = []
    for layer in layers:
        calls = [
            await plan_call(caller, Call(a, messages, references, layer.prompt, overrides))
            for a in layer.agents
        ]
        every += calls
        references = ["x" * int(c.max_output_tokens * CHARS_PER_TOKEN) for c in calls]
    return every, calls, references


def worst_case(calls: Sequence[PlannedCall], prices: PriceBook) -> float:
    """What the calls cost if each writes its ceiling; ConfigError for a model without a price."""
    total = 0.0
    for call in calls:
        cost = prices.cost(call.model, Usage(call.input_tokens, call.max_output_tokens))
        if cost is None:
            raise UnpricedModelError(call.model)
        total += cost
    return total


async def staircase_steps(
    caller: Caller,
    aggregator: Aggregator,
    messages: Sequence[Message],
    proposals: Sequence[PlannedCall],
    overrides: Sampling,
    prices: PriceBook,
) -> list[PlannedCall]:
    """A staircase aggregator's worst case, as one planned call per step it may take.

    A step other than the last starts only once every running proposer has sent
    `chunk_tokens` more chunks than at the step before (a chunk is at least one token; a
    `chunk_growth` only spaces steps further), so there are at most longest proposal ceiling //
    chunk_tokens of them (the smallest of the candidates' spacings), plus the step that sees the
    proposals complete. Each is priced as re-sending every proposal at its ceiling and the whole
    answer as its prefix, and as writing the answer's ceiling (a step replaced by the next may
    have written past what was shown). The dearest candidate counts, as for a whole answer.
    """
    longest = max((p.max_output_tokens for p in proposals), default=0)
    chunk = min(
        spacing(aggregator, a.model, caller.registry).chunk_tokens for a in aggregator.candidates
    )
    count = longest // chunk + 1
    references = ["x" * int(p.max_output_tokens * CHARS_PER_TOKEN) for p in proposals]
    planned = []
    for agent in aggregator.candidates:
        whole = await plan_call(
            caller, Call(agent, messages, references, aggregator.prompt, overrides)
        )
        prefix = "x" * int(whole.max_output_tokens * CHARS_PER_TOKEN)
        continued = Call(
            agent, messages, references, aggregator.prompt, overrides, continuation=prefix
        )
        step = await plan_call(caller, continued)
        planned.append(PlannedCall(agent.model, step.input_tokens, whole.max_output_tokens))
    dearest = max(planned, key=lambda p: worst_case([p], prices))
    return [dearest] * count


def bounded(strategy: Strategy) -> Callable[[Stage], Awaitable[list[Step]]]:
    """The strategy's `worst_case`; ConfigError, before a run spends anything, without one."""
    declared: Callable[[Stage], Awaitable[list[Step]]] | None = getattr(
        strategy, "worst_case", None
    )
    if declared is None:
        raise ConfigError(
            f"strategy {strategy.name!r} does not say what its calls may cost (no worst_case "
            f"method), so max_cost_usd cannot bound it: run it without a budget, or give the "
            f"strategy a worst_case (see moa.strategies.base.Strategy)"
        )
    return declared


async def strategy_worst_case(stage: Stage, prices: PriceBook) -> list[PlannedCall]:
    """The calls the stage's strategy may make (`Strategy.worst_case`), each as its dearest
    candidate, with the answers its prompt holds (`Step.reads`) as long as they may be."""
    declared = bounded(stage.aggregator.strategy)
    longest: dict[int, int] = {}  # a step's (by id) longest answer, in tokens
    out: list[PlannedCall] = []
    for step in await declared(stage):
        extra = sum(longest[id(read)] for read in step.reads)
        planned = [
            replace(p, input_tokens=p.input_tokens + extra)
            for p in [await plan_call(stage.caller, call) for call in step.calls]
        ]
        longest[id(step)] = max(p.max_output_tokens for p in planned)
        out.append(max(planned, key=lambda p: worst_case([p], prices)))
    return out


async def plan_call(caller: Caller, call: Call) -> PlannedCall:
    """The call's request as the caller would build it: its prompt size and answer ceiling."""
    _, built = await caller.build(call)
    request = built.request
    input_tokens = messages_tokens(request.messages) + _tool_tokens(request)
    ceiling = request.sampling.max_tokens
    if ceiling is None:
        window = call.agent.context_window or (await caller.profile(call.agent)).context_window
        ceiling = max(window - input_tokens, 1)
    return PlannedCall(call.agent.model, input_tokens, ceiling)


def _tool_tokens(request: ChatRequest) -> int:
    """What the tool schemas and earlier calls add to a prompt (messages_tokens counts text):
    an app may attach dozens of tools to every message."""
    parts: list[Any] = [m["tool_calls"] for m in request.messages if m.get("tool_calls")]
    if request.tools is not None:
        parts.append(list(request.tools.specs))
    return sum(estimate_tokens(json.dumps(part)) for part in parts)
