"""Staircase with the options of the layers around it: each is applied, or refused when the
recipe loads with the fix — never silently dropped."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.test_staircase import ANSWER, PACE_S, PROPOSALS, references_of, run, script

from moa import Aggregator, MoA, ProposalLayer, ProviderConfig, Registry, RetryPolicy
from moa.call.request import Call
from moa.engine.budget import plan_call, worst_case
from moa.engine.options import as_messages
from moa.errors import BudgetExceededError, ConfigError
from moa.providers.base import Capabilities
from moa.recipes import build, load
from moa.testing import FakeUpstream, Reply

CONTINUES = Capabilities(continuation="assistant")


def continuing_registry(upstream: FakeUpstream) -> Registry:
    return Registry({"fake": ProviderConfig("fake", upstream.base_url, capabilities=CONTINUES)})


def staircase_recipe(recipe_file, body: str) -> Path:
    path: Path = recipe_file(body)
    path.write_text(path.read_text() + 'continuation = "assistant"\n')
    return path


def test_a_cluster_filter_on_the_last_layer_is_refused_at_load_with_the_fix(
    recipe_file, registry: Registry
) -> None:
    path = staircase_recipe(
        recipe_file,
        '[[layers]]\nmodels = ["fake:a", "fake:b", "fake:c"]\nfilter = "cluster"\n'
        '[aggregator]\nmodel = "fake:agg"\nstaircase = true\n',
    )
    with pytest.raises(ConfigError, match=r'filter = "cluster".*earlier layer.*staircase off'):
        build(load(path), registry)


@pytest.mark.parametrize("strategy", ["vote", "rank", "analysis", "select", "medoid"])
def test_a_strategy_that_is_not_one_synthesis_is_refused_at_load_with_the_fix(
    recipe_file, registry: Registry, strategy: str
) -> None:
    path = staircase_recipe(
        recipe_file,
        '[[layers]]\nmodels = ["fake:a", "fake:b"]\n'
        f'[aggregator]\nmodel = "fake:agg"\nstrategy = "{strategy}"\nstaircase = true\n',
    )
    with pytest.raises(ConfigError, match="strategy synthesize, or turn staircase off"):
        build(load(path), registry)


def test_a_cluster_filter_on_an_earlier_layer_is_accepted(recipe_file, registry: Registry) -> None:
    path = staircase_recipe(
        recipe_file,
        '[[layers]]\nmodels = ["fake:a", "fake:b", "fake:c"]\nfilter = "cluster"\n'
        '[[layers]]\nmodels = ["fake:d"]\n'
        '[aggregator]\nmodel = "fake:agg"\nstaircase = true\n',
    )
    mixture = build(load(path), registry)
    assert mixture.layers[0].filter == "cluster" and mixture.aggregator.staircase


async def test_a_layer_that_agrees_before_the_staircase_hands_its_answers_to_the_aggregator(
    upstream: FakeUpstream,
) -> None:
    for model in PROPOSALS:
        upstream.script(model, Reply("Paris", token_delay_s=PACE_S))
    upstream.script("agg", Reply("The capital is Paris.", token_delay_s=PACE_S))
    mixture = MoA(
        ProposalLayer(*(f"fake:{m}" for m in PROPOSALS), stop_when="agree"),
        ProposalLayer("fake:late"),
        Aggregator("fake:agg", staircase=True, chunk_tokens=5),
        registry=continuing_registry(upstream),
        retry=RetryPolicy(max_attempts=1),
    )
    shown, result = await run(mixture)

    assert upstream.requests_for("late") == []
    assert result.stopped_early is not None and "layer 2 skipped" in result.stopped_early
    (request,) = upstream.requests_for("agg")  # the answers are whole: one call, no steps
    assert references_of(request) == ["Paris"] * 3
    assert "".join(shown) == "The capital is Paris."


async def test_the_last_layers_quorum_ends_the_staircases_wait_for_a_straggler(
    upstream: FakeUpstream,
) -> None:
    script(upstream, p2=Reply(PROPOSALS["p2"], delay_s=5.0))
    mixture = MoA(
        ProposalLayer(*(f"fake:{m}" for m in PROPOSALS), min_proposals=2),
        Aggregator("fake:agg", staircase=True, chunk_tokens=5),
        registry=continuing_registry(upstream),
        retry=RetryPolicy(max_attempts=1),
    )
    shown, result = await run(mixture)

    assert "".join(shown) == ANSWER
    assert [c.status for c in result.proposals()] == ["ok", "ok", "cancelled"]
    last = references_of(upstream.requests_for("agg")[-1])
    assert last == [PROPOSALS["p0"], PROPOSALS["p1"]]


# Input is free and output costs $100/M: with max_tokens = 100 a proposer may cost $0.01; the
# staircase aggregator may take 100 // 25 + 1 = 5 steps of $0.01 each.
PRICED_STAIRCASE = """
[defaults]
max_tokens = 100
[[layers]]
models = [
  { model = "fake:p0", price = { input = 0, output = 100 } },
  { model = "fake:p1", price = { input = 0, output = 100 } },
  { model = "fake:p2", price = { input = 0, output = 100 } },
]
[aggregator]
model = "fake:agg"
price = { input = 0, output = 100 }
staircase = true
chunk_tokens = 25
"""


async def test_max_cost_usd_bounds_a_staircase_as_every_step_it_may_take(
    upstream: FakeUpstream, recipe_file, registry: Registry
) -> None:
    script(upstream)
    mixture = build(load(staircase_recipe(recipe_file, PRICED_STAIRCASE)), registry)

    with pytest.raises(BudgetExceededError, match="staircase aggregator") as refused:
        await mixture.arun("q", max_cost_usd=0.0799)
    assert refused.value.worst_case_usd == pytest.approx(0.03 + 5 * 0.01)
    assert upstream.requests == []  # neither the last layer nor the aggregator started
    assert await mixture.worst_case_usd("q") == pytest.approx(0.08)

    result = await mixture.arun("q", max_cost_usd=0.08)
    assert result.text == ANSWER
    await mixture.aclose()


async def test_the_staircase_worst_case_counts_the_resent_references_and_prefix(
    recipe_file, registry: Registry
) -> None:
    # Input priced too: each step re-sends 3 proposals at their ceiling and the answer so far.
    text = PRICED_STAIRCASE.replace("input = 0", "input = 100")
    staircase = build(load(staircase_recipe(recipe_file, text)), registry)
    whole = build(
        load(
            staircase_recipe(recipe_file, text.replace("staircase = true\nchunk_tokens = 25", ""))
        ),
        registry,
    )
    layer = whole.layers[0]
    calls = [Call(a, as_messages("q"), [], layer.prompt) for a in layer.agents]
    proposers = worst_case([await plan_call(whole.caller, c) for c in calls], whole.prices)

    stair_aggregator = await staircase.worst_case_usd("q") - proposers
    whole_aggregator = await whole.worst_case_usd("q") - proposers
    # 5 steps, each reading more than the whole-answer call: the answer so far comes on top.
    assert stair_aggregator > 5 * whole_aggregator > 0
