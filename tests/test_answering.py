"""What a client asks of the final answer — tools, a response format, logprobs, n — from the
Python API, and the pure rules under it: what proposers see of a tool conversation, how
streamed tool calls are put together, and what is refused."""

from __future__ import annotations

import json

import pytest

from moa import (
    Aggregator,
    Answering,
    Done,
    MoA,
    ProposalLayer,
    ProviderConfig,
    Registry,
    RetryPolicy,
    ToolCallDelta,
    UnsupportedFieldError,
)
from moa.call.request import Call, build_request
from moa.providers.base import Capabilities, ModelProfile
from moa.testing import FakeUpstream, Reply
from moa.tooluse import as_text, assemble
from moa.types import Message, ResponseFormat, Sampling, Tools

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
CALL = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}


@pytest.fixture
def mixture(upstream: FakeUpstream):
    registry = Registry(
        {
            "fake": ProviderConfig("fake", upstream.base_url),
            "smart": ProviderConfig(
                "smart", upstream.base_url, capabilities=Capabilities(tools=True, json_schema=True)
            ),
        },
        env={},
    )
    upstream.script("a", Reply("proposal A"))
    return MoA(
        ProposalLayer("fake:a"),
        Aggregator("smart:agg"),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )


# -- the Python API --------------------------------------------------------------------------


def test_run_with_tools_returns_the_aggregators_calls(upstream: FakeUpstream, mixture) -> None:
    upstream.script("agg", Reply("", tool_calls=[CALL]))
    result = mixture.run("Weather in Oslo?", tools=[WEATHER])
    assert result.text == ""
    (call,) = result.tool_calls
    assert call["function"] == CALL and call["id"] == "call_0"
    assert result.choices[0].finish_reason == "tool_calls"
    assert upstream.requests_for("agg")[0]["tools"] == [WEATHER]


async def test_the_stream_carries_the_calls_as_deltas(upstream: FakeUpstream, mixture) -> None:
    upstream.script("agg", Reply("", tool_calls=[CALL]))
    deltas = []
    async for event in mixture.stream("Weather in Oslo?", tools=[WEATHER]):
        if isinstance(event, ToolCallDelta):
            deltas.extend(event.deltas)
        elif isinstance(event, Done):
            result = event.result
    await mixture.aclose()
    assert assemble(deltas) == result.tool_calls
    assert json.loads(result.tool_calls[0]["function"]["arguments"]) == {"city": "Oslo"}


async def test_a_conversation_continues_after_the_tool_result(
    upstream: FakeUpstream, mixture
) -> None:
    upstream.script("agg", Reply("Cold and clear."))
    conversation = [
        Message(role="user", content="Weather in Oslo?"),
        Message(
            role="assistant",
            content="",
            tool_calls=[{"id": "c1", "type": "function", "function": CALL}],
        ),
        Message(role="tool", content="-3°C", tool_call_id="c1"),
    ]
    result = await mixture.arun(conversation, tools=[WEATHER])
    await mixture.aclose()
    assert result.text == "Cold and clear." and result.tool_calls == []
    assert upstream.requests_for("agg")[0]["messages"][-1]["role"] == "tool"
    assert upstream.requests_for("a")[0]["messages"][-1]["role"] == "user"


async def test_n_answers_pay_for_the_proposals_once(upstream: FakeUpstream, mixture) -> None:
    upstream.script("agg", Reply("x"), Reply("y"))
    result = await mixture.arun("q", answering=Answering(n=2))
    await mixture.aclose()
    assert [c.text for c in result.choices] == ["x", "y"] and result.text == "x"
    assert [c.role for c in result.calls] == ["proposer", "aggregator", "aggregator"]


async def test_unsupported_asks_are_refused_before_any_call(
    upstream: FakeUpstream, mixture
) -> None:
    with pytest.raises(UnsupportedFieldError) as caught:
        await mixture.arun("q", answering=Answering(top_logprobs=0))
    assert caught.value.param == "logprobs"
    assert "smart:agg" in str(caught.value)
    assert upstream.requests == []


# -- the pure rules ----------------------------------------------------------------------------


