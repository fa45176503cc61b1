"""A server that repeats a call's id and name in every streamed delta (llama-cpp-python's does)
still gives clients one name: `get_weather`, never `get_weatherget_weather…` (what openai-agents
then failed on, "Tool get_weatherget_weather… not found")."""

from __future__ import annotations

import openai
import pytest

from moa.testing import FakeUpstream, Reply
from moa.tooluse import DeltaCleaner, assemble
from test_server_responses_tools import FLAT_WEATHER
from test_server_tools import ASK, CALL, MODEL, WEATHER, recipe

REPEATING = Reply("", tool_calls=[CALL], repeat_call_names=True)


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    upstream.script("agg", REPEATING)
    return serve_moa(recipe(upstream.base_url))


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_the_fake_upstream_repeats_the_name_as_such_servers_do(upstream: FakeUpstream) -> None:
    upstream.script("agg", REPEATING)
    client = openai.OpenAI(base_url=upstream.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(model="agg", messages=ASK, stream=True)
    names = [
        c.function.name
        for chunk in stream
        for c in (chunk.choices[0].delta.tool_calls or [] if chunk.choices else [])
    ]
    assert names == ["get_weather"] * 3


def test_a_whole_answer_has_one_name(server) -> None:
    reply = sdk(server).chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
    (call,) = reply.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_0", *CALL.values())


def test_a_stream_sends_the_id_and_name_once_so_the_sdk_assembles_one_name(server) -> None:
    with sdk(server).chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER]) as s:
        chunks = [e.chunk for e in s if e.type == "chunk"]
        final = s.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert (call.id, call.function.name, call.function.arguments) == ("call_0", *CALL.values())
    deltas = [c for k in chunks if k.choices for c in k.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas if d.function and d.function.name] == ["get_weather"]
    assert [d.id for d in deltas if d.id] == ["call_0"]


def test_the_responses_api_has_one_name(server) -> None:
    response = sdk(server).responses.create(model=MODEL, input="Weather?", tools=[FLAT_WEATHER])
    (call,) = response.output
    assert (call.call_id, call.name, call.arguments) == ("call_0", *CALL.values())


def test_the_responses_stream_opens_and_closes_the_call_with_one_name(server) -> None:
    with sdk(server).responses.stream(model=MODEL, input="Weather?", tools=[FLAT_WEATHER]) as s:
        events = list(s)
    added = [e.item for e in events if e.type == "response.output_item.added"]
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.name for i in added] == [i.name for i in done] == ["get_weather"]
    (arguments_done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert arguments_done.name == "get_weather"


def test_a_name_sent_in_pieces_is_still_joined() -> None:
    pieces = [
        {"index": 0, "id": "c", "type": "function", "function": {"name": "get_"}},
        {"index": 0, "function": {"name": "weather", "arguments": "{}"}},
    ]
    assert assemble(pieces)[0]["function"]["name"] == "get_weather"
    cleaned = DeltaCleaner()(pieces)
    assert assemble(cleaned)[0]["function"]["name"] == "get_weather"
    assert cleaned[1]["function"] == {"name": "weather", "arguments": "{}"}


def test_two_calls_keep_their_own_names() -> None:
    clean = DeltaCleaner()
    deltas = [
        {"index": i, "id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
        for i, n in ((0, "get_weather"), (1, "get_time"))
        for a in ("", "{}")
    ]
    calls = assemble(clean(deltas))
    assert [(c["id"], c["function"]["name"]) for c in calls] == [
        ("c0", "get_weather"),
        ("c1", "get_time"),
    ]
    assert [c["function"]["arguments"] for c in calls] == ["{}", "{}"]
