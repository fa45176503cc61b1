"""What a staircase aggregator accepts, and how its steps are spaced — decided here and nowhere
else: `check_staircase` when a MoA is built, `refuse_for_staircase` when a run starts,
`spacing` for each step (and for the budget's worst case).

Refused rather than silently run as wait-for-all: a strategy that is not one synthesis, no
layer to stream from, a last layer whose options need its whole answers, an aggregator (or a
fallback) whose provider cannot continue a partial answer, and what is asked of the answer
that needs it whole (tools, response_format, logprobs, n).
"""

from __future__ import annotations

from dataclasses import dataclass

from moa.engine.aggregator import Aggregator
from moa.engine.layer import ProposalLayer
from moa.errors import ConfigError
from moa.providers.registry import Registry, split_model_ref
from moa.types import Answering


def check_staircase(
    layers: tuple[ProposalLayer, ...], aggregator: Aggregator, registry: Registry
) -> None:
    """A staircase needs a strategy that is one synthesis, proposals to stream and an
    aggregator that continues its own answer."""
    strategy = aggregator.strategy
    if not strategy.staircase:
        raise ConfigError(
            f"staircase streams one synthesis of the proposals (strategy synthesize), not "
            f"{strategy.name!r} — use strategy synthesize, or turn staircase off"
        )
    if not layers:
        raise ConfigError("staircase needs at least one proposal layer to stream from")
    if layers[-1].filter == "cluster":
        # The staircase reads answers as they stream: what it has read and written cannot be
        # taken back once the filter would have dropped one.
        raise ConfigError(
            'staircase: the last layer\'s filter = "cluster" compares whole answers, but a '
            "staircase aggregator reads them as they stream (what it has read and written "
            "cannot be taken back) — put the filter on an earlier layer, or turn staircase off"
        )
    if layers[-1].rounds is not None:
        raise ConfigError(
            "staircase: the last layer is adaptive, but a staircase aggregator reads it as it "
            "streams, before a round could decide to stop — make an earlier layer adaptive, "
            "or turn staircase off"
        )
    for agent in aggregator.candidates:
        provider = split_model_ref(agent.model)[0]
        if registry.capabilities(provider).continuation == "none":
            raise ConfigError(
                f"staircase: {agent.model}'s provider {provider!r} does not continue a "
                f'partial answer (continuation = "none") — use an aggregator on a provider '
                f"that does (local, vLLM, llama.cpp's server: declare "
                f'[providers.{provider}] continuation = "assistant" if it does), or turn '
                f"staircase off"
            )


def refuse_for_staircase(answering: Answering) -> None:
    """What a staircase aggregator cannot do yet, refused before any call."""
    if answering != Answering():
        raise ConfigError(
            "a staircase aggregator streams one plain-text answer: tools, response_format, "
            "logprobs and n need the aggregator to answer whole — turn staircase off for them"
        )


@dataclass(frozen=True, slots=True)
class Spacing:
    """When a staircase aggregator takes its steps: the first once every proposer has sent
    `chunk_tokens` chunks, each next one once every proposal has grown by `chunk_tokens`
    chunks or `growth`-fold, whichever is more."""

    chunk_tokens: int
    growth: float

    def next_threshold(self, shortest: int) -> int:
        return shortest + max(self.chunk_tokens, int((self.growth - 1) * shortest))


# Chosen by measurement (benchmarks row 10, README "Time to first token"). A served model
# generates proposals and steps side by side: fixed chunks, as in the paper. The embedded model
# does all of it on the same cores, where every step re-reads its prompt from the first
# proposal that grew (a third of a generated token's cost here: benchmarks.local_costs) while
# the proposers wait: a first step soon, then few.
SERVED_SPACING = Spacing(chunk_tokens=64, growth=1.0)
KV_SPACING = Spacing(chunk_tokens=32, growth=4.0)


def spacing(aggregator: Aggregator, model: str, registry: Registry) -> Spacing:
    """The aggregator's `chunk_tokens` and `chunk_growth` where set, else its provider's
    defaults: KV_SPACING for one that continues from its own KV cache (the embedded model),
    SERVED_SPACING for the others."""
    provider = split_model_ref(model)[0]
    kv = registry.capabilities(provider).continuation == "kv"
    default = KV_SPACING if kv else SERVED_SPACING
    return Spacing(
        aggregator.chunk_tokens or default.chunk_tokens,
        aggregator.chunk_growth if aggregator.chunk_growth is not None else default.growth,
    )
