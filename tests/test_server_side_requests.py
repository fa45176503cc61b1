"""A chat UI's side requests (Open WebUI's title, tags and follow-up tasks) answered by the
recipe's aggregator alone, in one call, when the recipe says `side_requests = "aggregator"` or
the `X-MoA-Side-Request` header asks."""

from __future__ import annotations

import httpx
import pytest

from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"
# Open WebUI's default title prompt, as its task sends it (one user message, not streamed).
TITLE_TASK = (
    "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
    "### Guidelines:\n- The title should clearly represent the main theme or subject of the "
    'conversation.\n### Output:\nJSON format: { "title": "your concise title here" }\n'
    "### Chat History:\n<chat_history>\nUSER: What is the capital of France?\n"
    "ASSISTANT: Paris.\n</chat_history>"
)
RECIPE = """
name = "test-moa"
side_requests = "aggregator"
[retry]
max_attempts = 1
[[layers]]
models = ["fake:a", "fake:b"]
[aggregator]
model = "fake:agg"
"""


def ask(server, content: str, **headers: str) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers)


def models_called(upstream: FakeUpstream) -> list[str]:
    return sorted(c.model for c in upstream.calls)


def test_a_title_task_is_answered_by_the_aggregator_alone(upstream: FakeUpstream, serve_moa):
    upstream.script("agg", Reply('{"title": "🇫🇷 Capital of France"}'))
    response = ask(serve_moa(RECIPE), TITLE_TASK)
    assert (
        response.json()["choices"][0]["message"]["content"] == '{"title": "🇫🇷 Capital of France"}'
    )
    assert models_called(upstream) == ["agg"]
    # The task as written: no references, since no layer ran.
    assert upstream.requests_for("agg")[0]["messages"] == [{"role": "user", "content": TITLE_TASK}]


def test_the_chat_itself_still_runs_the_mixture(upstream: FakeUpstream, serve_moa) -> None:
    ask(serve_moa(RECIPE), "What is the capital of France?")
    assert models_called(upstream) == ["a", "agg", "b"]


@pytest.mark.parametrize(
    ("side_requests", "header", "called"),
    [
        ("mixture", "true", ["agg"]),  # the header asks, whatever the prompt
        ("aggregator", "false", ["a", "agg", "b"]),  # and refuses, over the recipe
        ("mixture", None, ["a", "agg", "b"]),  # the default: every request is a mixture run
    ],
)
def test_the_header_says_it_per_request(
    upstream: FakeUpstream, serve_moa, side_requests: str, header: str | None, called: list[str]
) -> None:
    server = serve_moa(RECIPE.replace('"aggregator"', f'"{side_requests}"'))
    headers = {"X-MoA-Side-Request": header} if header is not None else {}
    assert ask(server, TITLE_TASK, **headers).status_code == 200
    assert models_called(upstream) == called
