"""The fault matrix: each upstream fault, and what a run does about it.

Every row asserts the outcome (answer or precise error), the trace, the number of attempts
and the requests the upstream saw, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from moa import (
    Agent,
    Aggregator,
    AggregatorFailedError,
    LayerFailedError,
    MoA,
    ProposalLayer,
    ProviderConfig,
    Registry,
    RetryPolicy,
)
from moa.events import Event
from moa.policies.ratelimit import RateLimit
from moa.testing import FakeUpstream, Reply
from moa.tokens import CUT_MARK

FAST_RETRY = RetryPolicy(max_attempts=5, base_delay_s=0.05, max_delay_s=0.2)


def one_proposer(registry: Registry, **kwargs: object) -> MoA:
    return MoA(
        ProposalLayer("fake:p"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=kwargs.pop("retry", FAST_RETRY),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def test_429_with_retry_after_waits_as_told_then_succeeds(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("p", Reply(status=429, headers={"retry-after": "1"}), Reply("ok"))
    result = one_proposer(registry).run("q")
    (proposal,) = result.proposals()
    assert proposal.ok and proposal.output == "ok" and proposal.attempts == 2
    refused, accepted = (c for c in upstream.calls if c.model == "p")
    assert accepted.arrived - refused.arrived >= 1.0  # no sooner than the server asked


def test_500_then_success(upstream: FakeUpstream, registry: Registry) -> None:
    upstream.script("p", Reply(status=500), Reply("recovered"))
    (proposal,) = one_proposer(registry).run("q").proposals()
    assert (proposal.status, proposal.output, proposal.attempts) == ("ok", "recovered", 2)


def test_503_burst_is_ridden_out(upstream: FakeUpstream, registry: Registry) -> None:
    upstream.script("p", Reply(status=503), Reply(status=503), Reply(status=503), Reply("finally"))
    (proposal,) = one_proposer(registry).run("q").proposals()
    assert (proposal.output, proposal.attempts) == ("finally", 4)


def test_503_beyond_the_attempt_budget_is_a_recorded_failure(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("p", Reply(status=503))
    moa = MoA(
        ProposalLayer("fake:p", "fake:ok"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.01),
    )
    failed, ok = moa.run("q").proposals()
    assert (failed.status, failed.attempts) == ("failed", 3) and "HTTP 503" in (failed.error or "")
    assert ok.ok
    assert len(upstream.requests_for("p")) == 3


def test_connection_reset_mid_body_is_retried(upstream: FakeUpstream, registry: Registry) -> None:
    upstream.script("p", Reply("lost", cut_after_tokens=0), Reply("second try"))
    (proposal,) = one_proposer(registry).run("q").proposals()
    assert (proposal.output, proposal.attempts) == ("second try", 2)


def test_read_timeout_is_retried_within_the_call_timeout(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("p", Reply("too late", delay_s=5), Reply("in time"))
    (proposal,) = one_proposer(registry, timeout_s=0.5).run("q").proposals()
    assert (proposal.output, proposal.attempts) == ("in time", 2)
    assert upstream.disconnects == 1  # the first try was abandoned at the timeout


def test_aggregator_stream_cut_before_the_first_token_is_retried(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("never", cut_after_tokens=0), Reply("whole answer"))
    result = one_proposer(registry).run("q")
    assert result.text == "whole answer"
    assert result.calls[-1].attempts == 2


async def drained(events: AsyncIterator[Event]) -> list[Event]:
    return [e async for e in events]


def test_aggregator_stream_cut_after_tokens_keeps_the_partial_text(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply("one two three four", cut_after_tokens=2))
    moa = MoA(
        ProposalLayer("fake:p"),
        Aggregator("fake:agg", fallbacks=["fake:backup"]),
        registry=registry,
        retry=FAST_RETRY,
    )
    with pytest.raises(AggregatorFailedError) as info:
        asyncio.run(drained(moa.stream("q")))  # streamed: its tokens are shown as they come
    aggregator = info.value.result.calls[-1]
    assert aggregator.output == "one two " and aggregator.status == "failed"
    assert "after streaming part of the answer" in (aggregator.error or "")
    assert aggregator.attempts == 1  # the user saw tokens: no retry
    assert upstream.requests_for("backup") == []  # and no fallback contradicting them
    assert info.value.result.proposals()[0].ok  # the proposals are kept


def test_malformed_json_is_a_recorded_failure(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("bad", Reply(raw_body='{"choices": [', status=200))
    bad, good = make_moa([["bad", "good"]]).run("q").proposals()
    assert bad.status == "failed" and "malformed" in (bad.error or "") and good.ok


def test_an_html_page_with_status_200_is_a_recorded_failure(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script(
        "html", Reply(raw_body="<html><body>Welcome!</body></html>", content_type="text/html")
    )
    bad, good = make_moa([["html", "good"]]).run("q").proposals()
    assert bad.status == "failed" and good.ok


def test_empty_content_is_a_recorded_failure(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("empty", Reply(""))
    empty, good = make_moa([["empty", "good"]]).run("q").proposals()
    assert empty.status == "failed" and "empty" in (empty.error or "") and good.ok


def test_proposer_slower_than_the_deadline_is_cancelled_and_the_layer_moves_on(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("slow", Reply("late", delay_s=20))
    layer = ProposalLayer("fake:a", "fake:b", "fake:slow", min_proposals=2, deadline_s=0.5)
    result = MoA(layer, Aggregator("fake:agg"), registry=registry).run("q")
    a, b, slow = result.proposals()
    assert a.ok and b.ok
    assert slow.status == "cancelled" and "moved on with 2 answers" in (slow.error or "")
    straggler = next(c for c in upstream.calls if c.model == "slow")
    assert straggler.finished is None  # the aggregator ran without its answer
    system = upstream.requests_for("agg")[0]["messages"][0]["content"]
    assert system.endswith("\n1. answer from a\n2. answer from b")
    assert upstream.disconnects >= 1  # the straggler's HTTP request was really abandoned


def test_quorum_waits_past_the_deadline_until_k_answers_are_in(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("a", delay_s=0.6))
    upstream.script("slow", Reply("late", delay_s=20))
    layer = ProposalLayer("fake:a", "fake:fast", "fake:slow", min_proposals=2, deadline_s=0.1)
    result = MoA(layer, Aggregator("fake:agg"), registry=registry).run("q")
    assert [c.status for c in result.proposals()] == ["ok", "ok", "cancelled"]


def test_all_proposers_failing_names_each_failure(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("x", Reply(status=400))
    upstream.script("y", Reply(""))
    moa = MoA(ProposalLayer("fake:x", "fake:y"), Aggregator("fake:agg"), registry=registry)
    with pytest.raises(LayerFailedError) as info:
        moa.run("q")
    assert "HTTP 400" in str(info.value) and "empty" in str(info.value)
    assert {c.model for c in info.value.failures} == {"fake:x", "fake:y"}


def test_aggregator_fails_then_the_fallback_answers(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("agg", Reply(status=400))
    upstream.script("backup", Reply("from the fallback"))
    moa = MoA(
        ProposalLayer("fake:p"),
        Aggregator("fake:agg", fallbacks=["fake:backup"]),
        registry=registry,
    )
    result = moa.run("q")
    assert result.text == "from the fallback" and result.aggregator_model == "fake:backup"
    failed, ok = [c for c in result.calls if c.role == "aggregator"]
    assert failed.status == "failed" and ok.ok
    # the fallback sees the same references
    assert (
        upstream.requests_for("backup")[0]["messages"]
        == upstream.requests_for("agg")[0]["messages"]
    )


def test_context_length_rejection_shrinks_the_references_and_retries_once(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("p", Reply("word " * 3000))
    upstream.script(
        "agg", Reply(status=400, error_code="context_length_exceeded"), Reply("fits now")
    )
    moa = MoA(
        ProposalLayer("fake:p"),
        Aggregator(Agent("fake:agg", context_window=16000)),
        registry=registry,
        retry=FAST_RETRY,
    )
    result = moa.run("q")
    assert result.text == "fits now"
    first, second = (r["messages"][0]["content"] for r in upstream.requests_for("agg"))
    assert CUT_MARK not in first and CUT_MARK in second
    assert len(second) < len(first)


def test_references_are_cut_to_fit_before_sending(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("a", Reply("alpha " * 2000))
    upstream.script("b", Reply("beta " * 500))
    moa = MoA(
        ProposalLayer("fake:a", "fake:b"),
        Aggregator(Agent("fake:agg", context_window=2048)),
        registry=registry,
        defaults=__import__("moa").Sampling(max_tokens=512),
    )
    moa.run("q")
    system = upstream.requests_for("agg")[0]["messages"][0]["content"]
    assert len(system) / 3 < 2048 - 512  # the estimated prompt fits the window
    one, two = system.split("\n1. ")[1].split("\n2. ")
    assert one.startswith("alpha alpha") and one.endswith(CUT_MARK)
    assert two.startswith("beta beta") and two.endswith(CUT_MARK)
    assert len(one) > len(two)  # proportional: the longer answer keeps more


def test_401_is_not_retried_and_names_the_key_variable(upstream: FakeUpstream) -> None:
    registry = Registry(
        {"fake": ProviderConfig("fake", upstream.base_url, api_key_env="FAKE_API_KEY")},
        env={"FAKE_API_KEY": "wrong"},
    )
    upstream.script("p", Reply(status=401))
    upstream.script("q", Reply(status=401))
    moa = MoA(
        ProposalLayer("fake:p", "fake:q"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=FAST_RETRY,
    )
    with pytest.raises(LayerFailedError, match=r"HTTP 401.*check the key in FAKE_API_KEY"):
        moa.run("q")
    assert len(upstream.requests_for("p")) == 1


async def test_429_storm_through_the_real_call_path_loses_no_prompt(
    upstream: FakeUpstream,
) -> None:
    """50 prompts x 2 calls at once against an upstream allowing 20 requests in any 0.5 s,
    over HTTP: every prompt is answered and few calls meet a 429. (The limiter's learning
    itself, and the share of 429s in a long batch, are tested exactly, in virtual time, in
    tests/test_rate_limits.py.)"""
    upstream.rate_limit(20, window_s=0.5)
    registry = Registry({"fake": ProviderConfig("fake", upstream.base_url)}, env={})
    moa = MoA(
        ProposalLayer("fake:p"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=10, max_elapsed_s=30),
    )
    results = await asyncio.gather(*(moa.arun(f"prompt {i}") for i in range(50)))
    await moa.aclose()
    assert all(r.text == "answer from agg" for r in results)
    assert len(upstream.requests) == 100 + upstream.throttled
    # Nearly all of them come in the first burst, before a 429 has taught anything: 12-16
    # in repeated runs (the old bound allowed 50, half the calls).
    assert upstream.throttled <= 20, f"{upstream.throttled} 429s for 100 calls"


async def test_a_configured_rate_limit_avoids_429s(upstream: FakeUpstream) -> None:
    upstream.rate_limit(20, window_s=0.5)
    registry = Registry(
        {"fake": ProviderConfig("fake", upstream.base_url, rate_limit=RateLimit(rpm=2280))}, env={}
    )
    moa = MoA(
        ProposalLayer("fake:p"),
        Aggregator("fake:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=10, max_elapsed_s=30),
    )
    results = await asyncio.gather(*(moa.arun(f"prompt {i}") for i in range(25)))
    await moa.aclose()
    assert all(r.text == "answer from agg" for r in results)
    assert upstream.throttled <= 2  # at most 5% of 50 calls


def test_a_call_queued_behind_a_concurrency_limit_is_not_timed_while_it_waits(
    upstream: FakeUpstream,
) -> None:
    """How the embedded model is protected: one call at a time, and queueing is not a timeout."""
    registry = Registry(
        {
            "fake": ProviderConfig(
                "fake", upstream.base_url, rate_limit=RateLimit(max_concurrency=1)
            )
        },
        env={},
    )
    for m in "abc":
        upstream.script(m, Reply(m, delay_s=0.4))
    moa = MoA(
        ProposalLayer("fake:a", "fake:b", "fake:c"),
        Aggregator("fake:agg"),
        registry=registry,
        timeout_s=0.7,
    )
    result = moa.run("q")
    assert [c.status for c in result.proposals()] == ["ok", "ok", "ok"]
    assert upstream.max_active == 1
