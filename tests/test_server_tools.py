"""A MoA as the acting model of an app: tools, structured output, `n` and logprobs, with real
clients (the openai SDK, LangChain) against `moa serve` on the fake upstream.

The aggregator's provider (`smart`) declares tools, json_schema and logprobs; the proposers'
(`fake`) declares nothing — they only ever see text."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

from moa.testing import FakeUpstream, Reply

MODEL = "tool-moa"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
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
price = {{input = 1.0, output = 2.0}}  # priced, so a request's budget can be kept
[providers.smart]
base_url = "{base_url}"
tools = true
json_schema = true
logprobs = true
"""


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    return serve_moa(recipe(upstream.base_url))


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def continued(call_id: str = "call_0") -> list[dict]:
    """The conversation after the app ran the aggregator's call."""
    return [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": CALL}],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "18°C, sunny"},
    ]


class TestTools:
    def test_the_aggregator_answers_with_a_tool_call(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("", tool_calls=[CALL]))
        completion = sdk(server).chat.completions.create(
            model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="auto"
        )
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        (call,) = choice.message.tool_calls or []
        assert call.id == "call_0"
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        # Only the aggregator holds the tools; the proposers answer in text.
        (sent,) = upstream.requests_for("agg")
        assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "auto"
        assert all(
            "tools" not in r for r in upstream.requests_for("a") + upstream.requests_for("b")
        )

    def test_a_streamed_tool_call_arrives_as_deltas_the_sdk_assembles(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script(
            "agg", Reply("", tool_calls=[CALL, {"name": "get_time", "arguments": "{}"}])
        )
        with sdk(server).chat.completions.stream(
            model=MODEL, messages=ASK, tools=[WEATHER], parallel_tool_calls=True
        ) as stream:
            final = stream.get_final_completion()
        choice = final.choices[0]
        assert choice.finish_reason == "tool_calls"
        calls = choice.message.tool_calls or []
        assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
            ("call_0", "get_weather", '{"city": "Paris"}'),
            ("call_1", "get_time", "{}"),
        ]
        assert upstream.requests_for("agg")[0]["parallel_tool_calls"] is True

    def test_after_the_tool_result_the_aggregator_sees_it_natively_and_proposers_as_text(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", Reply("It is 18°C and sunny in Paris."))
        completion = sdk(server).chat.completions.create(
            model=MODEL, messages=continued(), tools=[WEATHER]
        )
        assert completion.choices[0].message.content == "It is 18°C and sunny in Paris."
        assert completion.choices[0].finish_reason == "stop"
        (agg,) = upstream.requests_for("agg")
        roles = [m["role"] for m in agg["messages"]]
        assert roles == ["system", "user", "assistant", "tool"]
        assert agg["messages"][2]["tool_calls"][0]["function"] == CALL
        assert agg["messages"][3]["tool_call_id"] == "call_0"
        (proposer,) = upstream.requests_for("a")
        assert [m["role"] for m in proposer["messages"]] == ["user", "assistant", "user"]
        assert "get_weather" in proposer["messages"][1]["content"]
        assert proposer["messages"][2]["content"] == "[result of get_weather]\n18°C, sunny"

    def test_open_webui_style_tools_attached_and_no_call_made_is_a_text_answer(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", Reply("Just an answer"))
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": MODEL, "messages": ASK, "tools": [WEATHER], "stream": True},
        )
        assert response.status_code == 200
        payloads = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")
        ]
        text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads)
        assert text == "Just an answer"
        assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
        assert "tool_choice" not in upstream.requests_for("agg")[0]

    def test_tools_that_must_be_called_are_refused_when_the_aggregator_cannot_take_them(
        self, upstream: FakeUpstream, moa_server
    ) -> None:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(moa_server).chat.completions.create(
                model="test-moa", messages=ASK, tools=[WEATHER], tool_choice="required"
            )
        assert caught.value.param == "tools"
        assert "[providers.fake]" in caught.value.message
        assert upstream.requests == []

    def test_optional_tools_an_aggregator_cannot_take_get_a_text_answer(
        self, upstream: FakeUpstream, moa_server
    ) -> None:
        """Open WebUI attaches its tools to every message, whatever the model: with
        tool_choice unset, answering in text is what the request allows."""
        upstream.script("agg", Reply("A plain answer"))
        answer = sdk(moa_server).chat.completions.create(
            model="test-moa", messages=ASK, tools=[WEATHER]
        )
        assert answer.choices[0].message.content == "A plain answer"
        assert answer.choices[0].finish_reason == "stop"
        assert "tools" not in upstream.requests_for("agg")[0]

    def test_langchain_agent_loop_calls_the_tool_then_answers(
        self, upstream: FakeUpstream, server
    ) -> None:
        langchain_openai = pytest.importorskip("langchain_openai")
        from langchain_core.messages import HumanMessage, ToolMessage
        from langchain_core.tools import tool

        @tool
        def get_weather(city: str) -> str:
            """The weather in a city."""
            return f"18°C in {city}"

        upstream.script("agg", Reply("", tool_calls=[CALL]), Reply("Paris: 18°C. Enjoy the sun."))
        chat = langchain_openai.ChatOpenAI(
            model=MODEL, base_url=f"{server.url}/v1", api_key="unused", max_retries=0
        ).bind_tools([get_weather])
        messages: list = [HumanMessage("Weather in Paris?")]
        for _ in range(3):  # bounded: the scripted aggregator answers on its second turn
            reply = chat.invoke(messages)
            messages.append(reply)
            if not reply.tool_calls:
                break
            for call in reply.tool_calls:
                messages.append(
                    ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
                )
        assert messages[-1].content == "Paris: 18°C. Enjoy the sun."
        assert isinstance(messages[2], ToolMessage) and messages[2].content == "18°C in Paris"
        second = upstream.requests_for("agg")[1]
        assert second["messages"][-1] == {
            "role": "tool",
            "content": "18°C in Paris",
            "tool_call_id": "call_0",
        }


