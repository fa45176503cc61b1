"""`invocation = "auto"`: the aggregator is asked first, with a private `consult_the_panel`
tool beside the client's; the layers run only when it calls it. On every route (chat
completions, Responses, Messages), streamed and not, against the fake upstream scripted to call
the tool or not."""

from __future__ import annotations

import asyncio
import json

import anthropic
import httpx
import openai
import pytest

from moa import ProviderConfig, Registry, recipes
from moa.engine.invocation import PANEL, PANEL_TOOL
from moa.errors import ConfigError, RecipeError
from moa.testing import FakeUpstream, Reply

MODEL = "auto-moa"
ASK = [{"role": "user", "content": "What is the capital of France?"}]
CONVENE = Reply("", tool_calls=[{"name": PANEL, "arguments": "{}"}])
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def recipe(base_url: str) -> str:
    # Priced at a tenth of a cent a token, so budgets are easy to reason about.
    price = "price = {input = 1000.0, output = 1000.0}"
    return f"""
name = "{MODEL}"
invocation = "auto"
[retry]
max_attempts = 1
[[layers]]
models = [
    {{model = "fake:a", max_tokens = 100, {price}}},
    {{model = "fake:b", max_tokens = 100, {price}}},
]
[aggregator]
model = "smart:agg"
{price}
[providers.smart]
base_url = "{base_url}"
tools = true
"""


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A: Paris"))
    upstream.script("b", Reply("proposal B: Paris, on the Seine"))
    return serve_moa(recipe(upstream.base_url))


