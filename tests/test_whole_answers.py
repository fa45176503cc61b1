"""Proposers stream only when someone watches their words.

`MoA.stream()` streams every proposer and yields its `ProposalDelta`s (issue 11); `arun()`,
`run()` and `stream(proposal_deltas=False)` ask each proposer for its whole answer in one
request, which costs a fraction of the CPU (benchmark row 3), and record the same trace.
"""

from __future__ import annotations

from typing import Any

import pytest

from moa import (
    Aggregator,
    MoA,
    ProposalDelta,
    ProposalFailed,
    ProposalFinished,
    ProposalLayer,
    ProposalStarted,
    ProviderConfig,
    Registry,
    RetryPolicy,
)
from moa.events import Done, Event
from moa.providers.base import Capabilities
from moa.testing import FakeUpstream, Reply, continuing
from moa.trace import Result


def streamed(upstream: FakeUpstream, *models: str) -> list[bool]:
    """Whether each request to `models` asked for a stream, in arrival order."""
    return [c.streamed for c in upstream.calls if c.model in models]


def script(upstream: FakeUpstream) -> None:
    upstream.script("a", Reply("alpha beta gamma", usage=(11, 3), delay_s=0.05))
    upstream.script("b", Reply(status=500), Reply("cut short", finish_reason="length"))
    upstream.script("agg", Reply("the answer"))


def mixture(registry: Registry) -> MoA:
    return MoA(
        ProposalLayer("fake:a", "fake:b"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.01),
    )


async def drained(events: Any) -> tuple[list[Event], Result]:
    seen = [e async for e in events]
    assert isinstance(seen[-1], Done)
    return seen, seen[-1].result


def without_latency(result: Result) -> dict[str, Any]:
    trace = result.to_dict()
    del trace["latency_s"]
    for call in trace["calls"]:
        del call["latency_s"]
    return trace


async def test_arun_asks_every_call_for_its_whole_answer(
    upstream: FakeUpstream, registry: Registry
) -> None:
    script(upstream)
    result = await mixture(registry).arun("q")
    assert streamed(upstream, "a", "b") == [False, False, False]  # b: a 500, then its answer
    assert streamed(upstream, "agg") == [False]  # nobody reads the answer as it comes either
    assert result.text == "the answer"


async def test_a_whole_answer_leaves_the_trace_a_streamed_one_does(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("the answer", usage=(30, 2), finish_reason="length"))
    whole = await mixture(registry).arun("q")
    upstream.reset()
    upstream.script("agg", Reply("the answer", usage=(30, 2), finish_reason="length"))
    _, live = await drained(mixture(registry).stream("q", proposal_deltas=False))
    assert without_latency(whole) == without_latency(live)
    assert whole.choices[0].finish_reason == "length"


async def test_whole_and_streamed_proposers_leave_the_same_trace(
    upstream: FakeUpstream, registry: Registry
) -> None:
    script(upstream)
    whole = await mixture(registry).arun("q")
    upstream.reset()
    script(upstream)
    _, streamed_result = await drained(mixture(registry).stream("q"))
    assert without_latency(whole) == without_latency(streamed_result)
    a, b = whole.proposals()
    assert (a.output, a.usage.input_tokens, a.usage.output_tokens) == ("alpha beta gamma", 11, 3)
    assert (a.finish_reason, a.attempts) == ("stop", 1)
    assert (b.output, b.finish_reason, b.attempts) == ("cut short", "length", 2)


async def test_a_whole_proposal_latency_spans_its_request(
    upstream: FakeUpstream, registry: Registry
) -> None:
    script(upstream)
    result = await mixture(registry).arun("q")
    a = result.proposals()[0]
    (served,) = [c for c in upstream.calls if c.model == "a"]
    assert served.finished is not None
    assert a.latency_s >= served.finished - served.arrived >= 0.05
    assert result.latency_s >= a.latency_s


async def test_stream_streams_proposals_as_deltas(
    upstream: FakeUpstream, registry: Registry
) -> None:
    script(upstream)
    events, _ = await drained(mixture(registry).stream("q"))
    deltas = [e.text for e in events if isinstance(e, ProposalDelta) and e.index == 0]
    assert deltas == ["alpha ", "beta ", "gamma"]
    assert streamed(upstream, "a", "b") == [True, True, True]


async def test_without_deltas_a_stream_tells_each_proposal_start_and_end_only(
    upstream: FakeUpstream, registry: Registry
) -> None:
    script(upstream)
    events, result = await drained(mixture(registry).stream("q", proposal_deltas=False))
    proposal_events = [
        type(e).__name__
        for e in events
        if isinstance(e, ProposalStarted | ProposalDelta | ProposalFinished | ProposalFailed)
    ]
    assert proposal_events == ["ProposalStarted"] * 2 + ["ProposalFinished"] * 2
    assert streamed(upstream, "a", "b") == [False, False, False]
    assert [p.output for p in result.proposals()] == ["alpha beta gamma", "cut short"]


@pytest.mark.parametrize("deltas", [True, False], ids=["streamed", "whole"])
async def test_a_layer_deadline_cancels_its_straggler_either_way(
    upstream: FakeUpstream, registry: Registry, deltas: bool
) -> None:
    upstream.script("slow", Reply("late", delay_s=20))
    layer = ProposalLayer("fake:a", "fake:b", "fake:slow", min_proposals=2, deadline_s=0.3)
    moa = MoA(layer, Aggregator("fake:agg"), registry=registry)
    _, result = await drained(moa.stream("q", proposal_deltas=deltas))
    assert [c.status for c in result.proposals()] == ["ok", "ok", "cancelled"]
    assert "moved on with 2 answers" in (result.proposals()[2].error or "")
    system = upstream.requests_for("agg")[0]["messages"][0]["content"]
    assert system.endswith("\n1. answer from a\n2. answer from b")


@pytest.mark.parametrize("deltas", [True, False], ids=["streamed", "whole"])
async def test_a_quorum_waits_past_the_deadline_either_way(
    upstream: FakeUpstream, registry: Registry, deltas: bool
) -> None:
    upstream.script("a", Reply("a", delay_s=0.4))
    upstream.script("slow", Reply("late", delay_s=20))
    layer = ProposalLayer("fake:a", "fake:fast", "fake:slow", min_proposals=2, deadline_s=0.05)
    moa = MoA(layer, Aggregator("fake:agg"), registry=registry)
    _, result = await drained(moa.stream("q", proposal_deltas=deltas))
    assert [c.status for c in result.proposals()] == ["ok", "ok", "cancelled"]


async def test_a_staircase_streams_its_last_layer_even_when_nobody_watches(
    upstream: FakeUpstream,
) -> None:
    continues = Capabilities(continuation="assistant")
    registry = Registry({"fake": ProviderConfig("fake", upstream.base_url, capabilities=continues)})
    upstream.script("agg", Reply(continuing("one answer")))
    moa = MoA(
        ProposalLayer("fake:a", "fake:b"),
        ProposalLayer("fake:c", "fake:d"),
        Aggregator("fake:agg", staircase=True, chunk_tokens=2),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )
    async with moa:
        result = await moa.arun("q")
    assert result.text == "one answer"
    assert streamed(upstream, "a", "b") == [False, False]  # the first layer: whole
    assert streamed(upstream, "c", "d") == [True, True]  # the last: the aggregator reads it live
    assert set(streamed(upstream, "agg")) == {True}  # each step continues the one before
