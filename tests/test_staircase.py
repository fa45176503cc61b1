"""Staircase streaming: the aggregator starts on the proposals' first chunks and continues its
own answer as longer proposals arrive; the user sees one answer that is never rewritten."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moa import Aggregator, MoA, ProposalLayer, ProviderConfig, Registry, RetryPolicy
from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE
from moa.errors import ConfigError
from moa.events import Token
from moa.providers.base import Capabilities
from moa.recipes import build, load
from moa.testing import MISMATCH, FakeUpstream, Reply, continuing
from moa.trace import Result
from moa.types import Answering, Sampling

PROPOSALS = {m: " ".join(f"{m}w{i}" for i in range(30)) for m in ("p0", "p1", "p2")}
ANSWER = " ".join(f"answer{i}" for i in range(60))
PACE_S = 0.02  # between streamed chunks, proposers and aggregator alike


def staircase_moa(upstream: FakeUpstream, *, chunk_tokens: int = 5) -> MoA:
    continues = Capabilities(continuation="assistant")
    registry = Registry({"fake": ProviderConfig("fake", upstream.base_url, capabilities=continues)})
    return MoA(
        ProposalLayer(*(f"fake:{m}" for m in PROPOSALS)),
        Aggregator("fake:agg", staircase=True, chunk_tokens=chunk_tokens),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )


def script(upstream: FakeUpstream, answer: str = ANSWER, **proposer: Reply) -> None:
    for model, text in PROPOSALS.items():
        upstream.script(model, proposer.get(model, Reply(text, token_delay_s=PACE_S)))
    upstream.script("agg", Reply(continuing(answer), token_delay_s=PACE_S))


async def run(mixture: MoA) -> tuple[list[str], Result]:
    shown: list[str] = []
    async with mixture:
        async for event in mixture.stream("q"):
            if isinstance(event, Token):
                shown.append(event.text)
            elif hasattr(event, "result"):
                result = event.result
    return shown, result


def references_of(body: dict) -> list[str]:
    system = body["messages"][0]["content"]
    assert system.startswith(AGGREGATE_AND_SYNTHESIZE)
    lines = system.removeprefix(AGGREGATE_AND_SYNTHESIZE).strip("\n").split("\n")
    # The numbered references; not the line saying how many of how many are below.
    return [line.split(". ", 1)[1] for line in lines if re.match(r"\d+\. ", line)]


def continuation_of(body: dict) -> str:
    last = body["messages"][-1]
    return last["content"] if last["role"] == "assistant" else ""


async def test_the_aggregator_starts_on_first_chunks_and_continues_on_longer_ones(
    upstream: FakeUpstream,
) -> None:
    script(upstream)
    await run(staircase_moa(upstream))

    requests = upstream.requests_for("agg")
    assert len(requests) >= 2
    first = references_of(requests[0])
    assert continuation_of(requests[0]) == ""
    for reference, full in zip(first, PROPOSALS.values(), strict=True):
        assert full.startswith(reference) and 5 <= len(reference.split()) < len(full.split())
    previous_refs, previous_prefix = first, ""
    for body in requests[1:]:
        refs, prefix = references_of(body), continuation_of(body)
        assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
        assert all(len(r) >= len(p) for r, p in zip(refs, previous_refs, strict=True))
        assert ANSWER.startswith(prefix) and len(prefix) >= len(previous_prefix)
        previous_refs, previous_prefix = refs, prefix
    assert previous_refs == list(PROPOSALS.values())  # the last step saw them complete


async def test_the_user_sees_one_answer_never_repeated_or_rewritten(
    upstream: FakeUpstream,
) -> None:
    script(upstream)
    shown, result = await run(staircase_moa(upstream))

    assert "".join(shown) == ANSWER == result.text
    assert MISMATCH not in result.text
    assert result.aggregator_model == "fake:agg"


async def test_the_trace_records_each_step_and_the_resent_prompt(upstream: FakeUpstream) -> None:
    script(upstream)
    _, result = await run(staircase_moa(upstream))

    (aggregator,) = [c for c in result.calls if c.role == "aggregator"]
    requests = upstream.requests_for("agg")
    steps = {(s.prefix_chars, s.references_chars) for s in aggregator.steps}
    sent = {(len(continuation_of(b)), sum(map(len, references_of(b)))) for b in requests}
    assert sent <= steps  # a step replaced in the instant before its request left may remain
    assert len(aggregator.steps) <= len(requests) + 1
    assert sum(s.tokens_added for s in aggregator.steps) == len(ANSWER.split())
    assert aggregator.steps[-1].final and not aggregator.steps[0].final
    assert aggregator.resent_input_tokens == sum(s.input_tokens for s in aggregator.steps[:-1]) > 0
    assert aggregator.to_dict()["resent_input_tokens"] == aggregator.resent_input_tokens
    assert [c.status for c in result.proposals()] == ["ok", "ok", "ok"]


async def test_a_proposer_failing_mid_stream_leaves_the_staircase_with_the_others(
    upstream: FakeUpstream,
) -> None:
    broken = Reply(PROPOSALS["p1"], token_delay_s=PACE_S, cut_after_tokens=12)
    script(upstream, p1=broken)
    shown, result = await run(staircase_moa(upstream))

    assert "".join(shown) == ANSWER == result.text
    assert [c.status for c in result.proposals()] == ["ok", "failed", "ok"]
    last = references_of(upstream.requests_for("agg")[-1])
    assert last == [PROPOSALS["p0"], PROPOSALS["p2"]]


async def test_an_aggregator_that_finishes_early_ends_the_answer_and_the_proposers(
    upstream: FakeUpstream,
) -> None:
    long = {m: Reply(t + " more" * 200, token_delay_s=PACE_S) for m, t in PROPOSALS.items()}
    script(upstream, answer="Short answer.", **long)
    shown, result = await run(staircase_moa(upstream))

    assert "".join(shown) == "Short answer." == result.text
    assert [c.status for c in result.proposals()] == ["cancelled"] * 3


def test_a_provider_without_continuation_is_refused_at_recipe_load(
    recipe_file, registry: Registry
) -> None:
    path: Path = recipe_file(
        '[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:agg"\nstaircase = true\n'
    )
    with pytest.raises(ConfigError, match="does not continue a partial answer"):
        build(load(path), registry)


def test_a_builtin_provider_that_cannot_continue_is_refused() -> None:
    registry = Registry(env={"TOGETHER_API_KEY": "k"})
    with pytest.raises(ConfigError, match=r"'together' does not continue"):
        MoA(
            ProposalLayer("together:m"),
            Aggregator("together:m", staircase=True),
            registry=registry,
        )


def test_a_declared_continuation_is_accepted_with_its_chunk_size(
    recipe_file, registry: Registry
) -> None:
    path: Path = recipe_file(
        '[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:agg"\n'
        "staircase = true\nchunk_tokens = 12\n"
    )
    text = path.read_text() + 'continuation = "assistant"\n'
    path.write_text(text)
    mixture = build(load(path), registry)
    assert mixture.aggregator.staircase and mixture.aggregator.chunk_tokens == 12


async def test_max_tokens_bounds_the_whole_answer_not_each_step(upstream: FakeUpstream) -> None:
    script(upstream)
    mixture = staircase_moa(upstream)
    async with mixture:
        await mixture.arun("q", aggregator_sampling=Sampling(max_tokens=50))

    requests = upstream.requests_for("agg")
    assert len(requests) >= 2
    for body in requests:
        written = len(continuation_of(body).split())
        assert body["max_tokens"] == 50 - written


async def test_a_request_for_n_answers_or_tools_is_refused_not_streamed_whole(
    upstream: FakeUpstream,
) -> None:
    script(upstream)
    mixture = staircase_moa(upstream)
    async with mixture:
        with pytest.raises(ConfigError, match="turn staircase off"):
            await mixture.arun("q", answering=Answering(n=2))
    assert upstream.requests_for("agg") == []


async def test_the_answer_carries_the_finish_reason_of_the_step_it_ended_on(
    upstream: FakeUpstream,
) -> None:
    script(upstream)
    upstream.script("agg", Reply(continuing(ANSWER), token_delay_s=PACE_S, finish_reason="length"))
    _, result = await run(staircase_moa(upstream))
    aggregator = result.calls[-1]
    assert aggregator.role == "aggregator" and aggregator.finish_reason == "length"
    assert result.choices[0].finish_reason == "length"
    assert aggregator.attempts == 1