def chat(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def claude(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)


def proposers_asked(upstream: FakeUpstream) -> int:
    return len(upstream.requests_for("a")) + len(upstream.requests_for("b"))


class TestTheAggregatorDecides:
    def test_an_easy_request_is_one_call(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("Paris."))
        completion = chat(server).chat.completions.create(model=MODEL, messages=ASK)
        assert completion.choices[0].message.content == "Paris."
        assert completion.choices[0].message.tool_calls is None
        assert proposers_asked(upstream) == 0 and len(upstream.requests) == 1
        (asked,) = upstream.requests_for("agg")
        assert asked["tools"] == [PANEL_TOOL] and asked["tool_choice"] == "auto"
        assert completion.model_extra["moa"]["panel_convened"] is False

    def test_when_it_calls_the_panel_the_layers_answer_as_the_tools_result(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", CONVENE, Reply("Paris, on the Seine."))
        completion = chat(server).chat.completions.create(model=MODEL, messages=ASK)
        choice = completion.choices[0]
        assert choice.message.content == "Paris, on the Seine."
        assert choice.message.tool_calls is None and choice.finish_reason == "stop"
        assert proposers_asked(upstream) == 2
        # The proposers read the conversation, not the private tool.
        assert upstream.requests_for("a")[0]["messages"] == ASK
        _, answered = upstream.requests_for("agg")
        assert [m["role"] for m in answered["messages"]] == ["user", "assistant", "tool"]
        call = answered["messages"][1]["tool_calls"][0]
        assert call["function"]["name"] == PANEL
        result = answered["messages"][2]
        assert result["tool_call_id"] == call["id"]
        assert "1. proposal A: Paris" in result["content"]
        assert "2. proposal B: Paris, on the Seine" in result["content"]
        assert "tools" not in answered  # no second consultation; the client gave no tools
        assert completion.model_extra["moa"]["panel_convened"] is True

    def test_the_trace_says_what_was_decided(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", CONVENE, Reply("Paris."))
        body = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": MODEL, "messages": ASK, "moa_trace": True},
        ).json()
        assert body["moa"]["panel_convened"] is True
        assert any(PANEL in note for note in body["moa"]["notes"])
        roles = [c["role"] for c in body["moa"]["calls"]]
        assert roles == ["aggregator", "proposer", "proposer", "aggregator"]

    def test_a_streamed_answer_never_shows_the_private_tool(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", CONVENE, Reply("Paris, on the Seine."))
        with chat(server).chat.completions.stream(model=MODEL, messages=ASK) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].message.content == "Paris, on the Seine."
        assert not final.choices[0].message.tool_calls
        assert final.choices[0].finish_reason == "stop"

    def test_text_before_the_call_stays_the_start_of_the_answer(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script(
            "agg",
            Reply("Let me ask.", tool_calls=[{"name": PANEL, "arguments": "{}"}]),
            Reply("Paris."),
        )
        with chat(server).chat.completions.stream(model=MODEL, messages=ASK) as stream:
            final = stream.get_final_completion()
        assert final.choices[0].message.content == "Let me ask.\n\nParis."
        assert upstream.requests_for("agg")[1]["messages"][1]["content"] == "Let me ask."


class TestClientTools:
    def test_the_clients_tools_sit_beside_the_private_one(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", Reply("", tool_calls=[CALL]))
        completion = chat(server).chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER]
        )
        (call,) = completion.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        assert upstream.requests_for("agg")[0]["tools"] == [WEATHER, PANEL_TOOL]
        assert proposers_asked(upstream) == 0

    @pytest.mark.parametrize("stream", [False, True])
    def test_after_the_panel_only_the_clients_tools_are_offered(
        self, upstream: FakeUpstream, server, stream: bool
    ) -> None:
        upstream.script("agg", CONVENE, Reply("", tool_calls=[CALL]))
        client = chat(server)
        if stream:
            with client.chat.completions.stream(
                model=MODEL, messages=ASK, tools=[WEATHER]
            ) as events:
                message = events.get_final_completion().choices[0].message
        else:
            message = (
                client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
                .choices[0]
                .message
            )
        assert [c.function.name for c in message.tool_calls or []] == ["get_weather"]
        assert upstream.requests_for("agg")[1]["tools"] == [WEATHER]

    def test_a_tool_of_the_same_name_is_refused(self, upstream: FakeUpstream, server) -> None:
        mine = {"type": "function", "function": {"name": PANEL, "parameters": {}}}
        with pytest.raises(openai.BadRequestError) as caught:
            chat(server).chat.completions.create(model=MODEL, messages=ASK, tools=[mine])
        assert caught.value.param == "tools" and upstream.requests == []


class TestEveryRoute:
    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("convened", [False, True])
    def test_responses(self, upstream: FakeUpstream, server, stream: bool, convened: bool) -> None:
        upstream.script("agg", *([CONVENE] if convened else []), Reply("Paris."))
        client = chat(server)
        if stream:
            with client.responses.stream(model=MODEL, input="Capital of France?") as events:
                response = events.get_final_response()
        else:
            response = client.responses.create(model=MODEL, input="Capital of France?")
        assert response.output_text == "Paris."
        assert [item.type for item in response.output] == ["message"]
        assert response.tools == []  # the private tool is not echoed
        assert response.model_extra["moa"]["panel_convened"] is convened
        assert proposers_asked(upstream) == (2 if convened else 0)

    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("convened", [False, True])
    def test_messages(self, upstream: FakeUpstream, server, stream: bool, convened: bool) -> None:
        upstream.script("agg", *([CONVENE] if convened else []), Reply("Paris."))
        client = claude(server)
        if stream:
            with client.messages.stream(model=MODEL, max_tokens=50, messages=ASK) as events:
                message = events.get_final_message()
        else:
            message = client.messages.create(model=MODEL, max_tokens=50, messages=ASK)
        assert [(b.type, b.text) for b in message.content] == [("text", "Paris.")]
        assert message.stop_reason == "end_turn"
        assert proposers_asked(upstream) == (2 if convened else 0)
        if not stream:
            assert message.model_extra["moa"]["panel_convened"] is convened

    def test_messages_stream_says_it_in_the_message_delta(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", CONVENE, Reply("Paris."))
        body = {"model": MODEL, "max_tokens": 50, "messages": ASK, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/messages", json=body) as response:
            lines = [json.loads(x[6:]) for x in response.iter_lines() if x.startswith("data: ")]
        (delta,) = [p for p in lines if p["type"] == "message_delta"]
        assert delta["moa"]["panel_convened"] is True
        assert not [p for p in lines if p.get("content_block", {}).get("type") == "tool_use"]


class TestBudget:
    def test_a_budget_counts_the_worst_case_before_the_first_call(
        self, upstream: FakeUpstream, server
    ) -> None:
        """An easy request would cost one call, but the aggregator might convene the panel:
        the budget must cover the question, both proposers and the answer after them."""
        upstream.script("agg", Reply("Paris."))
        body = {"model": MODEL, "messages": ASK, "max_tokens": 100}
        refused = httpx.post(
            f"{server.url}/v1/chat/completions", json={**body, "moa_max_cost_usd": 0.5}
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "budget_exceeded"
        assert "invocation auto" in refused.json()["error"]["message"]
        assert upstream.requests == []
        kept = httpx.post(f"{server.url}/v1/chat/completions", json={**body, "moa_max_cost_usd": 5})
        assert kept.status_code == 200
        assert kept.json()["moa"]["cost_usd"] < 0.5  # what it spent: one call

    def test_the_whole_run_bound_includes_both_aggregator_calls(self, upstream) -> None:
        auto = recipes.build(recipes.parse(recipe(upstream.base_url)), _registry(upstream))
        always = recipes.build(
            recipes.parse(recipe(upstream.base_url).replace('"auto"', '"always"')),
            _registry(upstream),
        )
        assert asyncio.run(auto.worst_case_usd(ASK)) > asyncio.run(always.worst_case_usd(ASK))


def _registry(upstream: FakeUpstream) -> Registry:
    return Registry({"fake": ProviderConfig("fake", upstream.base_url)}, env={})


class TestRecipes:
    def test_auto_needs_layers(self, upstream) -> None:
        text = recipe(upstream.base_url)
        bare = text[: text.index("[[layers]]")] + text[text.index("[aggregator]") :]
        with pytest.raises(ConfigError, match="give the recipe layers"):
            recipes.build(recipes.parse(bare), _registry(upstream))

    def test_auto_needs_one_synthesis(self, upstream) -> None:
        text = recipe(upstream.base_url).replace(
            'model = "smart:agg"', 'model = "smart:agg"\nstrategy = "vote"'
        )
        with pytest.raises(ConfigError, match='strategy = "synthesize"'):
            recipes.build(recipes.parse(text), _registry(upstream))

    def test_an_aggregator_that_cannot_take_tools_is_a_server_error_naming_the_fix(
        self, serve_moa, upstream: FakeUpstream
    ) -> None:
        server = serve_moa(recipe(upstream.base_url).replace("tools = true", ""))
        response = httpx.post(
            f"{server.url}/v1/chat/completions", json={"model": MODEL, "messages": ASK}
        )
        assert response.status_code == 500
        assert "tools = true" in response.json()["error"]["message"]
        assert upstream.requests == []

    def test_the_schema_refuses_other_values(self, upstream) -> None:
        with pytest.raises(RecipeError, match="invocation"):
            recipes.parse(recipe(upstream.base_url).replace('"auto"', '"sometimes"'))