class Capital(BaseModel):
    city: str
    population_millions: float


class TestStructuredOutput:
    def test_sdk_parse_gets_the_schema_answer_parsed(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply('{"city": "Paris", "population_millions": 2.1}'))
        completion = sdk(server).chat.completions.parse(
            model=MODEL, messages=ASK, response_format=Capital
        )
        assert completion.choices[0].message.parsed == Capital(
            city="Paris", population_millions=2.1
        )
        sent = upstream.requests_for("agg")[0]["response_format"]
        assert sent["type"] == "json_schema"
        assert sent["json_schema"]["name"] == "Capital"
        assert sent["json_schema"]["strict"] is True
        assert sent["json_schema"]["schema"]["required"] == ["city", "population_millions"]
        # Proposers write free text; only the final answer is held to the schema.
        assert "response_format" not in upstream.requests_for("a")[0]

    def test_json_object_is_passed_as_such(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply('{"ok": true}'))
        completion = sdk(server).chat.completions.create(
            model=MODEL, messages=ASK, response_format={"type": "json_object"}
        )
        assert json.loads(completion.choices[0].message.content or "") == {"ok": True}
        assert upstream.requests_for("agg")[0]["response_format"] == {"type": "json_object"}

    def test_refused_when_the_aggregator_cannot_follow_a_schema(
        self, upstream: FakeUpstream, moa_server
    ) -> None:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(moa_server).chat.completions.parse(
                model="test-moa", messages=ASK, response_format=Capital
            )
        assert caught.value.param == "response_format"
        assert upstream.requests == []


class TestN:
    def test_n_answers_over_one_set_of_proposals(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("first"), Reply("second"), Reply("third"))
        completion = sdk(server).chat.completions.create(model=MODEL, messages=ASK, n=3)
        assert [c.index for c in completion.choices] == [0, 1, 2]
        assert [c.message.content for c in completion.choices] == ["first", "second", "third"]
        assert (len(upstream.requests_for("a")), len(upstream.requests_for("agg"))) == (1, 3)

    def test_a_stream_of_n_answers_is_told_apart_by_index(
        self, upstream: FakeUpstream, server
    ) -> None:
        upstream.script("agg", Reply("one two"), Reply("three four"), Reply("five"))
        chunks = list(
            sdk(server).chat.completions.create(model=MODEL, messages=ASK, n=3, stream=True)
        )
        texts: dict[int, str] = {}
        finished: dict[int, str | None] = {}
        for chunk in chunks:
            for choice in chunk.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finished[choice.index] = choice.finish_reason
        assert texts == {0: "one two", 1: "three four", 2: "five"}
        assert finished == {0: "stop", 1: "stop", 2: "stop"}
        assert len(upstream.requests_for("b")) == 1

    def test_n_is_bounded(self, server) -> None:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(server).chat.completions.create(model=MODEL, messages=ASK, n=17)
        assert caught.value.param == "n"


