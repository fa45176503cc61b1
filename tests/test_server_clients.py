"""The moa server answers real OpenAI clients: the openai SDK (sync/async, streaming or not),
LangChain's ChatOpenAI, and raw httpx reading the SSE lines."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an SSE response, in order."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def script_run(upstream: FakeUpstream, answer: str = "Paris is the capital") -> None:
    upstream.script("a", Reply("proposal A", usage=(10, 3)))
    upstream.script("b", Reply("proposal B", usage=(11, 4)))
    upstream.script("agg", Reply(answer, usage=(40, 5)))


def test_sdk_sync_completion_returns_the_aggregate_with_usage_summed_over_every_call(
    upstream: FakeUpstream, moa_server
) -> None:
    script_run(upstream)
    completion = client(moa_server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Paris is the capital"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (61, 12)
    assert completion.usage.total_tokens == 73
    # No trace unless asked for: the `moa` extension says only what the run cost (the fake
    # models have no price) and what failed.
    assert (completion.model_extra or {})["moa"] == {
        "cost_usd": None,
        "failed_models": [],
        "degraded": False,
        "answered": 2,
        "asked": 2,
        "fallback": None,
    }


def test_sdk_sync_stream_yields_role_then_content_then_finish(
    upstream: FakeUpstream, moa_server
) -> None:
    script_run(upstream, "one two three")
    chunks = list(
        client(moa_server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "count"}], stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_sdk_stream_include_usage_adds_a_final_usage_chunk(
    upstream: FakeUpstream, moa_server
) -> None:
    script_run(upstream, "one two")
    chunks = list(
        client(moa_server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "q"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 61
    assert chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])


async def test_sdk_async_completion_and_stream(upstream: FakeUpstream, moa_server) -> None:
    script_run(upstream, "async answer here")
    async with openai.AsyncOpenAI(
        base_url=f"{moa_server.url}/v1", api_key="unused", max_retries=0
    ) as aclient:
        completion = await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "q"}]
        )
        assert completion.choices[0].message.content == "async answer here"
        stream = await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "q"}], stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(pieces) == "async answer here"
    assert len(pieces) >= 3  # streamed in pieces, not one lump


def ask_with_sampling(server) -> None:
    client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "q"}],
        temperature=0.25,
        max_completion_tokens=77,
        max_tokens=5,  # superseded by max_completion_tokens, as in OpenAI's API
        seed=42,
        stop=["END"],
    )


def test_sampling_fields_apply_to_the_aggregator_and_proposers_keep_the_recipes(
    upstream: FakeUpstream, moa_server
) -> None:
    ask_with_sampling(moa_server)
    (final,) = upstream.requests_for("agg")
    assert (final["temperature"], final["max_tokens"], final["seed"]) == (0.25, 77, 42)
    assert "stop" not in final  # moa stops the answer itself, so it knows where
    for model in ("a", "b"):
        (sent,) = upstream.requests_for(model)
        assert "seed" not in sent and "stop" not in sent and sent.get("temperature") != 0.25


def test_a_recipe_may_let_request_sampling_reach_every_call(
    upstream: FakeUpstream, serve_moa
) -> None:
    recipe = (
        'name = "test-moa"\nrequest_sampling = "all"\n[retry]\nmax_attempts = 1\n'
        '[[layers]]\nmodels = ["fake:a", "fake:b"]\n[aggregator]\nmodel = "fake:agg"\n'
    )
    ask_with_sampling(serve_moa(recipe))
    for model in ("a", "b", "agg"):
        (sent,) = upstream.requests_for(model)
        assert (sent["temperature"], sent["max_tokens"], sent["seed"]) == (0.25, 77, 42)
        assert sent.get("stop") == (["END"] if model != "agg" else None)


def test_text_content_parts_are_joined_and_developer_counts_as_system(
    upstream: FakeUpstream, moa_server
) -> None:
    client(moa_server).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}],
            },
        ],
    )
    (sent,) = upstream.requests_for("a")
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1] == {"role": "user", "content": "first\nsecond"}


def test_unknown_openai_fields_are_accepted(upstream: FakeUpstream, moa_server) -> None:
    completion = client(moa_server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "q", "name": "alice"}],
        presence_penalty=0.1,
        user="u-1",
        n=1,
        logit_bias={"50256": -100},
        extra_body={"some_future_field": {"nested": True}},
    )
    assert completion.choices[0].message.content == "answer from agg"


def test_trace_is_opt_in_by_body_flag_or_header(upstream: FakeUpstream, moa_server) -> None:
    script_run(upstream)
    sdk = client(moa_server)
    messages = [{"role": "user", "content": "q"}]
    by_flag = sdk.chat.completions.create(
        model=MODEL, messages=messages, extra_body={"moa_trace": True}
    )
    by_header = sdk.chat.completions.create(
        model=MODEL, messages=messages, extra_headers={"X-MoA-Trace": "1"}
    )
    for completion in (by_flag, by_header):
        trace = (completion.model_extra or {})["moa"]
        calls = trace["calls"]
        assert [(c["role"], c["model"]) for c in calls] == [
            ("proposer", "fake:a"),
            ("proposer", "fake:b"),
            ("aggregator", "fake:agg"),
        ]
        assert [c["output"] for c in calls[:2]] == ["proposal A", "proposal B"]
        assert trace["usage"]["total_tokens"] == 73


def test_raw_httpx_sse_lines_follow_openai_chunk_format_with_trace_before_done(
    upstream: FakeUpstream, moa_server
) -> None:
    script_run(upstream, "alpha beta")
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "q"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "moa_trace": True,
    }
    with httpx.stream("POST", f"{moa_server.url}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    first, *contents, finish, usage, trace = chunks
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"]["content"] for c in contents) == "alpha beta"
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 61 + 12
    assert trace["object"] == "moa.trace"
    assert [c["output"] for c in trace["moa"]["calls"][:2]] == ["proposal A", "proposal B"]
    assert trace["moa"]["text"] == "alpha beta"


def test_models_healthz_and_model_retrieval(moa_server) -> None:
    sdk = client(moa_server)
    assert [m.id for m in sdk.models.list()] == [MODEL]
    assert sdk.models.retrieve(MODEL).owned_by == "moa"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope")
    health = httpx.get(f"{moa_server.url}/healthz").json()
    assert health["status"] == "ok" and health["models"] == [MODEL]


def test_metrics_count_requests_upstream_calls_tokens_and_errors(
    upstream: FakeUpstream, moa_server
) -> None:
    script_run(upstream)
    sdk = client(moa_server)
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q"}])
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "q"}], n=17)
    text = httpx.get(f"{moa_server.url}/metrics").text
    assert 'moa_requests_total{model="test-moa",status="200",stream="false"} 1.0' in text
    assert (
        'moa_upstream_calls_total{role="proposer",status="ok",upstream_model="fake:a"} 1.0' in text
    )
    assert 'moa_tokens_total{direction="input",model="test-moa"} 61.0' in text
    assert 'moa_tokens_total{direction="output",model="test-moa"} 12.0' in text
    assert 'moa_errors_total{code="invalid_request_error"} 1.0' in text
    assert "moa_request_duration_seconds_bucket" in text
    assert "moa_upstream_call_duration_seconds_count" in text


class TestLangChain:
    @pytest.fixture
    def chat(self, moa_server):
        langchain_openai = pytest.importorskip("langchain_openai")
        return langchain_openai.ChatOpenAI(
            model=MODEL, base_url=f"{moa_server.url}/v1", api_key="unused", max_retries=0
        )

    def test_invoke(self, upstream: FakeUpstream, chat) -> None:
        script_run(upstream, "langchain answer")
        message = chat.invoke("What is MoA?")
        assert message.content == "langchain answer"
        assert message.usage_metadata["total_tokens"] == 73

    def test_stream(self, upstream: FakeUpstream, chat) -> None:
        script_run(upstream, "streamed to langchain")
        pieces = [chunk.content for chunk in chat.stream("What is MoA?")]
        assert "".join(pieces) == "streamed to langchain"
        assert len([p for p in pieces if p]) >= 3


def test_an_aggregator_cut_by_max_tokens_reports_finish_reason_length(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("agg", Reply("cut short", finish_reason="length"))
    sdk = client(moa_server)
    messages = [{"role": "user", "content": "q"}]
    completion = sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)
    assert completion.choices[0].finish_reason == "length"
    chunks = list(
        sdk.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "length"


def test_moa_stops_the_answer_at_a_stop_sequence_itself(upstream: FakeUpstream, moa_server) -> None:
    script_run(upstream, "Paris END and more")
    completion = client(moa_server).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "q"}], stop="END"
    )
    assert completion.choices[0].message.content == "Paris "
    assert completion.choices[0].finish_reason == "stop"
    # Streamed, and closed at the stop, though the client asked for a whole answer.
    assert [c.streamed for c in upstream.calls if c.model == "agg"] == [True]
