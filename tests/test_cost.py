"""What runs cost: reported costs win, recipe prices and the catalogue otherwise, local models
are free, unknown prices stay unknown; and budgets refuse a stage before spending on it."""

from __future__ import annotations

import pytest

from moa import recipes
from moa.engine.budget import Budget, PlannedCall
from moa.errors import BudgetExceededError, ConfigError, RecipeError
from moa.pricing import Price, PriceBook, call_cost, format_cost, price_result
from moa.testing import FakeUpstream, Reply
from moa.trace import CallRecord, Result
from moa.types import Usage

PRICED = """
[defaults]
max_tokens = 1000
[[layers]]
models = [
  { model = "fake:a", price = { input = 10.0, output = 20.0 } },
  { model = "fake:b", price = { input = 10.0, output = 20.0 } },
]
[aggregator]
model = "fake:agg"
price = { input = 50.0, output = 100.0 }
"""


def record(model: str, usage: Usage) -> CallRecord:
    return CallRecord(layer=1, index=0, model=model, role="proposer", usage=usage)


# -- one call ------------------------------------------------------------------------------


def test_a_recipe_price_is_usd_per_million_tokens() -> None:
    # 1000 × $2/M + 500 × $10/M = $0.002 + $0.005
    cost = call_cost("fake", "m", Usage(1000, 500), override=Price(input=2.0, output=10.0))
    assert cost == pytest.approx(0.007)


def test_a_reported_cost_wins_over_the_recipe_price() -> None:
    cost = call_cost("fake", "m", Usage(1000, 500), reported=0.25, override=Price(2.0, 10.0))
    assert cost == 0.25


def test_the_catalogue_prices_known_hosted_models() -> None:
    # gpt-4o at $2.50/M in, $10/M out: 1000 × 2.5/M + 100 × 10/M
    assert call_cost("openai", "gpt-4o", Usage(1000, 100)) == pytest.approx(0.0035)


def test_a_declared_provider_is_found_in_the_catalogue_by_its_endpoint() -> None:
    # "mine" is not a provider the catalogue knows, but its base URL is OpenAI's.
    cost = call_cost("mine", "gpt-4o", Usage(1000, 100), base_url="https://api.openai.com/v1")
    assert cost == pytest.approx(0.0035)


def test_local_models_are_free_and_unknown_models_are_unknown_not_free() -> None:
    assert call_cost("local", "smollm2", Usage(500, 500)) == 0.0
    assert call_cost("ollama", "llama3.2", Usage(500, 500)) == 0.0
    assert call_cost("fake", "agg", Usage(500, 500)) is None
    assert call_cost("together", "no-such-model-anywhere", Usage(500, 500)) is None


def test_a_call_that_used_no_tokens_cost_nothing_even_at_an_unknown_price() -> None:
    # A cache hit, or a call refused before answering.
    assert call_cost("fake", "agg", Usage(0, 0)) == 0.0


# -- a run ---------------------------------------------------------------------------------


def test_a_run_costs_the_sum_of_its_calls() -> None:
    book = PriceBook({"fake:a": Price(10.0, 20.0), "fake:agg": Price(50.0, 100.0)})
    result = Result(calls=[record("fake:a", Usage(100, 50)), record("fake:agg", Usage(200, 10))])
    price_result(result, book)
    # (100×10 + 50×20)/1e6 = 0.002; (200×50 + 10×100)/1e6 = 0.011
    assert [c.cost_usd for c in result.calls] == pytest.approx([0.002, 0.011])
    assert result.cost_usd == pytest.approx(0.013)
    assert format_cost(result) == "$0.0130"


def test_one_unpriced_call_makes_the_total_unknown_and_the_summary_says_which() -> None:
    book = PriceBook({"fake:a": Price(10.0, 20.0)})
    result = Result(calls=[record("fake:a", Usage(100, 50)), record("fake:agg", Usage(200, 10))])
    price_result(result, book)
    assert result.cost_usd is None
    assert result.known_cost_usd == pytest.approx(0.002)
    assert format_cost(result) == "cost unknown ($0.002 priced, no price for fake:agg)"
    assert result.to_dict()["cost_usd"] is None
    assert [c["cost_usd"] for c in result.to_dict()["calls"]] == [pytest.approx(0.002), None]


async def test_a_run_through_the_engine_is_priced_and_a_reported_cost_wins(
    upstream: FakeUpstream, registry
) -> None:
    upstream.script("a", Reply("A", usage=(100, 50)))
    upstream.script("b", Reply("B", usage=(100, 50), cost=0.5))  # OpenRouter-style usage.cost
    upstream.script("agg", Reply("final", usage=(200, 10)))
    mixture = recipes.build(recipes.parse(PRICED), registry)
    result = await mixture.arun("hi")
    assert [c.cost_usd for c in result.calls] == pytest.approx([0.002, 0.5, 0.011])
    assert result.cost_usd == pytest.approx(0.513)


