"""Self-MoA samples, early stopping on agreement, the cluster filter, and their recipe keys."""

from __future__ import annotations

import json

import pytest

from moa import (
    AGGREGATE_AND_SYNTHESIZE,
    Agent,
    Aggregator,
    ConfigError,
    MoA,
    ProposalLayer,
    RecipeError,
    Registry,
    RetryPolicy,
    Sampling,
    recipes,
)
from moa.engine.cluster import outliers
from moa.engine.options import RunOptions
from moa.strategies.agreement import agreement, normalize
from moa.testing import FakeUpstream, Reply


def system_of(body: dict) -> str:
    return body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""


# -- samples (Self-MoA) ----------------------------------------------------------------------


def test_samples_fan_one_model_out_into_calls_with_distinct_seeds(
    upstream: FakeUpstream, registry: Registry
) -> None:
    layer = ProposalLayer(
        Agent("fake:self", Sampling(temperature=0.7), samples=3),
        Agent("fake:seeded", Sampling(seed=10), samples=2),
    )
    result = MoA(layer, Aggregator("fake:agg"), registry=registry).run("q")

    assert sorted(r["seed"] for r in upstream.requests_for("self")) == [1, 2, 3]
    assert {r["temperature"] for r in upstream.requests_for("self")} == {0.7}
    assert sorted(r["seed"] for r in upstream.requests_for("seeded")) == [10, 11]
    assert [(c.model, c.index) for c in result.proposals()] == [
        ("fake:self", 0),
        ("fake:self", 1),
        ("fake:self", 2),
        ("fake:seeded", 3),
        ("fake:seeded", 4),
    ]
    assert system_of(upstream.requests_for("agg")[0]).count("answer from") == 5


def test_samples_in_a_recipe(upstream: FakeUpstream, recipe_file) -> None:
    recipe = recipes.load(
        recipe_file(
            """
[[layers]]
models = [{ model = "fake:self", samples = 6, temperature = 0.7 }]
min_proposals = 6
[aggregator]
model = "fake:agg"
"""
        )
    )
    recipes.build(recipe).run("q")
    assert sorted(r["seed"] for r in upstream.requests_for("self")) == [1, 2, 3, 4, 5, 6]


def test_samples_of_one_model_are_labelled_by_number_and_the_settings_they_are_sent(
    registry: Registry,
) -> None:
    layer = ProposalLayer(
        Agent("fake:self", Sampling(temperature=0.0)),
        Agent("fake:self", samples=2),  # the run's temperature, seeds 1 and 2
        Agent("fake:twin"),
        Agent("fake:twin"),
        "fake:alone",
    )
    mixture = MoA(layer, ProposalLayer("fake:self"), Aggregator("fake:agg"), registry=registry)
    labels = mixture.labels(RunOptions.of(sampling=Sampling(temperature=0.7)))
    assert labels == {
        (1, 0): "fake:self #1 · T=0.7",  # the run's settings win over the slot's
        (1, 1): "fake:self #2 · T=0.7, seed 1",
        (1, 2): "fake:self #3 · T=0.7, seed 2",
        (1, 3): "fake:twin #1 · T=0.7",
        (1, 4): "fake:twin #2 · T=0.7",
        (1, 5): "fake:alone",
        (2, 0): "fake:self",  # numbered within its layer
    }


def test_samples_are_for_proposers() -> None:
    with pytest.raises(ConfigError, match="samples is for proposers"):
        Aggregator(Agent("fake:agg", samples=2))
    with pytest.raises(ConfigError, match="samples must be at least 1"):
        Agent("fake:a", samples=0)
    with pytest.raises(RecipeError, match="samples is for proposers"):
        recipes.parse('[aggregator]\nmodel = "fake:agg"\nsamples = 3')


# -- stop_when = "agree" ---------------------------------------------------------------------


def agreeing(upstream: FakeUpstream) -> None:
    upstream.script("a", Reply("Paris."))
    upstream.script("b", Reply("paris"))
    upstream.script("c", Reply("The answer is Lyon"))