def test_proposers_see_tool_calls_and_results_as_text_in_alternating_turns() -> None:
    conversation = [
        Message(role="user", content="Weather?"),
        Message(
            role="assistant",
            content="Let me look.",
            tool_calls=[{"id": "c1", "type": "function", "function": CALL}],
        ),
        Message(role="tool", content="-3°C", tool_call_id="c1"),
        Message(role="user", content="And tomorrow?"),
    ]
    assert as_text(conversation) == [
        Message(role="user", content="Weather?"),
        Message(role="assistant", content='Let me look.\n[called get_weather({"city": "Oslo"})]'),
        Message(role="user", content="[result of get_weather]\n-3°C\n\nAnd tomorrow?"),
    ]


def test_streamed_deltas_assemble_into_whole_calls_in_index_order() -> None:
    deltas = [
        {"index": 1, "id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
        {"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": '{"'}},
        {"index": 0, "function": {"arguments": 'x": 1}'}},
        {"index": 1, "function": {"arguments": "{}"}},
    ]
    assert assemble(deltas) == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


def build(answering: Answering | None, capabilities: Capabilities, messages: list[Message]):
    call = Call(Aggregator("p:m").candidates[0], messages, answering=answering)
    profile = ModelProfile(capabilities=capabilities)
    return build_request(call, "m", profile, defaults=Sampling(), timeout_s=None).request


def test_each_ask_is_refused_by_name_when_the_profile_lacks_it() -> None:
    user = [Message(role="user", content="q")]
    asks = {
        "tools": Answering(tools=Tools((WEATHER,))),
        "response_format": Answering(response_format=ResponseFormat("r", {"type": "object"})),
        "logprobs": Answering(top_logprobs=2),
    }
    for field, answering in asks.items():
        with pytest.raises(UnsupportedFieldError) as caught:
            build(answering, Capabilities(), user)
        assert caught.value.param == field
    everything = Capabilities(tools=True, json_schema=True, logprobs=True)
    request = build(Answering(tools=Tools((WEATHER,)), top_logprobs=2), everything, user)
    assert request.tools == Tools((WEATHER,)) and request.top_logprobs == 2


def test_an_aggregator_without_tools_reads_a_tool_conversation_as_text() -> None:
    conversation = [
        Message(role="user", content="Weather?"),
        Message(role="assistant", content="", tool_calls=[{"id": "c1", "function": CALL}]),
        Message(role="tool", content="-3°C", tool_call_id="c1"),
    ]
    request = build(Answering(), Capabilities(), conversation)
    assert [m["role"] for m in request.messages] == ["user", "assistant", "user"]
    assert all("tool_calls" not in m for m in request.messages)
    native = build(Answering(), Capabilities(tools=True), conversation)
    assert [m["role"] for m in native.messages] == ["user", "assistant", "tool"]


@pytest.mark.parametrize("strategy", ["vote", "select"])
async def test_a_strategy_that_may_answer_verbatim_refuses_what_it_cannot_honour(
    upstream: FakeUpstream, strategy: str
) -> None:
    capable = Capabilities(tools=True, json_schema=True)
    registry = Registry({"smart": ProviderConfig("smart", upstream.base_url, capabilities=capable)})
    mixture = MoA(
        ProposalLayer("smart:a", "smart:b"),
        Aggregator("smart:agg", strategy=strategy),
        registry=registry,
    )
    schema = ResponseFormat("r", {"type": "object"})
    with pytest.raises(UnsupportedFieldError) as caught:
        await mixture.arun("q", answering=Answering(response_format=schema))
    assert caught.value.param == "response_format"
    assert f"'{strategy}' strategy" in str(caught.value)
    assert upstream.requests == []


async def test_optional_tools_a_verbatim_strategy_cannot_call_are_dropped_with_a_note(
    upstream: FakeUpstream,
) -> None:
    capable = Capabilities(tools=True)
    registry = Registry({"smart": ProviderConfig("smart", upstream.base_url, capabilities=capable)})
    upstream.script("a", Reply("Paris."))
    upstream.script("b", Reply("Paris."))
    mixture = MoA(
        ProposalLayer("smart:a", "smart:b"),
        Aggregator("smart:agg", strategy="medoid"),
        registry=registry,
    )
    spec = {"type": "function", "function": {"name": "get_weather"}}
    result = await mixture.arun("Capital of France?", tools=[spec])
    await mixture.aclose()
    assert result.text == "Paris." and result.tool_calls == []
    assert any("answered in text" in note for note in result.notes)
    assert all("tools" not in body for body in upstream.requests)
