"""Every refusal and failure leaves the server in OpenAI's error shape, with the right status;
upstream keys never appear in responses or logs."""

from __future__ import annotations

import json
import logging

import httpx
import openai
import pytest

from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"
USER = [{"role": "user", "content": "q"}]


def post(server, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "messages": USER, "n": 17}, "n"),
        (
            {
                "model": MODEL,
                "messages": USER,
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                "tool_choice": "required",  # optional tools are dropped for a text answer
            },
            "tools",
        ),
        ({"model": MODEL, "messages": USER, "functions": [{"name": "f"}]}, "functions"),
        (
            {
                "model": MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this?"},
                            {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                        ],
                    }
                ],
            },
            "messages[0].content[1].type",
        ),
        (
            {
                "model": MODEL,
                "messages": [*USER, {"role": "tool", "content": "x"}],
            },
            "messages[1].tool_call_id",
        ),
        (
            {"model": MODEL, "messages": USER, "response_format": {"type": "json_object"}},
            "response_format",
        ),
        ({"model": MODEL, "messages": USER, "logprobs": True}, "logprobs"),
        ({"model": MODEL, "messages": USER, "top_logprobs": 2}, "top_logprobs"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL}, "messages"),
        ({"messages": USER}, "model"),
        ({"model": MODEL, "messages": USER, "temperature": 3}, "temperature"),
        ({"model": MODEL, "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": MODEL, "messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": "   "}]}, "messages"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": MODEL, "messages": [{"role": "system"}, *USER]}, "messages[0].content"),
        ({"model": MODEL, "messages": USER, "max_tokens": "5"}, "max_tokens"),
        ({"model": MODEL, "messages": USER, "stream": 1}, "stream"),
    ],
    ids=[
        "n-too-many",
        "tools-unsupported",
        "functions",
        "image-part",
        "tool-without-call-id",
        "response-format-unsupported",
        "logprobs-unsupported",
        "top-logprobs-without-logprobs",
        "unknown-role",
        "no-messages",
        "missing-messages",
        "missing-model",
        "temperature-range",
        "max-tokens-range",
        "ends-with-assistant",
        "blank-prompt",
        "content-type",
        "system-without-content",
        "number-as-string",
        "one-for-true",
    ],
)
def test_unsupported_or_invalid_requests_get_400_in_openai_shape(
    upstream: FakeUpstream, moa_server, body: dict, param: str
) -> None:
    error = assert_openai_error(post(moa_server, body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert upstream.requests == []  # refused before any upstream call


def test_the_sdk_raises_bad_request_with_the_parsed_error(moa_server) -> None:
    sdk = openai.OpenAI(base_url=f"{moa_server.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=USER, n=17)
    assert caught.value.param == "n"
    assert "less than or equal to 16" in caught.value.message


def test_malformed_json_and_non_object_bodies_are_400(moa_server) -> None:
    url = f"{moa_server.url}/v1/chat/completions"
    headers = {"content-type": "application/json"}
    error = assert_openai_error(httpx.post(url, content=b"{not json", headers=headers), 400)
    assert "not valid JSON" in error["message"]
    assert_openai_error(httpx.post(url, content=b"[1, 2]", headers=headers), 400)
    assert_openai_error(httpx.post(url, content=b"", headers=headers), 400)


def test_unknown_model_is_404_model_not_found(moa_server) -> None:
    error = assert_openai_error(post(moa_server, {"model": "gpt-4o", "messages": USER}), 404)
    assert error["code"] == "model_not_found"
    assert "test-moa" in error["message"]


def test_unknown_route_and_method_are_openai_shaped(moa_server) -> None:
    assert_openai_error(httpx.get(f"{moa_server.url}/v1/nothing"), 404)
    assert_openai_error(httpx.get(f"{moa_server.url}/v1/chat/completions"), 405)


def test_every_proposer_failing_is_502_layer_failed(upstream: FakeUpstream, moa_server) -> None:
    upstream.script("a", Reply(status=500))
    upstream.script("b", Reply(status=503))
    error = assert_openai_error(post(moa_server, {"model": MODEL, "messages": USER}), 502)
    assert (error["type"], error["code"]) == ("server_error", "layer_failed")
    assert upstream.requests_for("agg") == []


def test_a_stream_failing_before_its_first_token_still_gets_an_http_status(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("agg", Reply(status=500))
    sdk = openai.OpenAI(base_url=f"{moa_server.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        list(sdk.chat.completions.create(model=MODEL, messages=USER, stream=True))
    assert caught.value.status_code == 502
    assert caught.value.code == "aggregator_failed"


def test_a_stream_failing_after_tokens_ends_with_an_error_event(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("agg", Reply("one two three four", cut_after_tokens=2))
    body = {"model": MODEL, "messages": USER, "stream": True}
    with httpx.stream("POST", f"{moa_server.url}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["error"]["code"] == "aggregator_failed"
    assert set(last["error"]) == {"message", "type", "param", "code"}
    sdk = openai.OpenAI(base_url=f"{moa_server.url}/v1", api_key="x", max_retries=0)
    upstream.script("agg", Reply("one two three four", cut_after_tokens=2))
    with pytest.raises(openai.APIError):
        list(sdk.chat.completions.create(model=MODEL, messages=USER, stream=True))


KEYED_RECIPE = """
name = "keyed"
[retry]
max_attempts = 1
[[layers]]
models = ["keyed:a"]
[aggregator]
model = "keyed:agg"
"""


def test_upstream_keys_never_reach_responses_traces_or_logs(
    upstream: FakeUpstream, serve_moa, monkeypatch, caplog
) -> None:
    secret = "sk-upstream-SECRET-1234567890"
    monkeypatch.setenv("MOA_TEST_UPSTREAM_KEY", secret)
    recipe = KEYED_RECIPE + (
        f'\n[providers.keyed]\nbase_url = "{upstream.base_url}"\n'
        'api_key_env = "MOA_TEST_UPSTREAM_KEY"\n'
    )
    server = serve_moa(recipe)
    # Providers that reject a key often echo it back in their error message.
    echo = json.dumps({"error": {"message": f"Incorrect API key provided: {secret}"}})
    upstream.script("a", Reply(status=401, raw_body=echo))
    with caplog.at_level(logging.DEBUG):
        failed = post(server, {"model": "keyed", "messages": USER, "moa_trace": True})
        upstream.script("a", Reply("fine"))
        upstream.script("agg", Reply(status=401, raw_body=echo))
        streamed = post(server, {"model": "keyed", "messages": USER, "stream": True})
    assert failed.status_code == 502 and streamed.status_code == 502
    for response in (failed, streamed):
        assert secret not in response.text
        assert "[redacted]" in response.json()["error"]["message"]
    assert secret not in caplog.text
    assert "[redacted]" in caplog.text
