"""Budgets bound what a strategy may spend, not one aggregator call: `analysis` writes an analysis
then the answer, `select` a choice then (unreadable) a synthesis, `rank` a ranking per proposer
then a synthesis, a Self-MoA `window` a synthesis per window. Each is refused before its first
call when only one call would fit the budget; `medoid`, which calls nothing, is not."""

from __future__ import annotations

import json

import pytest

from moa import recipes
from moa.errors import BudgetExceededError
from moa.testing import FakeUpstream, Reply

ONE_CALL_BUDGET = 0.01  # covers layer 1 (3 × 0.00105), not one aggregator call (≈ 0.2)


def recipe(strategy: str, proposers: int, extra: str = "") -> str:
    models = ", ".join(
        f'{{ model = "fake:p{i}", price = {{ input = 10.0, output = 10.0 }} }}'
        for i in range(proposers)
    )
    return f"""
[defaults]
max_tokens = 100
[retry]
max_attempts = 1
[[layers]]
models = [{models}]
[aggregator]
model = "fake:agg"
price = {{ input = 1000.0, output = 1000.0 }}
strategy = "{strategy}"
{extra}
"""


def script_proposers(upstream: FakeUpstream, proposers: int) -> None:
    for i in range(proposers):
        upstream.script(f"p{i}", Reply(f"answer number {i} is different"))


async def one_call_refusal(registry, proposers: int) -> BudgetExceededError:
    """What one synthesis costs at most over the same proposals: the old, one-call estimate."""
    mixture = recipes.build(recipes.parse(recipe("synthesize", proposers)), registry)
    with pytest.raises(BudgetExceededError) as refused:
        await mixture.arun("q", max_cost_usd=ONE_CALL_BUDGET)
    assert refused.value.stage.startswith("the aggregator")
    return refused.value


# (strategy, proposers, recipe lines, calls on its dearest path, the aggregator's replies on it)
MULTI_CALL = [
    ("analysis", 2, "", 2, [Reply("not json"), Reply("answer")]),
    ("select", 2, "", 2, [Reply("I cannot choose"), Reply("answer")]),
    ("rank", 3, "", 4, [Reply("answer")]),  # 3 rankings (by the proposers), 1 synthesis
    ("synthesize", 3, "window = 2", 2, [Reply("S1"), Reply("answer")]),
]


@pytest.mark.parametrize(
    ("strategy", "proposers", "extra", "calls", "replies"),
    MULTI_CALL,
    ids=["analysis", "select", "rank", "window"],
)
async def test_a_budget_that_fits_one_call_refuses_a_strategy_that_makes_more(
    upstream: FakeUpstream, registry, strategy, proposers, extra, calls, replies
) -> None:
    script_proposers(upstream, proposers)
    one_call = await one_call_refusal(registry, proposers)
    upstream.reset()
    script_proposers(upstream, proposers)
    mixture = recipes.build(recipes.parse(recipe(strategy, proposers, extra)), registry)
    just_above = one_call.spent_usd + one_call.worst_case_usd * 1.001
    with pytest.raises(BudgetExceededError) as refused:
        await mixture.arun("q", max_cost_usd=just_above)
    s = "s" if calls > 1 else ""
    assert refused.value.stage == f"the aggregator ({strategy}, {calls} call{s})"
    assert refused.value.worst_case_usd > one_call.worst_case_usd * 1.001
    # Before any of its calls: the aggregator's, and (rank) the proposers' rankings.

    assert [len(upstream.requests_for(f"p{i}")) for i in range(proposers)] == [1] * proposers

    # With room for the whole worst case, its dearest path runs: as many calls as counted.
    upstream.reset()
    script_proposers(upstream, proposers)
    upstream.script("agg", *replies)
    enough = refused.value.spent_usd + refused.value.worst_case_usd
    result = await mixture.arun("q", max_cost_usd=enough)
    assert len([c for c in result.calls if c.role != "proposer"]) == calls


async def test_a_strategy_that_calls_nothing_needs_no_room_for_an_aggregator_call(
    upstream: FakeUpstream, registry
) -> None:
    script_proposers(upstream, 3)
    mixture = recipes.build(recipes.parse(recipe("medoid", 3)), registry)
    result = await mixture.arun("q", max_cost_usd=ONE_CALL_BUDGET)
    assert result.text.startswith("answer number")


