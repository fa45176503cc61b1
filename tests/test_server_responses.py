"""`POST /v1/responses`: clients built on OpenAI's Responses API work unchanged, through the
openai SDK's `client.responses.create`, streaming and not."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"


def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def script_run(upstream: FakeUpstream, answer: str = "Paris is the capital") -> None:
    upstream.script("a", Reply("proposal A", usage=(10, 3)))
    upstream.script("b", Reply("proposal B", usage=(11, 4)))
    upstream.script("agg", Reply(answer, usage=(40, 5)))


def test_a_text_input_is_answered_as_one_assistant_message(
    upstream: FakeUpstream, moa_server
) -> None:
    script_run(upstream)
    response = client(moa_server).responses.create(model=MODEL, input="Capital of France?")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == MODEL
    assert response.output_text == "Paris is the capital"
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (61, 12)
    assert response.usage.total_tokens == 73
    (sent,) = upstream.requests_for("a")
    assert sent["messages"][-1] == {"role": "user", "content": "Capital of France?"}


def test_instructions_and_message_items_become_the_conversation(
    upstream: FakeUpstream, moa_server
) -> None:
    client(moa_server).responses.create(
        model=MODEL,
        instructions="Be brief.",
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "first"},
                    {"type": "input_text", "text": "second"},
                ],
            },
        ],
        max_output_tokens=64,
        temperature=0.5,
    )
    (sent,) = upstream.requests_for("a")
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "first\nsecond"},
    ]
    # As on chat completions, the request's sampling is the aggregator's.
    (final,) = upstream.requests_for("agg")
    assert (final["max_tokens"], final["temperature"]) == (64, 0.5)


def test_a_stream_sends_the_typed_events_in_order(upstream: FakeUpstream, moa_server) -> None:
    script_run(upstream, "one two three")
    events = list(client(moa_server).responses.create(model=MODEL, input="count", stream=True))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 3 and "".join(deltas) == "one two three"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response
    assert completed.output_text == "one two three"
    assert completed.usage is not None and completed.usage.total_tokens == 73
    assert events[0].response.status == "in_progress"


async def test_the_async_sdk_streams_too(upstream: FakeUpstream, moa_server) -> None:
    script_run(upstream, "async answer here")
    async with openai.AsyncOpenAI(
        base_url=f"{moa_server.url}/v1", api_key="unused", max_retries=0
    ) as aclient:
        stream = await aclient.responses.create(model=MODEL, input="q", stream=True)
        text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
    assert text == "async answer here"


def test_an_answer_cut_by_max_output_tokens_is_incomplete(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("agg", Reply("cut short", finish_reason="length"))
    response = client(moa_server).responses.create(model=MODEL, input="q", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_previous_response_id_is_refused_because_nothing_is_stored(moa_server) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(moa_server).responses.create(
            model=MODEL, input="and then?", previous_response_id="resp_123"
        )
    assert refused.value.param == "previous_response_id"


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
    ],
)
def test_logprobs_asked_of_the_responses_api_are_refused_not_dropped(
    moa_server, options: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(moa_server).responses.create(model=MODEL, input="q", **options)
    assert refused.value.param == param
    assert "/v1/chat/completions" in str(refused.value)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": "x"}]},
            "input[0].call_id",
        ),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "assistant", "content": "last word"}]}, "input"),
        ({"input": "q", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
def test_what_a_moa_cannot_do_is_a_400_naming_the_field(moa_server, body, param) -> None:
    response = httpx.post(f"{moa_server.url}/v1/responses", json={"model": MODEL, **body})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_an_unknown_model_is_404(moa_server) -> None:
    with pytest.raises(openai.NotFoundError):
        client(moa_server).responses.create(model="nope", input="q")


def test_a_run_that_fails_before_answering_gets_an_http_error_with_the_reasons(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("a", Reply(status=429))
    upstream.script("b", Reply(status=429))
    response = httpx.post(
        f"{moa_server.url}/v1/responses", json={"model": MODEL, "input": "q"}, timeout=30
    )
    assert response.status_code == 502
    assert response.json()["moa"]["failure_reason"] == "all_proposers_failed"


def test_a_stream_failing_after_tokens_ends_with_response_failed(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("agg", Reply("one two three four", cut_after_tokens=2))
    body = {"model": MODEL, "input": "q", "stream": True}
    with httpx.stream("POST", f"{moa_server.url}/v1/responses", json=body, timeout=30) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    events = [json.loads(line[len("data: ") :]) for line in lines]
    assert [e["type"] for e in events[-2:]] == ["response.failed", "error"]
    assert events[-2]["response"]["status"] == "failed"
    assert events[-2]["response"]["error"]["code"] == "aggregator_failed"


def test_the_moa_extension_and_trace_come_with_the_response(
    upstream: FakeUpstream, moa_server
) -> None:
    script_run(upstream)
    response = client(moa_server).responses.create(
        model=MODEL, input="q", extra_body={"moa_trace": True}
    )
    extension = (response.model_extra or {})["moa"]
    assert extension["cost_usd"] is None  # the fake models have no price
    assert [c["model"] for c in extension["calls"]] == ["fake:a", "fake:b", "fake:agg"]
