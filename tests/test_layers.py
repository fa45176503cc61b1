"""Layer semantics: who sees what, exactly as the reference MoA does it."""

from __future__ import annotations

from moa import (
    AGGREGATE_AND_SYNTHESIZE,
    Agent,
    Aggregator,
    MoA,
    ProposalLayer,
    ProviderConfig,
    Sampling,
)
from moa.call.prompts import fold_system, inject_references, place_system
from moa.providers.base import Capabilities
from moa.testing import FakeUpstream, Reply


def system_of(body: dict) -> str:
    return body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""


def test_layer_one_gets_the_conversation_as_given(upstream: FakeUpstream, make_moa) -> None:
    make_moa([["a", "b"]]).run("What is 2+2?")
    for model in ("a", "b"):
        (body,) = upstream.requests_for(model)
        assert body["messages"] == [{"role": "user", "content": "What is 2+2?"}]


def test_layer_k_sees_exactly_the_answers_of_layer_k_minus_one(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("a", Reply("A1"), Reply("A2"), Reply("A3"))
    upstream.script("b", Reply("B1"), Reply("B2"), Reply("B3"))
    make_moa([["a", "b"], ["a", "b"], ["a", "b"]]).run("q")

    second, third = upstream.requests_for("a")[1:]
    assert system_of(second) == AGGREGATE_AND_SYNTHESIZE + "\n1. A1\n2. B1"
    assert system_of(third) == AGGREGATE_AND_SYNTHESIZE + "\n1. A2\n2. B2"
    assert second["messages"][-1] == {"role": "user", "content": "q"}


def test_aggregator_sees_last_layer_and_the_user_prompt(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("a", Reply("first"), Reply("final-a"))
    upstream.script("b", Reply("first"), Reply("final-b"))
    result = make_moa([["a", "b"], ["a", "b"]], "agg").run("the question")

    (body,) = upstream.requests_for("agg")
    assert body["messages"] == [
        {"role": "system", "content": AGGREGATE_AND_SYNTHESIZE + "\n1. final-a\n2. final-b"},
        {"role": "user", "content": "the question"},
    ]
    assert result.text == "answer from agg"
    assert result.aggregator_model == "fake:agg"


def test_references_are_appended_to_an_existing_system_message(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("a", Reply("ref"))
    make_moa([["a"]]).run(
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "q"}]
    )
    (body,) = upstream.requests_for("agg")
    assert system_of(body) == "Be terse.\n\n" + AGGREGATE_AND_SYNTHESIZE + "\n1. ref"


def test_multi_turn_history_reaches_every_model_and_references_follow_the_last_turn(
    upstream: FakeUpstream, make_moa
) -> None:
    history = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ]
    make_moa([["a"]]).run(history)
    assert upstream.requests_for("a")[0]["messages"] == history
    agg = upstream.requests_for("agg")[0]["messages"]
    assert agg[1:] == history
    assert agg[0]["role"] == "system" and "1. answer from a" in agg[0]["content"]


def test_templates_without_a_system_role_get_the_references_in_the_first_user_turn(
    upstream: FakeUpstream, registry
) -> None:
    upstream.script("a", Reply("ref"))
    moa = MoA(
        ProposalLayer("fake:a"),
        Aggregator(Agent("fake:gemma", system_role=False)),
        registry=registry,
    )
    moa.run("q")
    (body,) = upstream.requests_for("gemma")
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"] == AGGREGATE_AND_SYNTHESIZE + "\n1. ref\n\nq"


def test_fold_system_keeps_later_turns_and_handles_no_user_turn() -> None:
    folded = fold_system(
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"},
        ]
    )
    assert folded == [
        {"role": "user", "content": "S\n\nu1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
    ]
    assert inject_references([{"role": "user", "content": "q"}], []) == [
        {"role": "user", "content": "q"}
    ]


def test_later_system_turns_join_the_turn_beside_them_unless_the_provider_takes_them() -> None:
    conversation = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u1"},
        {"role": "system", "content": "after u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "system", "content": "after a1"},
        {"role": "user", "content": "u2"},
        {"role": "system", "content": "last"},
    ]
    assert place_system(conversation) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "u1\n\n[system]\nafter u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "[system]\nafter a1\n\nu2\n\n[system]\nlast"},
    ]