async def test_the_streamed_aggregator_passes_its_reported_cost_through(
    upstream: FakeUpstream, registry
) -> None:
    upstream.script("agg", Reply("final answer", usage=(200, 10), cost=0.125))
    mixture = recipes.build(recipes.parse('[aggregator]\nmodel = "fake:agg"\n'), registry)
    result = await mixture.arun("hi")
    assert result.cost_usd == 0.125


def test_a_recipe_may_not_give_one_model_two_prices() -> None:
    text = """
[[layers]]
models = [{ model = "fake:a", price = { input = 1, output = 1 } }]
[aggregator]
model = "fake:a"
price = { input = 2, output = 2 }
"""
    with pytest.raises(RecipeError, match="two different prices"):
        recipes.price_book(recipes.parse(text))


# -- budgets -------------------------------------------------------------------------------


def test_the_worst_case_prices_every_planned_call_at_its_max_tokens() -> None:
    budget = Budget(0.014, PriceBook({"x:m": Price(2.0, 10.0)}))
    calls = [PlannedCall("x:m", 1000, 500)] * 2
    # each (1000×2 + 500×10)/1e6 = 0.007
    assert budget.worst_case(calls) == pytest.approx(0.014)
    budget.check("layer 1", calls, Result())  # exactly the budget: allowed
    with pytest.raises(BudgetExceededError) as refused:
        Budget(0.0139, budget.prices).check("layer 1", calls, Result())
    assert refused.value.worst_case_usd == pytest.approx(0.014)
    assert "max_cost_usd" in str(refused.value) and "layer 1" in str(refused.value)


def test_what_was_spent_counts_against_the_budget() -> None:
    book = PriceBook({"x:m": Price(2.0, 10.0)})
    spent = Result(calls=[record("x:m", Usage(1000, 500))])  # 0.007
    with pytest.raises(BudgetExceededError) as refused:
        Budget(0.01, book).check("the aggregator", [PlannedCall("x:m", 1000, 500)], spent)
    assert refused.value.spent_usd == pytest.approx(0.007)


def test_a_budget_cannot_bound_a_model_without_a_price() -> None:
    with pytest.raises(ConfigError, match=r"fake:agg has no known price.*price = "):
        Budget(1.0).check("the aggregator", [PlannedCall("fake:agg", 10, 10)], Result())


async def test_a_layer_that_could_pass_the_budget_is_refused_before_any_of_its_calls(
    upstream: FakeUpstream, registry
) -> None:
    mixture = recipes.build(recipes.parse(PRICED), registry)
    # Layer 1: each proposer sees "hi" (5 estimated tokens: 1 + 4 for the role) and may write
    # 1000: (5×10 + 1000×20)/1e6 = 0.02005, twice = 0.0401.
    with pytest.raises(BudgetExceededError) as refused:
        await mixture.arun("hi", max_cost_usd=0.04)
    assert refused.value.worst_case_usd == pytest.approx(0.0401)
    assert upstream.requests == []
    # Exactly enough for layer 1's worst case: it runs (and the aggregator is refused).
    with pytest.raises(
        BudgetExceededError, match=r"the aggregator \(synthesize, 1 call\) could cost"
    ):
        await mixture.arun("hi", max_cost_usd=0.0401)
    assert len(upstream.requests_for("a")) == len(upstream.requests_for("b")) == 1


async def test_the_aggregator_is_refused_when_spent_plus_its_worst_case_would_pass(
    upstream: FakeUpstream, registry
) -> None:
    upstream.script("a", Reply("A", usage=(10, 3)))
    upstream.script("b", Reply("B", usage=(10, 3)))
    mixture = recipes.build(recipes.parse(PRICED), registry)
    # Layer 1's worst case (0.0401) fits; the aggregator may write 1000 tokens at $100/M
    # (0.1) on top of what layer 1 spent, 2 × (10×10 + 3×20)/1e6 = 0.00032.
    with pytest.raises(BudgetExceededError) as refused:
        await mixture.arun("hi", max_cost_usd=0.06)
    assert refused.value.spent_usd == pytest.approx(0.00032)
    assert refused.value.worst_case_usd > 0.1
    assert upstream.requests_for("agg") == []
    assert len(upstream.requests) == 2
    assert refused.value.result is not None and refused.value.result.cost_usd == pytest.approx(
        0.00032
    )


async def test_the_recipe_budget_applies_when_the_run_sets_none(
    upstream: FakeUpstream, registry
) -> None:
    mixture = recipes.build(recipes.parse("max_cost_usd = 0.01\n" + PRICED), registry)
    with pytest.raises(BudgetExceededError, match=r"budget of \$0.01"):
        await mixture.arun("hi")
    assert upstream.requests == []


# -- moa batch --budget ----------------------------------------------------------------------

# Input is free and output costs $100/M: with max_tokens = 100 each call may cost at most
# 100 × 100/1e6 = $0.01, so one prompt (two proposers and the aggregator) at most $0.03.
BATCH_RECIPE = """
[defaults]
max_tokens = 100
[[layers]]
models = [
  { model = "fake:p1", price = { input = 0, output = 100 } },
  { model = "fake:p2", price = { input = 0, output = 100 } },
]
[aggregator]
model = "fake:agg"
price = { input = 0, output = 100 }
"""