def test_an_agreeing_layer_skips_the_remaining_layers(
    upstream: FakeUpstream, registry: Registry
) -> None:
    agreeing(upstream)
    moa = MoA(
        ProposalLayer("fake:a", "fake:b", "fake:c", stop_when="agree", agree=0.6),
        ProposalLayer("fake:later"),
        ProposalLayer("fake:latest"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )
    result = moa.run("q")

    assert upstream.requests_for("later") == [] and upstream.requests_for("latest") == []
    (body,) = upstream.requests_for("agg")
    assert (
        system_of(body) == AGGREGATE_AND_SYNTHESIZE + "\n1. Paris.\n2. paris\n3. The answer is Lyon"
    )
    assert result.stopped_early == "layer 1: 2 of 3 answers agree (67% >= 60%) — layers 2-3 skipped"
    assert result.to_dict()["stopped_early"] == result.stopped_early


def test_a_layer_short_of_the_share_goes_on(upstream: FakeUpstream, registry: Registry) -> None:
    agreeing(upstream)
    moa = MoA(
        ProposalLayer("fake:a", "fake:b", "fake:c", stop_when="agree", agree=0.7),
        ProposalLayer("fake:later"),
        Aggregator("fake:agg"),
        registry=registry,
    )
    result = moa.run("q")
    assert len(upstream.requests_for("later")) == 1
    assert result.stopped_early is None


def test_with_vote_an_agreeing_layer_skips_the_aggregator_too(
    upstream: FakeUpstream, registry: Registry
) -> None:
    agreeing(upstream)
    moa = MoA(
        ProposalLayer("fake:a", "fake:b", "fake:c", stop_when="agree"),
        ProposalLayer("fake:later"),
        Aggregator("fake:agg", strategy="vote"),
        registry=registry,
    )
    result = moa.run("q")
    assert upstream.requests_for("later") == [] and upstream.requests_for("agg") == []
    assert result.text == "Paris."
    assert result.stopped_early == (
        "layer 1: 2 of 3 answers agree (67% >= 60%) — layer 2 and the aggregator skipped"
    )
    assert [c.role for c in result.calls] == ["proposer"] * 3


def test_stop_when_in_a_recipe_is_validated(registry: Registry) -> None:
    body = '[aggregator]\nmodel = "fake:agg"\n[[layers]]\nmodels = ["fake:a"]\n'
    with pytest.raises(RecipeError, match="set stop_when too"):
        recipes.parse(body + "agree = 0.5")
    with pytest.raises(RecipeError, match="stop_when"):
        recipes.parse(body + 'stop_when = "converged"')
    with pytest.raises(RecipeError, match="agree"):
        recipes.parse(body + 'stop_when = "agree"\nagree = 1.5')
    recipe = recipes.parse(body + 'stop_when = "agree"\nfilter = "cluster"')
    layer = recipes.build(recipe, registry).layers[0]
    assert (layer.stop_when, layer.agree, layer.filter) == ("agree", 0.6, "cluster")


# -- vote's normalization --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Paris", "  paris. "),
        ("The Eiffel Tower", "eiffel tower"),
        ("an apple", "Apple!"),
        ("Twenty-one", "21"),
        ("one hundred and five", "105"),
        ("1,000", "one thousand"),
        ("3.50", "3.5"),
        ("It is 12 degrees", "it is twelve degrees"),
        ("Ｐａｒｉｓ", "paris"),  # full-width letters
    ],
)
def test_vote_normalization_treats_these_as_the_same_answer(a: str, b: str) -> None:
    assert normalize(a) == normalize(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("21", "12"), ("Paris", "Paris, Texas"), ("3.5", "35"), ("one", "won")],
)
def test_vote_normalization_keeps_these_apart(a: str, b: str) -> None:
    assert normalize(a) != normalize(b)


def test_agreement_counts_the_largest_group_and_reports_ties() -> None:
    found = agreement(["B", "a", "A.", "c", ""])  # "A" alone is an answer, not an article
    assert (found.count, found.total, found.winner, found.answer) == (2, 5, 1, "a")
    assert agreement(["x", "y"]).winner is None
    assert agreement(["", " "]).count == 0


# -- filter = "cluster" ----------------------------------------------------------------------

CONSISTENT = [
    "The capital of Australia is Canberra, a planned city chosen as a compromise.",
    "Canberra is the capital of Australia; it was built as a compromise between cities.",
    "Australia's capital is Canberra, which was purpose-built as the capital.",
    "The capital city of Australia is Canberra, in the Australian Capital Territory.",
]
DECEPTIVE = "Without any doubt the capital is Sydney, famous for its opera house and harbour."


def test_the_cluster_filter_drops_a_planted_outlier_and_records_it(
    upstream: FakeUpstream, registry: Registry
) -> None:
    names = ["a", "b", "liar", "c", "d"]
    for name, text in zip(names, [*CONSISTENT[:2], DECEPTIVE, *CONSISTENT[2:]], strict=True):
        upstream.script(name, Reply(text))
    moa = MoA(
        ProposalLayer(*(f"fake:{n}" for n in names), filter="cluster"),
        Aggregator("fake:agg"),
        registry=registry,
    )
    result = moa.run("q")

    (body,) = upstream.requests_for("agg")
    assert "Sydney" not in system_of(body)
    assert system_of(body).count("Canberra") == 4
    (liar,) = [c for c in result.calls if c.model == "fake:liar"]
    assert liar.ok and liar.dropped is not None and liar.dropped.startswith("cluster filter")
    assert "layer 1: dropped fake:liar #3 as an outlier" in result.notes


def test_the_cluster_filter_keeps_a_layer_that_agrees() -> None:
    assert outliers(CONSISTENT) == []


def test_the_cluster_filter_drops_at_most_a_minority_and_needs_three_answers() -> None:
    assert outliers(["Canberra", DECEPTIVE]) == []
    dropped = outliers(["a b c", "a b c", "x y z", "p q r", "m n o"])
    assert len(dropped) <= 2


def test_the_command_line_shows_why_a_run_stopped_early(
    upstream: FakeUpstream, recipe_file
) -> None:
    from tests.test_cli import moa as run_moa

    agreeing(upstream)
    recipe = recipe_file(
        '[[layers]]\nmodels = ["fake:a", "fake:b", "fake:c"]\nstop_when = "agree"\n'
        '[[layers]]\nmodels = ["fake:later"]\n'
        '[aggregator]\nmodel = "fake:agg"\nstrategy = "vote"\n'
    )
    done = run_moa("ask", "q", "--json", "-r", str(recipe))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["text"] == "Paris."
    assert data["stopped_early"].endswith("layer 2 and the aggregator skipped")
    assert data["notes"] == [
        "stop_when agree with vote: no aggregator call: answered with layer 1's proposal 1 "
        "(fake:a), verbatim"
    ]
    shown = run_moa("ask", "q", "-r", str(recipe))
    assert shown.stdout.strip() == "Paris."
    assert "layer 2 and the aggregator skipped" in shown.stderr
