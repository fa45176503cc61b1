"""Proposers run concurrently; events and tokens arrive in order."""

from __future__ import annotations

from moa import AggregatorStarted, Done, ProposalDelta, ProposalFinished, ProposalStarted, Token
from moa.testing import FakeUpstream, Reply


def test_the_proposers_of_a_layer_are_called_concurrently(upstream: FakeUpstream, make_moa) -> None:
    for m in "abcd":
        upstream.script(m, Reply(f"{m}!", delay_s=0.3))
    result = make_moa([list("abcd")]).run("q")
    assert [c.output for c in result.proposals()] == ["a!", "b!", "c!", "d!"]
    proposals = [c for c in upstream.calls if c.model in "abcd"]
    # Every request was in before any answer went out: the four overlapped.
    assert max(c.arrived for c in proposals) < min(c.finished or 0.0 for c in proposals)
    # Counted from this test's own calls: the upstream is shared by the session, and a stream
    # another test left closing would count in its `max_active`.
    assert len(proposals) == 4 and len(upstream.calls) == 5  # the four, then the aggregator


def test_the_next_layer_starts_when_the_last_answer_of_the_previous_arrives(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("fast", Reply("f"))
    upstream.script("slow", Reply("s", delay_s=0.5), Reply("s2"))
    make_moa([["fast", "slow"], ["fast", "slow"]]).run("q")
    first_fast, second_fast = [c for c in upstream.calls if c.model == "fast"]
    first_slow = next(c for c in upstream.calls if c.model == "slow")
    assert first_fast.finished is not None and first_slow.finished is not None
    assert first_fast.finished < first_slow.finished  # layer 1's fast answer did not start it
    assert second_fast.arrived >= first_slow.finished


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
    upstream.script("agg", Reply("one two three four five", token_delay_s=1.0))
    events = aiter(make_moa([["a"]]).stream("q"))
    first = await anext(e async for e in events if isinstance(e, Token))
    (aggregator,) = [c for c in upstream.calls if c.model == "agg"]
    # The upstream is still generating (four more tokens, a second apart) and yet the first
    # token is here: streamed, not delivered in one piece at the end.
    assert first.text == "one " and aggregator.finished is None
    await events.aclose()  # type: ignore[attr-defined]
