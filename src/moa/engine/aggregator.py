"""The last stage: the `Aggregator` reads the last layer's answers and writes the final one, with
its strategy, its fallbacks and (with staircase) its step spacing."""

from __future__ import annotations

from collections.abc import Sequence

from moa import strategies
from moa.call.agent import Agent
from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE
from moa.errors import ConfigError
from moa.strategies import Strategy


class Aggregator:
    """Reads the last layer's answers and streams the final one; `fallbacks` are tried in
    order when the aggregator fails before its first token.

    `staircase=True` starts it on the proposals' first `chunk_tokens` chunks and calls it again,
    continuing its own answer, each time every proposer has sent `chunk_tokens` more — or, with
    `chunk_growth` g > 1, has grown g-fold since the step before, whichever is more; left
    unset, both are chosen for the aggregator's provider (moa.engine.staircase_rules.spacing). Its
    providers must declare a continuation capability.

    `reply="final_line"`: a strategy answering with a proposal (vote, medoid) streams only the
    line of its final result (moa.strategies.final), not its whole reasoning.
    """

    def __init__(
        self,
        agent: str | Agent,
        *,
        prompt: str = AGGREGATE_AND_SYNTHESIZE,
        fallbacks: Sequence[str | Agent] = (),
        strategy: str | Strategy = "synthesize",
        top_k: int | None = None,
        window: int | None = None,
        staircase: bool = False,
        chunk_tokens: int | None = None,
        chunk_growth: float | None = None,
        reply: str = "whole",
    ) -> None:
        self.agent = Agent.of(agent)
        self.prompt = prompt
        self.fallbacks: tuple[Agent, ...] = tuple(Agent.of(a) for a in fallbacks)
        if any(a.samples != 1 for a in self.candidates):
            raise ConfigError("samples is for proposers; an aggregator answers once")
        # Resolved now, so an unknown name fails when the MoA is built, not mid-run.
        strategy = (
            strategies.get(strategy) if isinstance(strategy, str) else strategies.declared(strategy)
        )
        self.strategy: Strategy = strategy
        if top_k is not None and (not strategy.uses_top_k or top_k < 1):
            raise ConfigError(
                f'top_k ({top_k}) is how many answers strategy "rank" passes on: a number '
                f'of at least 1, with strategy="rank"'
            )
        self.top_k = top_k or 2
        if window is not None and window < 2:
            raise ConfigError(f"window must be at least 2 proposals, got {window}")
        self.window = window
        if chunk_tokens is not None and chunk_tokens < 1:
            raise ConfigError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
        if not staircase and (chunk_tokens is not None or chunk_growth is not None):
            raise ConfigError(
                "chunk_tokens and chunk_growth space a staircase aggregator's steps: set "
                "staircase = true as well, or leave them out"
            )
        self.staircase = staircase
        if chunk_growth is not None and not chunk_growth >= 1:
            raise ConfigError(f"chunk_growth must be 1 or more, got {chunk_growth}")
        # None: chosen per provider when the staircase runs (moa.engine.staircase_rules.spacing)
        self.chunk_tokens = chunk_tokens
        self.chunk_growth = chunk_growth
        if reply not in ("whole", "final_line"):
            raise ConfigError(f'reply is "whole" or "final_line", got {reply!r}')
        self.reply = reply

    @property
    def candidates(self) -> tuple[Agent, ...]:
        return (self.agent, *self.fallbacks)

    def __repr__(self) -> str:
        return f"Aggregator({self.agent.model})"
