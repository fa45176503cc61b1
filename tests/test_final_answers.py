"""Strategies that read reasoning: vote and medoid compare answers' final results (an
`answer_pattern`, else the last "Answer: …" line, else the last number), and an adaptive layer
draws its samples in rounds until the leading final result cannot be overtaken."""

from __future__ import annotations

from moa import recipes
from moa.strategies.final import final_result
from moa.testing import FakeUpstream, Reply


def test_the_final_result_is_the_answer_line_else_the_last_number() -> None:
    steps = "3 trays of 7 is 21, less 20 leaves 1.\nAnswer: 1 cookie"
    assert final_result(steps).key == "1"  # type: ignore[union-attr]
    assert final_result("21 - 12 - 8 = 1").key == "1"  # type: ignore[union-attr]
    assert final_result("no number here") is None
    boxed = r"so the total is \boxed{42}, not 41"
    assert final_result(boxed, r"\\boxed\{(\d+)\}").key == "42"  # type: ignore[union-attr]


VOTE = """
[[layers]]
models = ["fake:a", "fake:b", "fake:c"]
[aggregator]
model = "fake:agg"
strategy = "vote"
"""


def test_vote_counts_final_results_not_whole_texts(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("a", Reply("Two and two make four.\nAnswer: 4"))
    upstream.script("b", Reply("2 + 2 = 4, so\nAnswer: 4"))
    upstream.script("c", Reply("I think it is\nAnswer: 5"))
    mixture = recipes.build(recipes.load(recipe_file(VOTE)))
    result = mixture.run("What is 2 + 2?")
    assert result.text.endswith("Answer: 4")  # a majority only by final result
    assert upstream.requests_for("agg") == []


def test_a_final_line_reply_is_the_chosen_proposal_cut_to_its_result(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("a", Reply("Two and two make four.\nAnswer: 4"))
    upstream.script("b", Reply("I think it is\nAnswer: 5"))
    upstream.script("c", Reply("2 + 2 = 4, so\nAnswer: 4"))
    recipe = VOTE.replace('strategy = "vote"', 'strategy = "vote"\nreply = "final_line"')
    result = recipes.build(recipes.load(recipe_file(recipe))).run("What is 2 + 2?")
    assert result.text == "Answer: 4"
    why = "vote: 2 of 3 answers agree ('4')"
    assert [c.chosen for c in result.calls] == [why, None, None]
    assert f"{why}: answered with the final line of layer 1's proposal 1 (fake:a)" in result.notes


ADAPTIVE = """
[[layers]]
adaptive = true
first_round = 3
round_size = 1
models = [{model = "fake:p", samples = 6}]
[aggregator]
model = "fake:agg"
strategy = "medoid"
"""


def test_an_easy_question_stops_after_the_first_round(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("p", Reply("steps…\nAnswer: 7"))
    result = recipes.build(recipes.load(recipe_file(ADAPTIVE))).run("q")
    assert len(result.proposals()) == 3
    (note,) = [n for n in result.notes if "adaptive sampling" in n]
    assert "drew 3 of 6 calls in 1 round" in note and "3 of 3 answers say '7'" in note


def test_a_split_question_draws_more_rounds(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script(
        "p",
        Reply("Answer: 7"),
        Reply("Answer: 8"),
        Reply("Answer: 9"),
        Reply("Answer: 7"),
        Reply("Answer: 7"),
        Reply("Answer: 7"),
    )
    result = recipes.build(recipes.load(recipe_file(ADAPTIVE))).run("q")
    drawn = len(result.proposals())
    assert 3 < drawn <= 6
    assert result.text == "Answer: 7"
