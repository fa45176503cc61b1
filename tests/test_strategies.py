"""Aggregation strategies against the fake upstream: what each call received, how many calls
were made, what streamed, and what the trace says."""

from __future__ import annotations

import json

import pytest

from moa import (
    AGGREGATE_AND_SYNTHESIZE,
    Aggregator,
    ConfigError,
    Done,
    MoA,
    ProposalLayer,
    ProviderConfig,
    Registry,
    RetryPolicy,
    Token,
    strategies,
)
from moa.providers.base import Capabilities
from moa.strategies.analysis import ANALYSIS_PROMPT, FIELDS, parse_analysis
from moa.strategies.rank import RANK_INSTRUCTION, RANK_PROMPT, mean_ranks, parse_ranking
from moa.strategies.select import SELECT_PROMPT, parse_choice
from moa.testing import FakeUpstream, Reply


def mixture(registry: Registry, proposers: list[str], **aggregator: object) -> MoA:
    return MoA(
        ProposalLayer(*(f"fake:{m}" for m in proposers)),
        Aggregator("fake:agg", **aggregator),  # type: ignore[arg-type]
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )


def streamed(moa: MoA, prompt: str = "q") -> tuple[str, list[object]]:
    async def collect() -> list[object]:
        return [e async for e in moa.stream(prompt)]

    import asyncio

    events = asyncio.run(collect())
    return "".join(e.text for e in events if isinstance(e, Token)), events


def system_of(body: dict) -> str:
    return body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""


# -- analysis --------------------------------------------------------------------------------

ANALYSIS = {
    "consensus": ["Paris is the capital"],
    "contradictions": ["b says Lyon"],
    "partial_coverage": [],
    "unique_insights": ["a mentions the Seine"],
    "blind_spots": ["population"],
}


def test_analysis_asks_for_json_then_streams_an_answer_written_from_it(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("Paris, on the Seine"))
    upstream.script("b", Reply("Lyon"))
    upstream.script(
        "agg", Reply("Sure: " + json.dumps(ANALYSIS) + " done"), Reply("Paris is the capital.")
    )
    text, events = streamed(mixture(registry, ["a", "b"], strategy="analysis"))

    first, second = upstream.requests_for("agg")
    assert first.get("stream") is not True  # the analysis is one whole answer
    assert system_of(first) == ANALYSIS_PROMPT + "\n1. Paris, on the Seine\n2. Lyon"
    assert "response_format" not in first  # the fake provider declares no json_schema
    assert second["stream"] is True
    assert '"unique_insights": [\n  "a mentions the Seine"\n ]' in system_of(second)
    assert system_of(second).endswith("Responses from models:\n1. Paris, on the Seine\n2. Lyon")
    assert text == "Paris is the capital."

    result = events[-1].result  # type: ignore[attr-defined]
    (analyst,) = [c for c in result.calls if c.role == "analyst"]
    assert analyst.data == ANALYSIS
    assert analyst.output.startswith("Sure: {")
    assert [c.role for c in result.calls] == ["proposer", "proposer", "analyst", "aggregator"]


def test_analysis_sends_a_json_schema_where_the_provider_declares_it(
    upstream: FakeUpstream,
) -> None:
    config = ProviderConfig("fake", upstream.base_url, capabilities=Capabilities(json_schema=True))
    upstream.script("agg", Reply(json.dumps(ANALYSIS)), Reply("final"))
    mixture(Registry({"fake": config}, env={}), ["a", "b"], strategy="analysis").run("q")

    first, second = upstream.requests_for("agg")
    schema = first["response_format"]["json_schema"]["schema"]
    assert first["response_format"]["type"] == "json_schema"
    assert sorted(schema["required"]) == sorted(FIELDS)
    assert "response_format" not in second  # the answer itself is free text


