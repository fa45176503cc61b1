"""`medoid` picks the answer that agrees most with the others, however it is worded; few-shot
examples and base-model prompts are shaped as the local recipe needs."""

from __future__ import annotations

from moa import Agent, Aggregator, MoA, ProposalLayer, Registry
from moa.call.prompts import with_examples
from moa.providers.local.model import render_completion
from moa.strategies.medoid import gist, medoid
from moa.testing import FakeUpstream, Reply
from moa.types import Message

QUESTION = "What is the capital of Germany?"


def test_the_gist_drops_the_question_and_function_words() -> None:
    assert gist("The capital of Germany is Berlin.", QUESTION) == {"berlin"}
    assert gist("Berlin. It has been the capital since 1990.", QUESTION) == {"berlin"}
    assert gist("Twelve.", "How many months are in a year?") == {"12"}


def test_the_consensus_wins_over_a_differently_worded_minority() -> None:
    answers = ["Munich.", "The capital of Germany is Berlin.", "Berlin", "berlin!", "Bonn."]
    assert medoid(answers, QUESTION) == 1  # the first of the Berlin answers


def test_a_tie_goes_to_the_earliest_answer() -> None:
    assert medoid(["Paris.", "Lyon."], "What is the capital of France?") == 0


def test_examples_go_after_the_system_prompt_and_before_the_conversation() -> None:
    system = Message(role="system", content="Be brief.")
    user = Message(role="user", content="q")
    shaped = with_examples([system, user], [("ex q", "ex a")])
    assert [(m["role"], m["content"]) for m in shaped] == [
        ("system", "Be brief."),
        ("user", "ex q"),
        ("assistant", "ex a"),
        ("user", "q"),
    ]


def test_a_base_model_sees_a_question_and_answer_prompt() -> None:
    prompt = render_completion(
        [
            Message(role="user", content="What is the capital of Sweden?"),
            Message(role="assistant", content="Stockholm."),
            Message(role="user", content="Who wrote Hamlet?"),
        ]
    )
    assert prompt == "Q: What is the capital of Sweden?\nA: Stockholm.\n\nQ: Who wrote Hamlet?\nA:"


def test_a_medoid_run_makes_no_aggregator_call_and_streams_the_winner(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("The capital of Germany is Berlin."))
    upstream.script("b", Reply("Munich."))
    upstream.script("c", Reply("Berlin."))
    moa = MoA(
        ProposalLayer("fake:a", "fake:b", Agent("fake:c", examples=(("ex q", "ex a"),))),
        Aggregator("fake:agg", strategy="medoid"),
        registry=registry,
    )
    result = moa.run(QUESTION)
    assert result.text == "The capital of Germany is Berlin."
    assert upstream.requests_for("agg") == []
    sent = upstream.requests_for("c")[0]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert any("medoid" in note for note in result.notes)
