"""`"stream": false` asks the aggregator for its whole answer, on all three APIs: nobody reads it
as it comes, and some servers (llama-cpp-python's) return proper `tool_calls` for
`tool_choice: "auto"` only when not streaming. A streamed request still streams it."""

from __future__ import annotations

import httpx
import pytest
from tests.test_server_messages import MODEL, recipe

from moa.testing import FakeUpstream, Reply

ASK = "Weather in Paris?"
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}}
CALL = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
REQUESTS = {
    "/v1/chat/completions": {
        "messages": [{"role": "user", "content": ASK}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}],
    },
    "/v1/responses": {
        "input": ASK,
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER}],
    },
    "/v1/messages": {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": ASK}],
        "tools": [{"name": "get_weather", "input_schema": WEATHER}],
    },
}


def called(path: str, body: dict) -> dict:
    """The tool call of a whole answer, in the shape of the API of `path`."""
    if path == "/v1/chat/completions":
        return body["choices"][0]["message"]["tool_calls"][0]["function"]
    if path == "/v1/responses":
        (item,) = [i for i in body["output"] if i["type"] == "function_call"]
        return {"name": item["name"], "arguments": item["arguments"]}
    (use,) = [b for b in body["content"] if b["type"] == "tool_use"]
    return {"name": use["name"], "input": use["input"]}


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    return serve_moa(recipe(upstream.base_url))


def aggregator_streamed(upstream: FakeUpstream) -> list[bool]:
    return [c.streamed for c in upstream.calls if c.model == "agg"]


@pytest.mark.parametrize("path", list(REQUESTS))
def test_a_whole_answer_is_asked_of_the_aggregator_whole(
    upstream: FakeUpstream, server, path: str
) -> None:
    upstream.script("agg", Reply("", tool_calls=[CALL]))
    response = httpx.post(f"{server.url}{path}", json={"model": MODEL, **REQUESTS[path]})
    assert response.status_code == 200, response.text
    assert aggregator_streamed(upstream) == [False]
    assert not upstream.requests_for("agg")[0].get("stream")
    assert called(path, response.json())["name"] == "get_weather"


@pytest.mark.parametrize("path", list(REQUESTS))
def test_a_streamed_answer_still_streams_the_aggregator(
    upstream: FakeUpstream, server, path: str
) -> None:
    body = {"model": MODEL, **REQUESTS[path], "stream": True}
    with httpx.stream("POST", f"{server.url}{path}", json=body) as response:
        assert response.status_code == 200
        response.read()
    assert aggregator_streamed(upstream) == [True]