def test_analysis_that_is_not_json_is_passed_on_as_text_and_noted(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("they mostly agree on Paris"), Reply("final"))
    result = mixture(registry, ["a", "b"], strategy="analysis").run("q")

    assert "Analysis:\nthey mostly agree on Paris\n" in system_of(upstream.requests_for("agg")[1])
    assert result.text == "final"
    assert any("no JSON object" in n for n in result.notes)


def test_analysis_parsing_is_lenient() -> None:
    assert parse_analysis('{"consensus": "one point", "extra": 1}') == {
        "consensus": ["one point"],
        "contradictions": [],
        "partial_coverage": [],
        "unique_insights": [],
        "blind_spots": [],
    }
    assert parse_analysis('```json\n{"blind_spots": [1, "x"]}\n```')["blind_spots"] == ["1", "x"]
    assert parse_analysis("no {json here} at all") is None
    assert parse_analysis('[1] then {"consensus": []}')["consensus"] == []


# -- select ----------------------------------------------------------------------------------


def test_select_makes_one_short_call_and_streams_the_chosen_proposal_verbatim(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("Canberra."))
    upstream.script("b", Reply("Sydney, the  largest city."))
    upstream.script("c", Reply("Canberra"))
    upstream.script("agg", Reply("Response 3"))
    text, events = streamed(mixture(registry, ["a", "b", "c"], strategy="select"))

    (body,) = upstream.requests_for("agg")
    assert body.get("stream") is not True and body["max_tokens"] == 16
    assert (
        system_of(body)
        == SELECT_PROMPT + "\n1. Canberra.\n2. Sydney, the  largest city.\n3. Canberra"
    )
    assert body["messages"][-1]["content"].startswith("q\n\nWhich response is the most consistent")
    assert text == "Canberra"
    result = events[-1].result  # type: ignore[attr-defined]
    assert result.text == "Canberra" and result.aggregator_model == "fake:c"
    (selector,) = [c for c in result.calls if c.role == "selector"]
    assert selector.data == {"choice": 3}


def test_select_streams_the_answer_in_pieces_that_rebuild_it_exactly(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("line one\n  line two "))
    upstream.script("agg", Reply("1"))
    text, events = streamed(mixture(registry, ["a", "b"], strategy="select"))
    assert text == "line one\n  line two "
    assert len([e for e in events if isinstance(e, Token)]) == 5


def test_select_falls_back_to_synthesize_when_the_choice_is_unreadable(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("the first one"), Reply("synthesized"))
    text, events = streamed(mixture(registry, ["a", "b"], strategy="select"))
    result = events[-1].result  # type: ignore[attr-defined]

    selector, final = upstream.requests_for("agg")
    assert system_of(selector).startswith(SELECT_PROMPT)
    assert system_of(final).startswith(AGGREGATE_AND_SYNTHESIZE)
    assert final["stream"] is True
    assert text == result.text == "synthesized"
    assert "select: no response number in its reply — synthesized instead" in result.notes


def test_select_reads_the_first_valid_number() -> None:
    assert parse_choice("Response 2.", 3) == 2
    assert parse_choice("The 7th? No: 3", 3) == 3
    assert parse_choice("none", 3) is None
    assert parse_choice("0", 3) is None


# -- rank ------------------------------------------------------------------------------------


