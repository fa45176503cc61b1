"""What real clients found (issue 33): a failed run carries its trace when asked, and a bad
request is a 400 naming the field before any upstream call, on every API it can reach."""

from __future__ import annotations

import httpx
import pytest

from moa.testing import FakeUpstream, Reply
from tests.test_server_messages import MODEL, recipe

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
