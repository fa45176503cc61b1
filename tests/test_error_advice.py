"""What a failed request is told: each face names its own levers. An HTTP client is told the
recipe key or the request field (never a command-line flag it cannot pass); the command line
adds its flags. A refusal is labelled as the request's, and an upstream's long message is cut
between words, saying so."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from moa.testing import FakeUpstream, Reply

MODEL = "test-moa"
USER = [{"role": "user", "content": "Capital of France?"}]
SLOW = """
name = "test-moa"
timeout_s = 0.5
[retry]
max_attempts = 1
[[layers]]
models = ["fake:a", "fake:b"]
[aggregator]
model = "fake:agg"
"""
# An upstream's explanation, longer than moa passes on.
LONG = " ".join(f"reason{i}" for i in range(80))


def post(server, body: dict) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)


def moa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moa", *args], capture_output=True, text=True, timeout=120
    )


def test_a_failed_aggregator_tells_an_http_client_its_request_field(
    upstream: FakeUpstream, moa_server
) -> None:
    upstream.script("agg", Reply(status=500))
    response = post(moa_server, {"model": MODEL, "messages": USER})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "--json" not in message and " --" not in message
    assert '"moa_trace": true' in message and "`fallbacks`" in message


def test_a_timeout_tells_an_http_client_the_recipe_key(upstream: FakeUpstream, serve_moa) -> None:
    upstream.script("a", Reply("late", delay_s=5))
    upstream.script("b", Reply("late", delay_s=5))
    response = post(serve_moa(SLOW), {"model": MODEL, "messages": USER})
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "--timeout" not in message
    assert "raise `timeout_s` on the model, its provider or the recipe" in message


def test_the_command_line_adds_its_own_flags(upstream: FakeUpstream, recipe_file) -> None:
    upstream.script("a", Reply("late", delay_s=5))
    upstream.script("b", Reply("late", delay_s=5))
    done = moa("ask", "q", "-r", str(recipe_file(SLOW)))
    assert done.returncode == 1
    assert "`timeout_s`" in done.stderr
    assert "--timeout sets the recipe's timeout_s" in done.stderr
    assert "--json shows the trace" in done.stderr


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"logprobs": True}, "unsupported_field"),  # the fake provider declares no logprobs
        ({"moa_max_cost_usd": 0.01}, "price_unknown"),  # the fake models have no price
    ],
)
def test_a_refusal_is_labelled_as_the_requests(
    upstream: FakeUpstream, moa_server, body: dict, reason: str
) -> None:
    response = post(moa_server, {"model": MODEL, "messages": USER, **body})
    assert response.status_code == 400
    assert response.json()["moa"]["failure_reason"] == reason
    assert upstream.requests == []


def test_an_upstream_message_is_cut_between_words_and_says_so(
    upstream: FakeUpstream, moa_server
) -> None:
    body = json.dumps({"error": {"message": LONG, "type": "invalid_request_error"}})
    upstream.script("agg", Reply(status=400, raw_body=body))
    message = post(moa_server, {"model": MODEL, "messages": USER}).json()["error"]["message"]
    kept, _, rest = message.partition(" […cut: ")
    assert rest.split(" characters]")[0].endswith(f"of {len(LONG)}")
    said = kept.rsplit("HTTP 400: ", 1)[1]
    assert LONG.startswith(said) and LONG[len(said)] == " "  # whole words only
    assert 250 < len(said) <= 300