def test_rank_asks_each_proposer_to_rank_the_others_and_synthesizes_the_top_k(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("A"), Reply("thoughts\nFINAL RANKING: 2, 1"))  # b's C, B
    upstream.script("b", Reply("B"), Reply("FINAL RANKING: 1, 2"))  # A, C
    upstream.script("c", Reply("C"), Reply("FINAL RANKING: 2, 1"))  # B, A
    upstream.script("agg", Reply("final"))
    result = mixture(registry, ["a", "b", "c"], strategy="rank", top_k=2).run("q")

    ranking_of_a = upstream.requests_for("a")[1]
    assert system_of(ranking_of_a) == RANK_PROMPT + "\n1. B\n2. C"  # its own answer left out
    assert "FINAL RANKING: 2, 1, 3" in ranking_of_a["messages"][-1]["content"]
    # Mean places: A (1 + 2) / 2 = 1.5, B (2 + 1) / 2 = 1.5, C (1 + 2) / 2 = 1.5 — ties keep
    # proposer order, so A and B go on.
    (final,) = upstream.requests_for("agg")
    assert system_of(final) == AGGREGATE_AND_SYNTHESIZE + "\n1. A\n2. B"
    rankers = [c for c in result.calls if c.role == "ranker"]
    assert [c.data for c in rankers] == [
        {"ranking": [3, 2]},
        {"ranking": [1, 3]},
        {"ranking": [2, 1]},
    ]
    assert result.text == "final"


def test_a_rankers_instruction_joins_the_users_turn_not_a_system_turn_after_it(
    upstream: FakeUpstream, registry: Registry
) -> None:
    for name in "abc":
        upstream.script(name, Reply(name.upper()), Reply("FINAL RANKING: 1, 2"))
    conversation = [
        {"role": "user", "content": "q"},
        {"role": "system", "content": "Be brief."},
    ]
    mixture(registry, ["a", "b", "c"], strategy="rank").run(conversation)
    ranking = upstream.requests_for("a")[1]["messages"]
    assert ranking[-1] == {
        "role": "user",
        "content": f"q\n\n{RANK_INSTRUCTION}\n\n[system]\nBe brief.",
    }


def test_rank_passes_on_the_best_ranked_answers(upstream: FakeUpstream, registry: Registry) -> None:
    upstream.script("a", Reply("A"), Reply("FINAL RANKING: 2, 1"))  # C, B
    upstream.script("b", Reply("B"), Reply("FINAL RANKING: 2, 1"))  # C, A
    upstream.script("c", Reply("C"), Reply("no ranking here"))
    mixture(registry, ["a", "b", "c"], strategy="rank", top_k=1).run("q")
    (final,) = upstream.requests_for("agg")
    assert system_of(final) == AGGREGATE_AND_SYNTHESIZE + "\n1. C"


def test_rank_with_no_readable_ranking_synthesizes_everything(
    upstream: FakeUpstream, registry: Registry
) -> None:
    result = mixture(registry, ["a", "b", "c"], strategy="rank").run("q")
    (final,) = upstream.requests_for("agg")
    assert system_of(final).count("answer from") == 3
    assert "rank: no readable ranking — synthesized every proposal" in result.notes


def test_rank_parsing_and_mean_ranks() -> None:
    assert parse_ranking("FINAL RANKING: 2, 1, 3", 3) == [2, 1, 3]
    assert parse_ranking("final ranking:\n1. Response 3\n2. Response 1", 3) == [3, 1]
    assert parse_ranking("FINAL RANKING: 9", 3) is None
    assert parse_ranking("2, 1", 2) is None
    # Ranker 0 placed 2 first and 1 second; ranker 1 named only 2 (0 placed after it).
    assert mean_ranks({0: [2, 1], 1: [2]}, 3) == [2.0, 2.0, 1.0]


def test_top_k_belongs_to_rank() -> None:
    with pytest.raises(ConfigError, match='with strategy="rank"'):
        Aggregator("fake:agg", strategy="select", top_k=2)


# -- vote ------------------------------------------------------------------------------------


def test_vote_streams_the_majority_answer_with_no_aggregator_call(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("Twenty-one."))
    upstream.script("b", Reply("21"))
    upstream.script("c", Reply("22"))
    text, events = streamed(mixture(registry, ["a", "b", "c"], strategy="vote"))
    assert upstream.requests_for("agg") == []
    assert text == "Twenty-one."
    result = events[-1].result  # type: ignore[attr-defined]
    assert [c.role for c in result.calls] == ["proposer"] * 3
    assert result.notes == [
        "vote: 2 of 3 answers agree ('21'): answered with layer 1's proposal 1 (fake:a), verbatim"
    ]
    # The chosen proposal says so in the trace (the playground marks its card).
    assert [c.chosen for c in result.calls] == ["vote: 2 of 3 answers agree ('21')", None, None]
    assert isinstance(events[-1], Done)


