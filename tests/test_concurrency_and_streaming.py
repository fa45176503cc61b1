"""Proposers run concurrently; events and tokens arrive in order."""

from __future__ import annotations

import time

from moa import AggregatorStarted, Done, ProposalDelta, ProposalFinished, ProposalStarted, Token
from moa.testing import FakeUpstream, Reply


def test_four_one_second_proposers_finish_a_layer_in_about_one_second(
    upstream: FakeUpstream, make_moa
) -> None:
    for m in "abcd":
        upstream.script(m, Reply(f"{m}!", delay_s=1.0))
    moa = make_moa([list("abcd")])
    started = time.perf_counter()
    result = moa.run("q")
    elapsed = time.perf_counter() - started
    assert [c.output for c in result.proposals()] == ["a!", "b!", "c!", "d!"]
    assert upstream.max_active >= 4
    assert elapsed < 2.5, (
        f"a layer of four 1 s proposers took {elapsed:.2f}s (sequential would be 4 s)"
    )


def test_the_next_layer_starts_when_the_last_answer_of_the_previous_arrives(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("fast", Reply("f"))
    upstream.script("slow", Reply("s", delay_s=0.5), Reply("s2"))
    make_moa([["fast", "slow"], ["fast", "slow"]]).run("q")
    slow_answered = upstream.request_times["slow"][0] + 0.5
    second_layer_sent = upstream.request_times["fast"][1]
    assert second_layer_sent >= slow_answered - 0.05


async def test_events_come_in_order_and_tokens_spell_the_answer(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("agg", Reply("the final answer is here", token_delay_s=0.01))
    all_events = [e async for e in make_moa([["a", "b"]]).stream("q")]
    events = [e for e in all_events if not isinstance(e, ProposalDelta)]
    kinds = [type(e).__name__ for e in events]
    assert kinds[:2] == ["ProposalStarted", "ProposalStarted"]
    assert kinds[2:4] == ["ProposalFinished", "ProposalFinished"]
    assert isinstance(events[4], AggregatorStarted)
    tokens = [e.text for e in events if isinstance(e, Token)]
    assert tokens == ["the ", "final ", "answer ", "is ", "here"]
    assert isinstance(events[-1], Done)
    assert events[-1].result.text == "".join(tokens)
    assert {e.model for e in events if isinstance(e, ProposalStarted)} == {"fake:a", "fake:b"}


async def test_proposals_stream_as_deltas_before_each_proposal_finishes(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("a", Reply("alpha beta gamma", token_delay_s=0.01))
    upstream.script("b", Reply("one two", token_delay_s=0.01))
    events = [e async for e in make_moa([["a", "b"]]).stream("q")]
    for index, answer in ((0, "alpha beta gamma"), (1, "one two")):
        deltas = [e for e in events if isinstance(e, ProposalDelta) and e.index == index]
        finished = next(
            i
            for i, e in enumerate(events)
            if isinstance(e, ProposalFinished) and e.record.index == index
        )
        assert len(deltas) == len(answer.split(" "))  # one per streamed chunk, not one at the end
        assert "".join(d.text for d in deltas) == answer == events[finished].record.output
        assert all(events.index(d) < finished for d in deltas)
        assert {(d.layer, d.model) for d in deltas} == {(1, f"fake:{'ab'[index]}")}


async def test_tokens_reach_the_caller_before_the_aggregator_finishes(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("agg", Reply("one two three four five", token_delay_s=0.2))
    seen_at: list[float] = []
    async for event in make_moa([["a"]]).stream("q"):
        if isinstance(event, Token):
            seen_at.append(time.perf_counter())
    assert len(seen_at) == 5
    assert seen_at[-1] - seen_at[0] > 0.5  # streamed, not delivered in one piece at the end