async def test_n_answers_are_n_times_the_strategy(upstream: FakeUpstream, registry) -> None:
    from moa.types import Answering

    script_proposers(upstream, 2)
    mixture = recipes.build(recipes.parse(recipe("analysis", 2)), registry)
    with pytest.raises(BudgetExceededError) as refused:
        await mixture.arun("q", max_cost_usd=ONE_CALL_BUDGET, answering=Answering(n=3))
    assert refused.value.stage == "the aggregator (analysis, 6 calls)"


@pytest.mark.parametrize(("strategy", "proposers", "extra", "calls", "replies"), MULTI_CALL)
async def test_a_batch_bounds_a_whole_run_by_its_strategy_too(
    registry, strategy, proposers, extra, calls, replies
) -> None:
    """`moa batch --budget` prices a prompt before it starts, with the same steps."""
    one = recipes.build(recipes.parse(recipe("synthesize", proposers)), registry)
    many = recipes.build(recipes.parse(recipe(strategy, proposers, extra)), registry)
    assert await many.worst_case_usd("q") > await one.worst_case_usd("q")


class FirstProposal:
    """A third party's strategy written before budgets asked strategies for their worst case."""

    name = "first"

    async def aggregate(self, stage):  # type: ignore[no-untyped-def]
        from moa.strategies import replay

        for event in replay(stage, stage.proposals[0].output, stage.proposals[0].model):
            yield event


async def test_a_strategy_that_cannot_say_what_it_spends_runs_but_not_under_a_budget(
    upstream: FakeUpstream, registry
) -> None:
    from moa import Aggregator, MoA, ProposalLayer
    from moa.errors import ConfigError
    from moa.pricing import Price, PriceBook

    script_proposers(upstream, 2)
    prices = PriceBook({"fake:p0": Price(1.0, 1.0), "fake:p1": Price(1.0, 1.0)})
    mixture = MoA(
        ProposalLayer("fake:p0", "fake:p1"),
        Aggregator("fake:agg", strategy=FirstProposal()),  # type: ignore[arg-type]
        registry=registry,
        prices=prices,
    )
    assert (await mixture.arun("q")).text == "answer number 0 is different"
    upstream.reset()
    with pytest.raises(ConfigError, match=r"strategy 'first' does not say what its calls may cost"):
        await mixture.arun("q", max_cost_usd=1.0)
    assert upstream.requests == []  # refused before the proposers spent anything


async def test_the_tools_an_app_attaches_are_priced_as_prompt_tokens(
    upstream: FakeUpstream,
) -> None:
    """Open WebUI attaches dozens of tool schemas to every message; they are prompt tokens the
    aggregator is sent, so the worst case counts them."""
    from moa import Aggregator, MoA, ProposalLayer, ProviderConfig, Registry
    from moa.pricing import Price, PriceBook
    from moa.providers.base import Capabilities
    from moa.tokens import estimate_tokens
    from moa.types import Answering, Sampling, Tools

    script_proposers(upstream, 2)
    registry = Registry(
        {"fake": ProviderConfig("fake", upstream.base_url, capabilities=Capabilities(tools=True))},
        env={},
    )
    price = Price(10.0, 10.0)
    mixture = MoA(
        ProposalLayer("fake:p0", "fake:p1"),
        Aggregator("fake:agg"),
        registry=registry,
        prices=PriceBook({"fake:p0": price, "fake:p1": price, "fake:agg": Price(1000.0, 1000.0)}),
        defaults=Sampling(max_tokens=100),
    )
    specs = tuple(
        {"type": "function", "function": {"name": f"tool_{i}", "description": "x" * 300}}
        for i in range(30)
    )

    async def refused(answering: Answering) -> float:
        upstream.reset()
        script_proposers(upstream, 2)
        with pytest.raises(BudgetExceededError) as caught:
            await mixture.arun("q", max_cost_usd=ONE_CALL_BUDGET, answering=answering)
        assert caught.value.stage.startswith("the aggregator")
        return caught.value.worst_case_usd

    plain = await refused(Answering())
    with_tools = await refused(Answering(tools=Tools(specs, "required")))
    schema_tokens = estimate_tokens(json.dumps(list(specs)))
    assert with_tools - plain == pytest.approx(schema_tokens * 1000.0 / 1e6)
