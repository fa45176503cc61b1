"""A run survives failed proposers; the trace says who failed and why."""

from __future__ import annotations

import pytest

from moa import (
    Aggregator,
    AggregatorFailedError,
    LayerFailedError,
    MoA,
    ProposalLayer,
    ProviderConfig,
    Registry,
    RetryPolicy,
)
from moa.testing import FakeUpstream, Reply


def test_a_failing_proposer_is_recorded_and_the_run_goes_on(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("bad", Reply(status=400))
    result = make_moa([["good", "bad"]]).run("q")
    good, bad = result.proposals()
    assert good.ok and not bad.ok
    assert bad.status == "failed" and "HTTP 400" in (bad.error or "")
    aggregator_system = upstream.requests_for("agg")[0]["messages"][0]["content"]
    assert aggregator_system.endswith("\n1. answer from good")
    assert result.text == "answer from agg"


def test_empty_and_null_answers_count_as_failures(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("blank", Reply("   "))
    upstream.script("null", Reply(content_null=True))
    result = make_moa([["blank", "null", "ok"]]).run("q")
    assert [c.status for c in result.proposals()] == ["failed", "failed", "ok"]
    assert all("empty" in (c.error or "") for c in result.proposals()[:2])


def test_malformed_bodies_are_recorded_failures_not_exceptions(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("json", Reply(raw_body="{not json"))
    upstream.script(
        "html", Reply(raw_body="<html>Bad gateway</html>", status=502, content_type="text/html")
    )
    result = make_moa([["json", "html", "ok"]]).run("q")
    statuses = [c.status for c in result.proposals()]
    assert statuses == ["failed", "failed", "ok"]
    assert "HTTP 502" in (result.proposals()[1].error or "")


def test_when_every_proposer_of_a_layer_fails_the_error_names_each(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("x", Reply(status=500))
    upstream.script("y", Reply(status=404))
    with pytest.raises(LayerFailedError) as info:
        make_moa([["x", "y"]]).run("q")
    message = str(info.value)
    assert "layer 1" in message and "fake:x" in message and "fake:y" in message
    assert len(info.value.result.calls) == 2
    assert upstream.requests_for("agg") == []


def test_a_slow_proposer_hits_the_per_call_timeout(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("slow", Reply("late", delay_s=5))
    result = make_moa([["slow", "quick"]], timeout_s=0.5).run("q")
    slow = result.proposals()[0]
    assert slow.status == "failed" and "within 0.5s" in (slow.error or "")
    assert upstream.disconnects == 1  # abandoned, not waited for


def test_an_unreachable_base_url_is_a_clear_failure(upstream: FakeUpstream) -> None:
    registry = Registry({"gone": ProviderConfig("gone", "http://127.0.0.1:9/v1")}, env={})
    moa = MoA(
        ProposalLayer("gone:m"),
        Aggregator("gone:m"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(LayerFailedError, match=r"cannot reach http://127\.0\.0\.1:9/v1"):
        moa.run("q")


def test_aggregator_failure_keeps_the_proposals(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("agg", Reply(status=400))
    with pytest.raises(AggregatorFailedError) as info:
        make_moa([["a", "b"]]).run("q")
    kept = info.value.result.proposals()
    assert [c.output for c in kept] == ["answer from a", "answer from b"]
