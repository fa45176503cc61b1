"""What real clients found (issue 33): a failed run carries its trace when asked, and a bad
request is a 400 naming the field before any upstream call, on every API it can reach."""

from __future__ import annotations

import httpx
import pytest
from tests.test_server_messages import MODEL, recipe

from moa.testing import FakeUpstream, Reply

CHAT, RESPONSES, MESSAGES = "/v1/chat/completions", "/v1/responses", "/v1/messages"
ASK = "Weather in Paris?"
ASKED = {
    CHAT: {"messages": [{"role": "user", "content": ASK}]},
    RESPONSES: {"input": ASK},
    MESSAGES: {"max_tokens": 64, "messages": [{"role": "user", "content": ASK}]},
}


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    return serve_moa(recipe(upstream.base_url))


def post(server, path: str, body: dict, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json={"model": MODEL, **body}, **kwargs)


def error_of(response: httpx.Response) -> dict:
    """The error object, in OpenAI's shape or Anthropic's."""
    return response.json()["error"]


class TestTraceOfAFailedRun:
    @pytest.mark.parametrize("path", [CHAT, RESPONSES, MESSAGES])
    def test_is_in_the_error_body_when_asked(
        self, upstream: FakeUpstream, server, path: str
    ) -> None:
        upstream.script("agg", Reply(status=500))
        response = post(server, path, {**ASKED[path], "moa_trace": True})
        assert response.status_code == 502
        trace = response.json()["moa"]
        assert trace["failure_reason"] == "aggregator_failed"
        assert [c["role"] for c in trace["calls"]] == ["proposer", "proposer", "aggregator"]
        assert [c["output"] for c in trace["calls"][:2]] == ["proposal A", "proposal B"]
        assert trace["calls"][-1]["status"] == "failed"

    def test_by_the_header_too_and_not_unasked(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply(status=500))
        asked = post(server, CHAT, ASKED[CHAT], headers={"X-MoA-Trace": "true"})
        assert len(asked.json()["moa"]["calls"]) == 3
        unasked = post(server, CHAT, ASKED[CHAT])
        assert '"moa_trace": true' in error_of(unasked)["message"]
        assert "calls" not in unasked.json()["moa"]

    def test_in_a_streams_error_event(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("one two three four", cut_after_tokens=2))
        body = {"model": MODEL, **ASKED[CHAT], "stream": True, "moa_trace": True}
        with httpx.stream("POST", f"{server.url}{CHAT}", json=body) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: {")]
        failed = httpx.Response(200, content=lines[-1][len("data: ") :]).json()
        assert failed["error"]["code"] == "aggregator_failed"
        assert failed["moa"]["calls"][-1]["output"] == "one two "


def refused(upstream: FakeUpstream, response: httpx.Response, param: str, *words: str) -> None:
    """A 400 naming `param` (OpenAI's `param`, or Anthropic's message), before any call."""
    assert response.status_code == 400, response.text
    error = error_of(response)
    if "param" in error:
        assert error["param"] == param
    assert param.split(".")[0] in error["message"]
    for word in words:
        assert word in error["message"]
    assert upstream.requests == []


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = {
    CHAT: [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}],
    RESPONSES: [{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}],
    MESSAGES: [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}],
}
NAMED = {
    CHAT: {"type": "function", "function": {"name": "get_wether"}},
    RESPONSES: {"type": "function", "name": "get_wether"},
    MESSAGES: {"type": "tool", "name": "get_wether"},
}


class TestToolChoice:
    @pytest.mark.parametrize("path", [CHAT, RESPONSES, MESSAGES])
    def test_naming_a_tool_not_given_is_refused_before_any_call(
        self, upstream: FakeUpstream, server, path: str
    ) -> None:
        body = {**ASKED[path], "tools": TOOLS[path], "tool_choice": NAMED[path]}
        refused(upstream, post(server, path, body), "tool_choice", "get_wether", "get_weather")

    @pytest.mark.parametrize("tools", [True, False], ids=["with tools", "without"])
    def test_a_value_that_is_no_choice_is_refused_before_any_call(
        self, upstream: FakeUpstream, server, tools: bool
    ) -> None:
        body = {**ASKED[CHAT], "tool_choice": "sometimes"}
        if tools:
            body["tools"] = TOOLS[CHAT]
        refused(upstream, post(server, CHAT, body), "tool_choice", "sometimes")

    @pytest.mark.parametrize("path", [CHAT, RESPONSES])
    def test_required_without_tools_is_refused(
        self, upstream: FakeUpstream, server, path: str
    ) -> None:
        body = {**ASKED[path], "tool_choice": "required"}
        refused(upstream, post(server, path, body), "tool_choice", "no tools")

    def test_a_choice_of_a_given_tool_still_runs(self, upstream: FakeUpstream, server) -> None:
        body = {**ASKED[CHAT], "tools": TOOLS[CHAT]}
        body["tool_choice"] = {"type": "function", "function": {"name": "get_weather"}}
        assert post(server, CHAT, body).status_code == 200
        assert upstream.requests_for("agg")[0]["tool_choice"] == body["tool_choice"]


class TestNumbers:
    @pytest.mark.parametrize("path", [CHAT, MESSAGES])
    def test_max_tokens_as_a_string_is_refused(
        self, upstream: FakeUpstream, server, path: str
    ) -> None:
        refused(upstream, post(server, path, {**ASKED[path], "max_tokens": "10"}), "max_tokens")

    def test_a_whole_float_still_counts_as_an_integer(self, upstream: FakeUpstream, server) -> None:
        assert post(server, MESSAGES, {**ASKED[MESSAGES], "max_tokens": 10.0}).status_code == 200
        assert upstream.requests_for("agg")[0]["max_tokens"] == 10


def test_a_tool_message_answering_no_call_is_refused(upstream: FakeUpstream, server) -> None:
    orphan = {"role": "tool", "tool_call_id": "call_9", "content": "18°C"}
    body = {"messages": [{"role": "user", "content": ASK}, orphan], "tools": TOOLS[CHAT]}
    refused(upstream, post(server, CHAT, body), "messages[1].tool_call_id", "call_9")


def test_an_empty_content_list_is_said_to_be_empty(upstream: FakeUpstream, server) -> None:
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": []}]}
    refused(upstream, post(server, MESSAGES, body), "messages[0].content", "content is empty")


class TestTopK:
    def test_is_refused_where_the_provider_does_not_declare_it(
        self, upstream: FakeUpstream, server
    ) -> None:
        body = {**ASKED[MESSAGES], "top_k": 5}
        refused(upstream, post(server, MESSAGES, body), "top_k", "smart:agg", "top_k = true")

    def test_reaches_the_aggregator_where_it_does(self, upstream: FakeUpstream, serve_moa) -> None:
        server = serve_moa(recipe(upstream.base_url) + "top_k = true\n")
        assert post(server, MESSAGES, {**ASKED[MESSAGES], "top_k": 5}).status_code == 200
        assert upstream.requests_for("agg")[0]["top_k"] == 5
        assert "top_k" not in upstream.requests_for("a")[0]  # the answer's setting only
