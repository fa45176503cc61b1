"""The building blocks users compose: agents (model slots), proposal layers, an aggregator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from moa.errors import ConfigError
from moa.prompts import AGGREGATE_AND_SYNTHESIZE
from moa.types import Sampling

if TYPE_CHECKING:
    from moa.strategies import Strategy


@dataclass(frozen=True, slots=True)
class Agent:
    """One model slot. The same model may fill several slots (Self-MoA) with other seeds."""

    model: str  # `provider:model`
    sampling: Sampling = field(default_factory=Sampling)
    system: str | None = None  # this slot's own system prompt
    system_role: bool | None = None  # None: ask the provider whether the template has one
    context_window: int | None = None  # tokens; None: the provider's or a known default
    timeout_s: float | None = None  # per call; None: the provider's, else the recipe's

    @classmethod
    def of(cls, value: str | Agent) -> Agent:
        return value if isinstance(value, Agent) else cls(value)


class ProposalLayer:
    """Proposers that answer concurrently; from layer 2 on they see the previous answers.

    `min_proposals` (k of n, default n) and `deadline_s` set when the layer may move on: once
    all answers are in, or once k are in and the deadline has passed (with no deadline, as soon
    as k are in). Stragglers are then cancelled and recorded as such.
    """

    def __init__(
        self,
        *agents: str | Agent,
        prompt: str = AGGREGATE_AND_SYNTHESIZE,
        min_proposals: int | None = None,
        deadline_s: float | None = None,
    ) -> None:
        if not agents:
            raise ConfigError("a proposal layer needs at least one model")
        self.agents: tuple[Agent, ...] = tuple(Agent.of(a) for a in agents)
        self.prompt = prompt
        if min_proposals is not None and not 1 <= min_proposals <= len(self.agents):
            raise ConfigError(
                f"min_proposals must be between 1 and {len(self.agents)} (the layer's size), "
                f"got {min_proposals}"
            )
        self.min_proposals = min_proposals or len(self.agents)
        self.deadline_s = deadline_s

    def __repr__(self) -> str:
        return f"ProposalLayer({', '.join(a.model for a in self.agents)})"


class Aggregator:
    """Reads the last layer's answers and streams the final one; `fallbacks` are tried in
    order when the aggregator fails before its first token."""

    def __init__(
        self,
        agent: str | Agent,
        *,
        prompt: str = AGGREGATE_AND_SYNTHESIZE,
        fallbacks: Sequence[str | Agent] = (),
        strategy: str | Strategy = "synthesize",
    ) -> None:
        self.agent = Agent.of(agent)
        self.prompt = prompt
        self.fallbacks: tuple[Agent, ...] = tuple(Agent.of(a) for a in fallbacks)
        # Resolved now, so an unknown name fails when the MoA is built, not mid-run.
        if isinstance(strategy, str):
            from moa import strategies  # the strategies call agents: imported when first needed

            strategy = strategies.get(strategy)
        self.strategy: Strategy = strategy

    @property
    def candidates(self) -> tuple[Agent, ...]:
        return (self.agent, *self.fallbacks)

    def __repr__(self) -> str:
        return f"Aggregator({self.agent.model})"