class TestLogprobs:
    def test_logprobs_come_back_from_the_aggregator(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("Paris it is"))
        completion = sdk(server).chat.completions.create(
            model=MODEL, messages=ASK, logprobs=True, top_logprobs=2
        )
        content = (completion.choices[0].logprobs and completion.choices[0].logprobs.content) or []
        assert [t.token for t in content] == ["Paris ", "it ", "is"]
        assert [len(t.top_logprobs) for t in content] == [2, 2, 2]
        sent = upstream.requests_for("agg")[0]
        assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
        assert "logprobs" not in upstream.requests_for("a")[0]

    def test_streamed_logprobs_ride_on_their_tokens(self, upstream: FakeUpstream, server) -> None:
        upstream.script("agg", Reply("Paris it is"))
        chunks = sdk(server).chat.completions.create(
            model=MODEL, messages=ASK, logprobs=True, stream=True
        )
        tokens = [
            entry.token
            for chunk in chunks
            for choice in chunk.choices
            for entry in ((choice.logprobs and choice.logprobs.content) or [])
        ]
        assert tokens == ["Paris ", "it ", "is"]

    def test_refused_when_the_aggregator_cannot_return_them(
        self, upstream: FakeUpstream, moa_server
    ) -> None:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk(moa_server).chat.completions.create(model="test-moa", messages=ASK, logprobs=True)
        assert caught.value.param == "logprobs"
        assert upstream.requests == []


def test_models_say_what_the_recipe_supports(server) -> None:
    (entry,) = httpx.get(f"{server.url}/v1/models").json()["data"]
    capabilities = entry["capabilities"]
    assert capabilities["tools"] is True
    assert capabilities["structured_output"] is True
    assert capabilities["logprobs"] is True
    assert capabilities["n"] is True


class TestLlmCli:
    """simonw's `llm` CLI, configured for the server as an OpenAI-compatible model."""

    @pytest.fixture
    def llm(self, server, tmp_path):
        import shutil
        import subprocess
        import sys
        from pathlib import Path

        exe = shutil.which("llm", path=str(Path(sys.executable).parent))
        if exe is None:
            pytest.skip("the llm CLI is not installed")
        (tmp_path / "extra-openai-models.yaml").write_text(
            f"- model_id: moa\n  model_name: {MODEL}\n  api_base: {server.url}/v1\n"
            "  supports_schema: true\n  supports_tools: true\n",
            encoding="utf-8",
        )
        env = {"LLM_USER_PATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [exe, "-m", "moa", "--no-log", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        return run

    def test_schema_gets_json_that_follows_it(self, upstream: FakeUpstream, llm) -> None:
        upstream.script("agg", Reply('{"city": "Paris", "population_millions": 2.1}'))
        done = llm("--schema", "city, population_millions float", "Biggest French city?")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"city": "Paris", "population_millions": 2.1}
        sent = upstream.requests_for("agg")[0]["response_format"]
        assert sent["type"] == "json_schema"
        assert set(sent["json_schema"]["schema"]["properties"]) == {"city", "population_millions"}

    def test_tools_run_in_llms_own_loop(self, upstream: FakeUpstream, llm) -> None:
        upstream.script(
            "agg",
            Reply("", tool_calls=[{"name": "llm_version", "arguments": "{}"}]),
            Reply("You are running a recent llm."),
        )
        done = llm("-T", "llm_version", "Which llm version is this?")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "You are running a recent llm."
        first, second = upstream.requests_for("agg")
        assert [t["function"]["name"] for t in first["tools"]] == ["llm_version"]
        assert second["messages"][-1]["role"] == "tool"


def test_the_openapi_document_is_true_for_a_recipe_that_takes_tools(server) -> None:
    """schemathesis against the capable recipe: tools, response_format and logprobs are
    accepted as the document says (and refused for a recipe without them, test_server_openapi)."""
    from test_server_openapi import schemathesis_failures

    document = httpx.get(f"{server.url}/openapi.json").json()
    rules = document["components"]["schemas"]["ChatCompletionRequest"]["allOf"]
    assert all(MODEL not in str(rule["if"]) for rule in rules)  # nothing refused for it
    assert schemathesis_failures(server.url, examples=10, coverage=False) == []
