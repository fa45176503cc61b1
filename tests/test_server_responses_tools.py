"""Function tools and structured output on `POST /v1/responses`, as OpenAI's Responses API has
them: the openai SDK's `client.responses.create(..., tools=[...])` against `moa serve` on the
fake upstream, streamed and not, through a whole agent loop (call → function_call_output →
final answer), and `client.responses.parse(..., text_format=...)`.

The aggregator's provider (`smart`) declares tools and json_schema; the proposers' (`fake`)
declares neither."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from moa.testing import FakeUpstream, Reply
from test_server_tools import MODEL, WEATHER, recipe

# The same function as WEATHER, in the Responses API's flat shape (FunctionToolParam).
FLAT_WEATHER = {"type": "function", **WEATHER["function"]}
CALL = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
QUESTION = "Weather in Paris?"


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    return serve_moa(recipe(upstream.base_url))


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def run_tool(call) -> dict:
    """What an app does with a function_call item: run it, answer with its output."""
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    return {"type": "function_call_output", "call_id": call.call_id, "output": "18°C, sunny"}


def test_the_aggregator_answers_with_a_function_call_item(upstream: FakeUpstream, server) -> None:
    upstream.script("agg", Reply("", tool_calls=[CALL]))
    response = sdk(server).responses.create(
        model=MODEL, input=QUESTION, tools=[FLAT_WEATHER], tool_choice="auto"
    )
    assert response.status == "completed"
    (call,) = response.output
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == ("call_0", *CALL.values())
    assert call.id is not None and call.id.startswith("fc_") and call.status == "completed"
    assert response.output_text == ""
    assert [t.name for t in response.tools if t.type == "function"] == ["get_weather"]
    # The aggregator got the tools in chat's nested shape; the proposers got none.
    (sent,) = upstream.requests_for("agg")
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto"
    assert all("tools" not in r for r in upstream.requests_for("a") + upstream.requests_for("b"))


def test_a_whole_agent_loop_calls_the_tool_then_answers_from_its_output(
    upstream: FakeUpstream, server
) -> None:
    upstream.script("agg", Reply("", tool_calls=[CALL]), Reply("18°C and sunny in Paris."))
    client = sdk(server)
    conversation: list = [{"role": "user", "content": QUESTION}]
    for _ in range(3):  # bounded: the scripted aggregator answers on its second turn
        response = client.responses.create(model=MODEL, input=conversation, tools=[FLAT_WEATHER])
        conversation += [item.model_dump(exclude_none=True) for item in response.output]
        calls = [item for item in response.output if item.type == "function_call"]
        if not calls:
            break
        conversation += [run_tool(call) for call in calls]
    assert response.output_text == "18°C and sunny in Paris."
    assert len(upstream.requests_for("agg")) == 2


def test_the_follow_up_reaches_the_aggregator_as_the_chat_route_sends_it(
    upstream: FakeUpstream, server
) -> None:
    upstream.script("agg", Reply("It is 18°C."), Reply("It is 18°C."))
    sdk(server).responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": QUESTION},
            {"type": "function_call", "call_id": "call_7", **CALL},
            {"type": "function_call_output", "call_id": "call_7", "output": "18°C, sunny"},
        ],
        tools=[FLAT_WEATHER],
    )
    sdk(server).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": QUESTION},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_7", "type": "function", "function": CALL}],
            },
            {"role": "tool", "tool_call_id": "call_7", "content": "18°C, sunny"},
        ],
        tools=[WEATHER],
    )
    by_responses, by_chat = upstream.requests_for("agg")
    assert by_responses["messages"] == by_chat["messages"]
    assert [m["role"] for m in by_responses["messages"]] == ["system", "user", "assistant", "tool"]
    assert by_responses["tools"] == by_chat["tools"]
    # The proposers see the call and its result as text, as on chat completions.
    proposer = upstream.requests_for("a")[0]["messages"]
    assert proposer[-1]["content"] == "[result of get_weather]\n18°C, sunny"


def test_a_streamed_call_arrives_as_the_typed_events_the_sdk_assembles(
    upstream: FakeUpstream, server
) -> None:
    upstream.script(
        "agg", Reply("Checking.", tool_calls=[CALL, {"name": "get_time", "arguments": "{}"}])
    )
    with sdk(server).responses.stream(
        model=MODEL, input=QUESTION, tools=[FLAT_WEATHER], parallel_tool_calls=True
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    message, weather, time_call = final.output
    assert message.type == "message" and final.output_text == "Checking."
    assert (weather.type, weather.call_id, weather.name, weather.arguments) == (
        "function_call",
        "call_0",
        *CALL.values(),
    )
    assert (time_call.call_id, time_call.name, time_call.arguments) == ("call_1", "get_time", "{}")
    types = [e.type for e in events]
    # Each item opens, streams and closes before the next one opens.
    first_call = types.index("response.function_call_arguments.delta")
    assert types.index("response.output_text.done") < first_call
    assert types.count("response.output_item.added") == types.count("response.output_item.done")
    assert types.count("response.output_item.added") == 3
    assert types[-1] == "response.completed"
    deltas = [
        e.delta
        for e in events
        if e.type == "response.function_call_arguments.delta" and e.item_id == weather.id
    ]
    assert len(deltas) == 2 and "".join(deltas) == CALL["arguments"]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == [CALL["arguments"], "{}"]
    assert upstream.requests_for("agg")[0]["parallel_tool_calls"] is True


def test_a_streamed_agent_loop_ends_in_streamed_text(upstream: FakeUpstream, server) -> None:
    upstream.script("agg", Reply("", tool_calls=[CALL]), Reply("Sunny, 18°C."))
    client = sdk(server)
    conversation: list = [{"role": "user", "content": QUESTION}]
    with client.responses.stream(model=MODEL, input=conversation, tools=[FLAT_WEATHER]) as first:
        (call,) = first.get_final_response().output
    assert call.type == "function_call"
    conversation += [call.model_dump(exclude_none=True), run_tool(call)]
    stream = client.responses.create(
        model=MODEL, input=conversation, tools=[FLAT_WEATHER], stream=True
    )
    text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert text == "Sunny, 18°C."


@pytest.mark.parametrize(
    ("asked", "sent"),
    [
        ("required", "required"),
        ({"type": "function", "name": "get_weather"}, {"type": "function",
                                                       "function": {"name": "get_weather"}}),
    ],
)  # fmt: skip
def test_tool_choice_takes_the_chat_form(upstream: FakeUpstream, server, asked, sent) -> None:
    upstream.script("agg", Reply("", tool_calls=[CALL]))
    sdk(server).responses.create(
        model=MODEL, input=QUESTION, tools=[FLAT_WEATHER], tool_choice=asked
    )
    assert upstream.requests_for("agg")[0]["tool_choice"] == sent


def test_a_hosted_tool_is_a_400_naming_what_is_supported(upstream: FakeUpstream, server) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(server).responses.create(
            model=MODEL, input=QUESTION, tools=[FLAT_WEATHER, {"type": "web_search"}]
        )
    assert refused.value.param == "tools[1].type"
    assert "'web_search'" in refused.value.message and "function" in refused.value.message
    assert upstream.requests == []


def test_an_output_for_a_call_never_made_is_a_400(upstream: FakeUpstream, server) -> None:
    body = {
        "model": MODEL,
        "input": [
            {"role": "user", "content": QUESTION},
            {"type": "function_call", "call_id": "call_1", **CALL},
            {"type": "function_call_output", "call_id": "call_2", "output": "?"},
        ],
    }
    response = httpx.post(f"{server.url}/v1/responses", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input[2].call_id"


def test_optional_tools_an_aggregator_cannot_take_get_a_text_answer(
    upstream: FakeUpstream, moa_server
) -> None:
    """As on chat completions (Open WebUI attaches tools to every message)."""
    upstream.script("agg", Reply("A plain answer"))
    response = sdk(moa_server).responses.create(
        model="test-moa", input=QUESTION, tools=[FLAT_WEATHER]
    )
    assert response.output_text == "A plain answer"
    assert "tools" not in upstream.requests_for("agg")[0]


class Capital(BaseModel):
    city: str
    population_millions: float


def test_parse_gets_the_answer_parsed_as_the_schema(upstream: FakeUpstream, server) -> None:
    upstream.script("agg", Reply('{"city": "Paris", "population_millions": 2.1}'))
    response = sdk(server).responses.parse(
        model=MODEL, input="Capital of France?", text_format=Capital
    )
    assert response.output_parsed == Capital(city="Paris", population_millions=2.1)
    sent = upstream.requests_for("agg")[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Capital"
    assert sent["json_schema"]["strict"] is True
    assert "response_format" not in upstream.requests_for("a")[0]


def test_json_object_is_passed_as_such(upstream: FakeUpstream, server) -> None:
    upstream.script("agg", Reply('{"ok": true}'))
    response = sdk(server).responses.create(
        model=MODEL, input="q", text={"format": {"type": "json_object"}}
    )
    assert json.loads(response.output_text) == {"ok": True}
    assert upstream.requests_for("agg")[0]["response_format"] == {"type": "json_object"}


def test_a_format_the_aggregator_cannot_follow_is_a_400_naming_text_format(
    upstream: FakeUpstream, moa_server
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(moa_server).responses.parse(model="test-moa", input="q", text_format=Capital)
    assert refused.value.param == "text.format"
    assert upstream.requests == []