@pytest.mark.parametrize(
    ("answers", "why"),
    [(["x", "y", "z"], "no two answers agree"), (["x", "x.", "Y", "y"], "a tie")],
)
def test_vote_falls_back_to_synthesize_and_says_why(
    upstream: FakeUpstream, registry: Registry, answers: list[str], why: str
) -> None:
    models = [f"m{i}" for i in range(len(answers))]
    for model, answer in zip(models, answers, strict=True):
        upstream.script(model, Reply(answer))
    result = mixture(registry, models, strategy="vote").run("q")
    assert len(upstream.requests_for("agg")) == 1
    assert result.text == "answer from agg"
    assert f"vote: {why} — synthesized instead" in result.notes


# -- Self-MoA-Seq windows --------------------------------------------------------------------


def test_window_synthesizes_in_windows_carrying_the_running_synthesis(
    upstream: FakeUpstream, registry: Registry
) -> None:
    models = [f"p{i}" for i in range(1, 8)]
    for model in models:
        upstream.script(model, Reply(model.upper()))
    upstream.script("agg", Reply("S1"), Reply("S2"), Reply("final"))
    text, events = streamed(mixture(registry, models, window=3))

    first, second, last = upstream.requests_for("agg")
    assert system_of(first) == AGGREGATE_AND_SYNTHESIZE + "\n1. P1\n2. P2\n3. P3"
    assert system_of(second) == AGGREGATE_AND_SYNTHESIZE + "\n1. S1\n2. P4\n3. P5\n4. P6"
    assert system_of(last) == AGGREGATE_AND_SYNTHESIZE + "\n1. S2\n2. P7"
    assert [b.get("stream") is True for b in (first, second, last)] == [False, False, True]
    assert text == "final"
    roles = [c.role for c in events[-1].result.calls if c.role != "proposer"]  # type: ignore[attr-defined]
    assert roles == ["synthesizer", "synthesizer", "aggregator"]


def test_proposals_that_do_not_fit_are_windowed_rather_than_cut(
    upstream: FakeUpstream, registry: Registry
) -> None:
    from moa import Agent

    long = "word " * 300  # ~500 estimated tokens each: three fit a 2800-token window, four do not
    for model in ("a", "b", "c", "d"):
        upstream.script(model, Reply(long + model))
    moa = MoA(
        ProposalLayer("fake:a", "fake:b", "fake:c", "fake:d"),
        Aggregator(Agent("fake:agg", context_window=2800)),
        registry=registry,
    )
    result = moa.run("q")
    assert len(upstream.requests_for("agg")) == 2
    assert any("synthesized 3 at a time" in n for n in result.notes)
    assert result.warnings == []  # nothing was cut


def test_few_proposals_that_fit_are_synthesized_at_once(
    upstream: FakeUpstream, registry: Registry
) -> None:
    mixture(registry, ["a", "b", "c", "d", "e"]).run("q")
    assert len(upstream.requests_for("agg")) == 1


def test_the_embedded_model_gets_the_schema_as_llama_cpp_takes_it() -> None:
    from moa.providers.local.provider import LocalProvider
    from moa.strategies.analysis import ANALYSIS_SCHEMA
    from moa.types import ChatRequest

    request = ChatRequest("smollm2", ({"role": "user", "content": "q"},))
    assert "response_format" not in LocalProvider()._kwargs(request)
    kwargs = LocalProvider()._kwargs(
        ChatRequest("smollm2", request.messages, response_format=ANALYSIS_SCHEMA)
    )
    assert kwargs["response_format"] == {
        "type": "json_object",
        "schema": dict(ANALYSIS_SCHEMA.schema),
    }


