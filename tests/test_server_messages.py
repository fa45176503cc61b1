"""`POST /v1/messages`: a recipe answers Anthropic's Messages API, as the official `anthropic`
SDK (and so Claude Code, over ANTHROPIC_BASE_URL) speaks it — against `moa serve` on the fake
upstream.

The aggregator's provider (`smart`) declares tools; the proposers' (`fake`) nothing: they only
ever see text."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from moa.testing import FakeUpstream, Reply

MODEL = "claude-moa"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


def recipe(base_url: str) -> str:
    return f"""
name = "{MODEL}"
[retry]
max_attempts = 1
[[layers]]
models = [
    {{model = "fake:a", price = {{input = 1.0, output = 2.0}}}},
    {{model = "fake:b", price = {{input = 1.0, output = 2.0}}}},
]
[aggregator]
model = "smart:agg"
price = {{input = 1.0, output = 2.0}}
[providers.smart]
base_url = "{base_url}"
tools = true
"""


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    return serve_moa(recipe(upstream.base_url))


def sdk(server, **options) -> anthropic.Anthropic:
    options.setdefault("api_key", "unused")
    return anthropic.Anthropic(base_url=server.url, max_retries=0, **options)


def events(response: httpx.Response) -> list[dict]:
    """The `data:` payloads of a Messages API stream, each checked against its `event:`."""
    out, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            payload = json.loads(line[6:])
            assert payload["type"] == name
            out.append(payload)
    return out


class TestCreate:
    def test_a_recipe_answers_as_a_message(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("It is sunny.", usage=(30, 3)))
        message = sdk(server).messages.create(model=MODEL, max_tokens=64, messages=ASK)
        assert message.type == "message" and message.role == "assistant"
        assert message.model == MODEL
        assert [(b.type, b.text) for b in message.content] == [("text", "It is sunny.")]
        assert message.stop_reason == "end_turn"
        # The whole run's tokens: both proposers and the aggregator.
        assert message.usage.input_tokens > 30 and message.usage.output_tokens == 3 + 2 + 2
        moa = message.model_extra["moa"]
        assert moa["cost_usd"] > 0 and moa["failed_models"] == []
        # max_tokens is the answer's: the aggregator's call only.
        assert upstream.requests_for("agg")[0]["max_tokens"] == 64
        assert "max_tokens" not in upstream.requests_for("a")[0]

    def test_system_as_text_or_blocks_and_the_sampling_reach_the_aggregator(
        self, upstream: FakeUpstream, server
    ) -> None:
        client = sdk(server)
        # This SDK version dropped temperature / top_p / top_k; older ones and other
        # clients still send them (top_k: test_server_client_errors).
        client.messages.create(
            model=MODEL, max_tokens=10, messages=ASK, system="Be brief.", stop_sequences=["END"],
            extra_body={"temperature": 0.2, "top_p": 0.9},
        )  # fmt: skip
        client.messages.create(
            model=MODEL, max_tokens=10, messages=ASK,
            system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        )  # fmt: skip
        first, second = upstream.requests_for("agg")
        for sent in (first, second):
            assert sent["messages"][0]["role"] == "system"
            assert sent["messages"][0]["content"].startswith("Be brief.")
        assert (first["temperature"], first["top_p"]) == (0.2, 0.9)
        assert "stop" not in first  # moa applies stop_sequences itself (TestStopSequences)

    def test_a_length_cut_answer_stops_for_max_tokens(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("It is", finish_reason="length"))
        message = sdk(server).messages.create(model=MODEL, max_tokens=2, messages=ASK)
        assert message.stop_reason == "max_tokens"

    def test_the_layers_come_as_a_thinking_block_when_asked(
        self, upstream: FakeUpstream, server
    ) -> None:
        message = sdk(server).messages.create(
            model=MODEL, max_tokens=64, messages=ASK, extra_body={"moa_layers": "reasoning"}
        )
        thinking, text = message.content
        assert thinking.type == "thinking" and text.type == "text"
        assert "**fake:a**" in thinking.thinking and "proposal B" in thinking.thinking
        plain = sdk(server).messages.create(model=MODEL, max_tokens=64, messages=ASK)
        assert [b.type for b in plain.content] == ["text"]

    def test_count_tokens_answers_for_the_recipes_aggregator(
        self, upstream: FakeUpstream, server
    ) -> None:
        client = sdk(server)
        bare = client.messages.count_tokens(model=MODEL, messages=ASK)
        with_tools = client.messages.count_tokens(model=MODEL, messages=ASK, tools=[WEATHER])
        assert 0 < bare.input_tokens < with_tools.input_tokens
        assert upstream.requests == []  # counted, not run


class TestStream:
    def test_the_sdks_stream_helper_assembles_the_answer(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", Reply("It is sunny in Paris."))
        with sdk(server).messages.stream(model=MODEL, max_tokens=64, messages=ASK) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "It is sunny in Paris."
        assert final.content[0].text == text and final.stop_reason == "end_turn"
        assert final.usage.output_tokens == 5 + 2 + 2

    def test_the_event_sequence_is_anthropics(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("Hi there"))
        body = {"model": MODEL, "max_tokens": 10, "messages": ASK, "stream": True}
        with httpx.stream("POST", f"{server.url}/v1/messages", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            payloads = events(response)
        kinds = [p["type"] for p in payloads]
        assert kinds == [
            "message_start", "ping", "content_block_start", "content_block_delta",
            "content_block_delta", "content_block_stop", "message_delta", "message_stop",
        ]  # fmt: skip
        assert payloads[0]["message"]["content"] == []
        assert payloads[2]["content_block"] == {"type": "text", "text": ""}
        assert [p["delta"]["text"] for p in payloads[3:5]] == ["Hi ", "there"]
        delta = payloads[6]
        assert delta["delta"]["stop_reason"] == "end_turn"
        assert delta["usage"]["output_tokens"] > 0 and "cost_usd" in delta["moa"]

    def test_streamed_layers_are_a_thinking_block_before_the_answer(
        self, upstream: FakeUpstream, server
    ) -> None:
        with sdk(server).messages.stream(
            model=MODEL, max_tokens=64, messages=ASK, extra_headers={"X-MoA-Layers": "reasoning"}
        ) as stream:
            final = stream.get_final_message()
        assert [b.type for b in final.content] == ["thinking", "text"]
        assert "proposal A" in final.content[0].thinking

    def test_extended_thinking_asks_for_the_layers(self, upstream: FakeUpstream, server) -> None:
        with sdk(server).messages.stream(
            model=MODEL, max_tokens=2048, messages=ASK,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream:  # fmt: skip
            final = stream.get_final_message()
        assert final.content[0].type == "thinking"


class TestStopSequences:
    """moa applies them itself: OpenAI-compatible upstreams say only "stop", whether they met
    a stop sequence or the end of the answer."""

    def test_the_one_met_is_reported(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("Paris.\n\nHuman: and Lyon?"))
        message = sdk(server).messages.create(
            model=MODEL, max_tokens=64, messages=ASK, stop_sequences=["END", "\n\nHuman:"]
        )
        assert [b.text for b in message.content] == ["Paris."]
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "\n\nHuman:")
        assert message.usage.output_tokens > 0  # estimated: the upstream was closed before it

    def test_streamed_the_text_stops_before_it(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("one two END three"))
        with sdk(server).messages.stream(
            model=MODEL, max_tokens=64, messages=ASK, stop_sequences=["END"]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == "one two "
        assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "END")

    def test_an_answer_that_meets_none_ends_its_turn(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("one two"))
        with sdk(server).messages.stream(
            model=MODEL, max_tokens=64, messages=ASK, stop_sequences=["two three"]
        ) as stream:
            text = "".join(stream.text_stream)  # "two" was held back, then shown at the end
            final = stream.get_final_message()
        assert text == "one two"
        assert (final.stop_reason, final.stop_sequence) == ("end_turn", None)


class TestTools:
    def test_a_tool_use_round_trip(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("", tool_calls=[CALL]), Reply("18°C and sunny in Paris."))
        client = sdk(server)
        first = client.messages.create(model=MODEL, max_tokens=64, messages=ASK, tools=[WEATHER])
        assert first.stop_reason == "tool_use"
        (use,) = first.content
        assert (use.type, use.id, use.name, use.input) == (
            "tool_use", "call_0", "get_weather", {"city": "Paris"},
        )  # fmt: skip
        follow_up = [
            *ASK,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18°C"}],
            },
        ]
        second = client.messages.create(
            model=MODEL, max_tokens=64, messages=follow_up, tools=[WEATHER]
        )
        assert second.content[0].text == "18°C and sunny in Paris."
        asked, answered = upstream.requests_for("agg")
        assert asked["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": WEATHER["input_schema"],
                    "description": "The weather in a city",
                },
            }
        ]
        roles = [m["role"] for m in answered["messages"]]
        assert roles == ["system", "user", "assistant", "tool"]
        assert answered["messages"][2]["tool_calls"][0]["function"] == CALL
        assert answered["messages"][3] == {"role": "tool", "content": "18°C",
                                           "tool_call_id": "call_0"}  # fmt: skip
        # The proposers never hold the tools; they read the exchange as text.
        assert all("tools" not in r for r in upstream.requests_for("a"))
        assert (
            "[result of get_weather]" in upstream.requests_for("a")[-1]["messages"][-1]["content"]
        )

    def test_a_streamed_tool_call_is_a_tool_use_block(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("Let me check.", tool_calls=[CALL]))
        with sdk(server).messages.stream(
            model=MODEL, max_tokens=64, messages=ASK, tools=[WEATHER],
            tool_choice={"type": "any"},
        ) as stream:  # fmt: skip
            final = stream.get_final_message()
        text, use = final.content
        assert text.text == "Let me check."
        assert (use.type, use.name, use.input) == ("tool_use", "get_weather", {"city": "Paris"})
        assert final.stop_reason == "tool_use"
        assert upstream.requests_for("agg")[0]["tool_choice"] == "required"

    @pytest.mark.parametrize(
        ("choice", "sent"),
        [
            ({"type": "auto"}, "auto"),
            ({"type": "none"}, "none"),
            (
                {"type": "tool", "name": "get_weather"},
                {"type": "function", "function": {"name": "get_weather"}},
            ),
        ],
    )
    def test_tool_choice_takes_chats_form(
        self, upstream: FakeUpstream, server, choice: dict, sent: object
    ) -> None:
        sdk(server).messages.create(
            model=MODEL, max_tokens=10, messages=ASK, tools=[WEATHER], tool_choice=choice
        )
        assert upstream.requests_for("agg")[0]["tool_choice"] == sent


class TestErrors:
    def test_a_request_without_max_tokens_is_an_invalid_request(self, server) -> None:
        response = httpx.post(f"{server.url}/v1/messages", json={"model": MODEL, "messages": ASK})
        assert response.status_code == 400
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == "invalid_request_error"
        assert "max_tokens" in body["error"]["message"]
        assert body["request_id"] == response.headers["request-id"]

    def test_an_image_is_refused_clearly(self, upstream: FakeUpstream, server) -> None:
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "iVBORw0KGgo="}}  # fmt: skip
        with pytest.raises(anthropic.BadRequestError) as caught:
            sdk(server).messages.create(
                model=MODEL, max_tokens=10,
                messages=[{"role": "user", "content": [image, {"type": "text", "text": "?"}]}],
            )  # fmt: skip
        assert "image blocks are not supported" in caught.value.message
        assert caught.value.body["error"]["type"] == "invalid_request_error"
        assert upstream.requests == []

    def test_anthropics_server_tools_are_refused(self, upstream: FakeUpstream, server) -> None:
        with pytest.raises(anthropic.BadRequestError) as caught:
            sdk(server).messages.create(
                model=MODEL, max_tokens=10, messages=ASK,
                tools=[{"type": "web_search_20250305", "name": "web_search"}],
            )  # fmt: skip
        assert "server tools" in caught.value.message

    def test_an_unknown_model_is_not_found(self, server) -> None:
        with pytest.raises(anthropic.NotFoundError) as caught:
            sdk(server).messages.create(model="claude-nope", max_tokens=10, messages=ASK)
        assert caught.value.body["error"]["type"] == "not_found_error"
        assert MODEL in caught.value.message

    def test_keys_are_taken_as_x_api_key_or_bearer(self, serve_moa, upstream) -> None:
        server = serve_moa(recipe(upstream.base_url), api_keys=["sk-moa"])
        with pytest.raises(anthropic.AuthenticationError) as caught:
            sdk(server, api_key="sk-wrong").messages.create(model=MODEL, max_tokens=5, messages=ASK)
        assert caught.value.body["error"]["type"] == "authentication_error"
        by_header = sdk(server, api_key="sk-moa").messages.create(
            model=MODEL, max_tokens=5, messages=ASK
        )
        bearer = anthropic.Anthropic(base_url=server.url, auth_token="sk-moa", max_retries=0)
        by_bearer = bearer.messages.create(model=MODEL, max_tokens=5, messages=ASK)
        assert by_header.content[0].text == by_bearer.content[0].text == "answer from agg"

    def test_a_full_server_is_a_rate_limit(self, serve_moa, upstream: FakeUpstream) -> None:
        server = serve_moa(recipe(upstream.base_url), max_concurrent_runs=1)
        upstream.script("agg", Reply("held open", hold_open_s=30))
        client = sdk(server)
        with client.messages.stream(model=MODEL, max_tokens=5, messages=ASK) as held:
            next(iter(held.text_stream))  # the first run is answering, holding the one slot
            with pytest.raises(anthropic.RateLimitError) as caught:
                client.messages.create(model=MODEL, max_tokens=5, messages=ASK)
        assert caught.value.body["error"]["type"] == "rate_limit_error"
        assert caught.value.response.headers["retry-after"] == "1"

    def test_throttled_upstreams_are_an_overload(self, upstream: FakeUpstream, server) -> None:
        upstream.script("a", Reply(status=429))
        upstream.script("b", Reply(status=429))
        with pytest.raises(anthropic.OverloadedError) as caught:
            sdk(server).messages.create(model=MODEL, max_tokens=5, messages=ASK)
        body = caught.value.body
        assert caught.value.status_code == 529
        assert body["error"]["type"] == "overloaded_error"
        assert {f["reason"] for f in body["moa"]["failed_models"]} == {"rate_limited"}
        assert body["moa"]["failure_reason"] == "all_proposers_failed"

    def test_failed_upstreams_are_an_api_error(self, upstream: FakeUpstream, server) -> None:
        upstream.script("a", Reply(status=500))
        upstream.script("b", Reply(status=500))
        with pytest.raises(anthropic.InternalServerError) as caught:
            sdk(server).messages.create(model=MODEL, max_tokens=5, messages=ASK)
        assert caught.value.body["error"]["type"] == "api_error"
        assert len(caught.value.body["moa"]["failed_models"]) == 2

    def test_a_failure_mid_stream_is_an_error_event(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("one two three four", cut_after_tokens=2))
        with (
            pytest.raises(anthropic.APIStatusError) as caught,
            sdk(server).messages.stream(model=MODEL, max_tokens=5, messages=ASK) as stream,
        ):
            stream.get_final_message()
        assert caught.value.body["error"]["type"] == "api_error"
        assert caught.value.body["moa"]["failure_reason"] == "aggregator_failed"

    def test_other_routes_keep_openais_shape(self, serve_moa, upstream: FakeUpstream) -> None:
        server = serve_moa(recipe(upstream.base_url), api_keys=["sk-moa"])
        chat = httpx.post(f"{server.url}/v1/chat/completions", json={})
        messages = httpx.post(f"{server.url}/v1/messages/count_tokens", json={})
        assert chat.status_code == messages.status_code == 401
        assert chat.json()["error"]["code"] == "missing_api_key"
        assert messages.json()["error"]["type"] == "authentication_error"
        keyed = httpx.post(
            f"{server.url}/v1/chat/completions",
            headers={"x-api-key": "sk-moa"},
            json={"model": MODEL, "messages": ASK},
        )
        assert keyed.status_code == 200
