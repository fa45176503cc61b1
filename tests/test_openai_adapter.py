"""The OpenAI-compatible adapter reads server-sent events per the spec, tolerates servers that
ignore `stream`, and turns failures into typed errors without mistaking moa's bugs for them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from moa import Aggregator, LayerFailedError, MoA, ProposalLayer, Registry, RetryPolicy
from moa.call.chain import chain
from moa.policies.ratelimit import Limits
from moa.providers.openai import provider as openai_compat
from moa.providers.openai.provider import _sse_data
from moa.testing import FakeUpstream, Reply
from moa.types import ChatRequest, Message


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_events_join_multi_line_data_and_skip_other_fields() -> None:
    raw = lines(
        "event: message", 'data: {"a":', "data: 1}", "", ": a comment", "id: 7", "data: [DONE]", ""
    )
    assert [d async for d in _sse_data(raw)] == ['{"a":\n1}', "[DONE]"]


async def test_an_event_without_its_closing_blank_line_still_counts() -> None:
    assert [d async for d in _sse_data(lines("data:x"))] == ["x"]


def test_a_server_that_ignores_stream_true_still_answers(
    upstream: FakeUpstream, registry: Registry
) -> None:
    body = (
        '{"choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"},'
        ' "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
    )
    upstream.script("agg", Reply(raw_body=body))
    result = MoA(ProposalLayer("fake:p"), Aggregator("fake:agg"), registry=registry).run("q")
    assert result.text == "whole" and result.calls[-1].usage.output_tokens == 1


def test_a_bug_in_moa_is_not_retried_as_a_connection_error(
    upstream: FakeUpstream, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: object) -> None:
        raise RuntimeError("a bug in moa")

    monkeypatch.setattr(openai_compat, "_usage", broken)
    moa = MoA(ProposalLayer("fake:p"), Aggregator("fake:agg"), registry=registry)
    with pytest.raises(LayerFailedError, match="RuntimeError: a bug in moa"):
        moa.run("q")
    assert len(upstream.requests_for("p")) == 1  # not retried


async def test_a_stream_is_read_to_its_end_so_the_next_call_reuses_its_connection(
    upstream: FakeUpstream, registry: Registry
) -> None:
    provider, model = registry.resolve("fake:p")
    request = ChatRequest(model, (Message(role="user", content="q"),))
    try:
        answers = [[c.text async for c in provider.stream(request)] for _ in range(3)]
    finally:
        await provider.aclose()
    assert ["".join(a) for a in answers] == ["answer from p"] * 3
    assert upstream.connections == 1


async def test_a_body_left_open_after_done_costs_the_connection_not_the_answer(
    upstream: FakeUpstream, registry: Registry
) -> None:
    upstream.script("p", Reply("all said", hold_open_s=30))
    provider, model = registry.resolve("fake:p")
    # The gap after [DONE] outlasts the call's timeout: waiting it out would fail the call.
    request = ChatRequest(model, (Message(role="user", content="q"),), timeout_s=1.0)
    chained = chain(provider, limits=Limits(), retry=RetryPolicy(max_attempts=1), cache=None)
    try:
        chunks = [c async for c in chained.stream(request)]
    finally:
        await provider.aclose()
    assert "".join(c.text for c in chunks) == "all said"
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage is not None