def test_a_schema_is_part_of_the_cache_key() -> None:
    from moa.policies.cache import ResponseCache
    from moa.strategies.analysis import ANALYSIS_SCHEMA
    from moa.types import ChatRequest, Sampling

    plain = ChatRequest("m", ({"role": "user", "content": "q"},), Sampling(temperature=0))
    shaped = ChatRequest(
        plain.model, plain.messages, plain.sampling, response_format=ANALYSIS_SCHEMA
    )
    assert ResponseCache.key("p", plain) != ResponseCache.key("p", shaped)


def test_the_new_builtin_recipes_are_what_their_names_say() -> None:
    from moa import recipes

    self_moa = recipes.load("self-moa")
    (model,) = self_moa.layers[0].models
    assert not isinstance(model, str) and model.samples == 6
    assert self_moa.aggregator.strategy == "synthesize"
    for name in ("together-fusion", "openrouter-fusion"):
        recipe = recipes.load(name)
        assert recipe.aggregator.strategy == "analysis"
        assert len(recipe.layers[0].models) >= 3
        assert "Cost per answer: 6 calls" in recipe.description
    assert "Cost per answer: 7 calls" in self_moa.description


def test_analysis_of_a_single_proposal_is_a_plain_synthesis(
    upstream: FakeUpstream, registry: Registry
) -> None:
    result = mixture(registry, ["a"], strategy="analysis").run("q")
    (body,) = upstream.requests_for("agg")
    assert system_of(body) == AGGREGATE_AND_SYNTHESIZE + "\n1. answer from a"
    assert [c.role for c in result.calls] == ["proposer", "aggregator"]


# -- traits: what the engine knows of a strategy, so that it names none -----------------------


class Bare:
    """A strategy written before the traits: only a name and `aggregate`."""

    name = "bare"

    async def aggregate(self, stage):  # type: ignore[no-untyped-def]
        for event in strategies.replay(stage, stage.proposals[0].output, None):
            yield event


def test_a_strategy_that_declares_no_traits_gets_them_all_false() -> None:
    bare = strategies.declared(Bare())
    assert (bare.answers_verbatim, bare.answers_agreement, bare.staircase, bare.uses_top_k) == (
        False,
        False,
        False,
        False,
    )
    assert bare.name == "bare"


def test_the_builtin_strategies_declare_what_the_engine_reads() -> None:
    verbatim = {n for n in strategies.BUILTIN if strategies.get(n).answers_verbatim}
    assert verbatim == {"vote", "select", "medoid"}
    assert {n for n in strategies.BUILTIN if strategies.get(n).answers_agreement} == {"vote"}
    assert {n for n in strategies.BUILTIN if strategies.get(n).staircase} == {"synthesize"}
    assert {n for n in strategies.BUILTIN if strategies.get(n).uses_top_k} == {"rank"}


class Agreeing(strategies.Traits):
    """A plugin's strategy that, like vote, answers with an agreed proposal."""

    name = "agreeing"
    answers_agreement = True

    async def aggregate(self, stage):  # type: ignore[no-untyped-def]
        raise AssertionError("a layer agreed: the aggregator is skipped")
        yield


def test_the_engine_skips_the_aggregator_for_any_strategy_that_answers_with_agreement(
    upstream: FakeUpstream, registry: Registry
) -> None:
    for model in ("a", "b"):
        upstream.script(model, Reply("Paris"))
    mixture = MoA(
        ProposalLayer("fake:a", "fake:b", stop_when="agree"),
        Aggregator("fake:agg", strategy=Agreeing()),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )
    result = mixture.run("Capital of France?")
    assert result.text == "Paris"
    assert upstream.requests_for("agg") == []
    assert "stop_when agree with agreeing" in " ".join(result.notes)
