"""When a staircase aggregator takes its next step: after a fixed `chunk_tokens` more, or — with
`chunk_growth` — once every proposal has grown that many times over; the embedded model gets
its own spacing by default; and no step starts just as every proposer is about to end."""

from __future__ import annotations

from itertools import pairwise

import pytest

from moa import Agent, Aggregator, MoA, ProposalLayer, ProviderConfig, Registry, RetryPolicy
from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE
from moa.engine.staircase_rules import KV_SPACING, SERVED_SPACING, Spacing, spacing
from moa.errors import ConfigError
from moa.events import Token
from moa.providers.base import Capabilities
from moa.recipes import build, load
from moa.testing import FakeUpstream, Reply, continuing
from moa.types import Sampling

WORDS = 40
PROPOSALS = {m: " ".join(f"{m}w{i}" for i in range(WORDS)) for m in ("p0", "p1", "p2")}
ANSWER = " ".join(f"answer{i}" for i in range(80))
PACE_S = 0.01


def mixture(upstream: FakeUpstream, *proposers: str | Agent, **aggregator: object) -> MoA:
    continues = Capabilities(continuation="assistant")
    registry = Registry({"fake": ProviderConfig("fake", upstream.base_url, capabilities=continues)})
    return MoA(
        ProposalLayer(*(proposers or [f"fake:{m}" for m in PROPOSALS])),
        Aggregator("fake:agg", staircase=True, **aggregator),  # type: ignore[arg-type]
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )


def script(upstream: FakeUpstream, **replies: Reply) -> None:
    for model, text in PROPOSALS.items():
        upstream.script(model, replies.get(model, Reply(text, token_delay_s=PACE_S)))
    upstream.script("agg", Reply(continuing(ANSWER), token_delay_s=PACE_S))


async def answer(moa: MoA) -> str:
    shown = []
    async with moa:
        async for event in moa.stream("q"):
            if isinstance(event, Token):
                shown.append(event.text)
    return "".join(shown)


def shortest_reference(body: dict) -> int:
    """Words in the shortest proposal this aggregator request was sent."""
    system = body["messages"][0]["content"].removeprefix(AGGREGATE_AND_SYNTHESIZE)
    return min(len(line.split(". ", 1)[1].split()) for line in system.strip("\n").split("\n"))


async def test_with_growth_each_step_waits_for_proposals_twice_as_long(
    upstream: FakeUpstream,
) -> None:
    script(upstream)
    assert await answer(mixture(upstream, chunk_tokens=2, chunk_growth=2)) == ANSWER

    seen = [shortest_reference(body) for body in upstream.requests_for("agg")]
    assert seen[-1] == WORDS  # the last step read the proposals whole
    steps = seen[:-1]
    assert steps[0] >= 2
    for before, after in pairwise(steps):
        assert after >= 2 * before
    assert len(seen) <= 6  # 2, 4, 8, 16, 32 and the whole: not one step per 2 words


async def test_growth_takes_fewer_steps_than_fixed_chunks_for_the_same_answer(
    upstream: FakeUpstream,
) -> None:
    script(upstream)
    assert await answer(mixture(upstream, chunk_tokens=2)) == ANSWER
    fixed = len(upstream.requests_for("agg"))
    upstream.reset()
    script(upstream)
    assert await answer(mixture(upstream, chunk_tokens=2, chunk_growth=2)) == ANSWER
    grown = len(upstream.requests_for("agg"))
    assert grown < fixed / 2


async def test_no_step_starts_when_every_proposer_has_streamed_its_max_tokens(
    upstream: FakeUpstream,
) -> None:
    # Each proposer writes exactly its max_tokens; its end comes a moment after its last word.
    # A step on those words would be replaced by the final one before it wrote anything.
    ceiling = 10
    short = {m: " ".join(t.split()[:ceiling]) for m, t in PROPOSALS.items()}
    replies = {
        m: Reply(t, token_delay_s=PACE_S, finish_reason="length", hold_open_s=0.3)
        for m, t in short.items()
    }
    script(upstream, **replies)
    proposers = [Agent(f"fake:{m}", sampling=Sampling(max_tokens=ceiling)) for m in PROPOSALS]
    await answer(mixture(upstream, *proposers, chunk_tokens=5))

    seen = [shortest_reference(body) for body in upstream.requests_for("agg")]
    assert seen == [5, ceiling]


def test_the_embedded_model_spaces_its_steps_out_unless_told() -> None:
    registry = Registry({})
    continues = Capabilities(continuation="assistant")
    registry.add(ProviderConfig("served", "http://127.0.0.1:9/v1", capabilities=continues))
    local = Aggregator("local:smollm2", staircase=True)
    served = Aggregator("served:m", staircase=True)
    assert spacing(local, "local:smollm2", registry) == KV_SPACING
    assert spacing(served, "served:m", registry) == SERVED_SPACING
    assert KV_SPACING.growth > SERVED_SPACING.growth == 1.0
    assert KV_SPACING.chunk_tokens < SERVED_SPACING.chunk_tokens
    told = Aggregator("local:smollm2", staircase=True, chunk_tokens=8, chunk_growth=1.0)
    assert spacing(told, "local:smollm2", registry) == Spacing(8, 1.0)
    # a fallback on another provider is spaced for its own
    assert spacing(local, "served:m", registry) == SERVED_SPACING


def test_the_next_step_waits_for_chunk_tokens_more_or_growth_fold_whichever_is_more() -> None:
    assert Spacing(16, 1.0).next_threshold(40) == 56
    assert Spacing(16, 4.0).next_threshold(16) == 64
    assert Spacing(16, 4.0).next_threshold(2) == 18


def test_a_recipe_sets_chunk_growth_and_a_bad_one_is_refused(recipe_file, registry) -> None:
    body = '[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:agg"\nstaircase = true\n'
    path = recipe_file(body + "chunk_growth = 1.5\n")
    path.write_text(path.read_text() + 'continuation = "assistant"\n')
    assert build(load(path), registry).aggregator.chunk_growth == 1.5
    bad = recipe_file(body + "chunk_growth = 0.5\n")
    with pytest.raises(ConfigError, match="chunk_growth"):
        load(bad)


def test_spacing_without_a_staircase_is_refused_not_ignored(recipe_file) -> None:
    with pytest.raises(ConfigError, match="set staircase = true"):
        Aggregator("fake:agg", chunk_growth=2)
    path = recipe_file(
        '[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:agg"\nchunk_tokens = 16\n'
    )
    with pytest.raises(ConfigError, match="set staircase = true"):
        build(load(path))