def test_a_conversation_may_end_with_system_turns_after_its_user_turn(
    upstream: FakeUpstream, registry
) -> None:
    history = [
        {"role": "user", "content": "Name a colour."},
        {"role": "system", "content": "Answer in French."},
    ]
    registry.add(
        ProviderConfig("inplace", upstream.base_url, capabilities=Capabilities(system_turns=True))
    )
    moa = MoA(ProposalLayer("fake:a"), Aggregator("inplace:agg"), registry=registry)
    moa.run(history)
    # `fake` declares no system turns: joined to the user turn; `inplace` gets it in place.
    assert upstream.requests_for("a")[0]["messages"] == [
        {"role": "user", "content": "Name a colour.\n\n[system]\nAnswer in French."}
    ]
    sent = upstream.requests_for("agg")[0]["messages"]
    assert sent[1:] == history and sent[0]["role"] == "system"


def test_the_same_model_can_fill_a_layer_with_different_seeds(
    upstream: FakeUpstream, registry
) -> None:
    layer = ProposalLayer(
        Agent("fake:self", Sampling(temperature=0.3, seed=1)),
        Agent("fake:self", Sampling(temperature=0.9, seed=2)),
    )
    MoA(layer, Aggregator("fake:agg"), registry=registry).run("q")
    sent = sorted((r["seed"], r["temperature"]) for r in upstream.requests_for("self"))
    assert sent == [(1, 0.3), (2, 0.9)]


def test_run_overrides_win_over_agent_settings_which_win_over_defaults(
    upstream: FakeUpstream, registry
) -> None:
    moa = MoA(
        ProposalLayer(Agent("fake:a", Sampling(max_tokens=50)), "fake:b"),
        Aggregator("fake:agg"),
        registry=registry,
        defaults=Sampling(temperature=0.7, max_tokens=100),
    )
    moa.run("q", sampling=Sampling(temperature=0.0))
    (a,), (b,) = upstream.requests_for("a"), upstream.requests_for("b")
    assert (a["temperature"], a["max_tokens"]) == (0.0, 50)
    assert (b["temperature"], b["max_tokens"]) == (0.0, 100)


def test_per_model_system_prompt_leads_that_models_messages(
    upstream: FakeUpstream, registry
) -> None:
    moa = MoA(
        ProposalLayer(Agent("fake:a", system="You are a poet.")),
        Aggregator("fake:agg"),
        registry=registry,
    )
    moa.run("q")
    assert upstream.requests_for("a")[0]["messages"][0] == {
        "role": "system",
        "content": "You are a poet.",
    }
    assert "You are a poet." not in system_of(upstream.requests_for("agg")[0])


def test_the_trace_records_every_call_with_usage_and_totals(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("a", Reply("x", usage=(10, 3)))
    upstream.script("agg", Reply("final words here", usage=(40, 7)))
    result = make_moa([["a"]]).run("q")
    (proposal, final) = result.calls
    assert (proposal.layer, proposal.role, proposal.model, proposal.output) == (
        1,
        "proposer",
        "fake:a",
        "x",
    )
    assert (proposal.usage.input_tokens, proposal.usage.output_tokens) == (10, 3)
    assert (final.layer, final.role, final.output) == (2, "aggregator", "final words here")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (50, 10)
    assert result.to_dict()["usage"]["total_tokens"] == 60


def test_aggregator_sampling_reaches_only_the_aggregator(upstream: FakeUpstream, make_moa) -> None:
    make_moa([["a"]]).run("q", aggregator_sampling=Sampling(max_tokens=33))
    assert "max_tokens" not in upstream.requests_for("a")[0]
    assert upstream.requests_for("agg")[0]["max_tokens"] == 33