def script_reported_costs(upstream: FakeUpstream) -> None:
    # Each call reports $0.005 spent: $0.015 a prompt.
    for model in ("p1", "p2", "agg"):
        upstream.script(model, Reply(f"from {model}", usage=(5, 2), cost=0.005))


def run_batch(recipe, tmp_path, *options: str):
    from typer.testing import CliRunner

    from moa.cli.app import app

    args = ["batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl")]
    args += ["-r", str(recipe), "--no-cache", "-q", *options]
    return CliRunner().invoke(app, args)


def batch_input(tmp_path, n: int) -> None:
    import json

    lines = [json.dumps({"id": f"q{i}", "prompt": f"prompt {i}"}) for i in range(n)]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")


def done_ids(tmp_path) -> list[str]:
    import json

    text = (tmp_path / "out.jsonl").read_text()
    return [json.loads(line)["id"] for line in text.splitlines()]


def test_batch_stops_starting_prompts_at_the_budget_and_a_rerun_continues(
    upstream: FakeUpstream, recipe_file, tmp_path
) -> None:
    script_reported_costs(upstream)
    batch_input(tmp_path, 5)
    recipe = recipe_file(BATCH_RECIPE)
    # $0.05: q0 may start (0 + 0.03), q1 too (0.015 spent + 0.03), q2 not (0.03 + 0.03).
    first = run_batch(recipe, tmp_path, "--budget", "0.05", "-c", "1")
    assert first.exit_code == 1
    assert "budget of $0.0500 reached: 2 of 5 done" in first.output
    assert "$0.0300 spent" in first.output and "3 not started" in first.output
    assert done_ids(tmp_path) == ["q0", "q1"]
    assert len(upstream.requests_for("agg")) == 2

    second = run_batch(recipe, tmp_path, "--budget", "0.05", "-c", "1")
    assert "4 of 5 done" in second.output
    third = run_batch(recipe, tmp_path, "--budget", "0.05", "-c", "1")
    assert third.exit_code == 0, third.output
    assert done_ids(tmp_path) == ["q0", "q1", "q2", "q3", "q4"]
    assert len(upstream.requests_for("agg")) == 5


def test_batch_counts_the_worst_case_of_prompts_in_flight(
    upstream: FakeUpstream, recipe_file, tmp_path
) -> None:
    script_reported_costs(upstream)
    batch_input(tmp_path, 4)
    # Two at a time: q0 reserves $0.03, and q1's $0.03 on top would pass $0.05 before q0 has
    # spent anything — so q1 waits for a rerun.
    result = run_batch(recipe_file(BATCH_RECIPE), tmp_path, "--budget", "0.05", "-c", "2")
    assert "1 of 4 done" in result.output
    assert done_ids(tmp_path) == ["q0"]


def test_batch_summary_and_records_carry_the_cost(
    upstream: FakeUpstream, recipe_file, tmp_path
) -> None:
    import json

    script_reported_costs(upstream)
    batch_input(tmp_path, 2)
    result = run_batch(recipe_file(BATCH_RECIPE), tmp_path)
    assert result.exit_code == 0, result.output
    assert "$0.0300" in result.output  # 2 prompts × 3 calls × $0.005
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert first["trace"]["cost_usd"] == pytest.approx(0.015)


# -- moa ask -------------------------------------------------------------------------------


def ask(recipe, *options: str):
    from typer.testing import CliRunner

    from moa.cli.app import app

    return CliRunner().invoke(app, ["ask", "hi", "-r", str(recipe), *options])


def test_ask_prints_the_cost_on_its_summary_line_and_in_json(
    upstream: FakeUpstream, recipe_file
) -> None:
    import json

    script_reported_costs(upstream)
    recipe = recipe_file(BATCH_RECIPE)
    shown = ask(recipe)
    assert shown.exit_code == 0, shown.output
    assert "3 calls · 15 in / 6 out tokens · $0.0150 ·" in shown.output
    data = json.loads(ask(recipe, "--json").stdout)
    assert data["cost_usd"] == pytest.approx(0.015)
    assert [c["cost_usd"] for c in data["calls"]] == [0.005, 0.005, 0.005]


def test_ask_says_cost_unknown_rather_than_zero(upstream: FakeUpstream, recipe_file) -> None:
    shown = ask(recipe_file('[aggregator]\nmodel = "fake:agg"\n'))
    assert "cost unknown (no price for fake:agg)" in shown.output
    assert "$0" not in shown.output


def test_ask_max_cost_refuses_before_any_call_and_names_the_knob(
    upstream: FakeUpstream, recipe_file
) -> None:
    # One prompt may cost $0.03 at most (see BATCH_RECIPE); layer 1 alone up to $0.02.
    refused = ask(recipe_file(BATCH_RECIPE), "--max-cost", "0.015")
    assert refused.exit_code == 1
    assert "budget of $0.015 (max_cost_usd) would be exceeded: layer 1" in refused.output
    assert "--max-cost" in refused.output
    assert upstream.requests == []
