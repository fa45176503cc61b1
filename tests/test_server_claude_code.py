"""Claude Code against `moa serve`: its requests, replayed in the shape Claude Code 2.1.197 sends
them (captured from the real client pointed at `moa serve`, docs/serving/anthropic.md) — on
`POST /v1/messages?beta=true` with its `anthropic-beta` list, a system prompt of text blocks
under `cache_control`, 24 tools and no `tool_choice`, extended thinking `adaptive`,
`output_config`, `context_management`, `metadata`, and `{"role": "system"}` turns inside
`messages`, the last of them after the user's turn."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.test_server_messages import MODEL, events, recipe

from moa.testing import FakeUpstream, Reply

BETAS = (
    "claude-code-20250219,interleaved-thinking-2025-05-14,thinking-token-count-2026-05-13,"
    "context-management-2025-06-27,prompt-caching-scope-2026-01-05,"
    "mid-conversation-system-2026-04-07,effort-2025-11-24"
)
HEADERS = {
    "anthropic-beta": BETAS,
    "anthropic-version": "2023-06-01",
    "anthropic-dangerous-direct-browser-access": "true",
    "x-app": "cli",
    "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
}
TOOL_NAMES = [
    "Agent",
    "Bash",
    "CronCreate",
    "CronDelete",
    "CronList",
    "Edit",
    "EnterWorktree",
    "ExitWorktree",
    "NotebookEdit",
    "Read",
    "ReportFindings",
    "ScheduleWakeup",
    "SendMessage",
    "Skill",
    "TaskCreate",
    "TaskGet",
    "TaskList",
    "TaskOutput",
    "TaskStop",
    "TaskUpdate",
    "WebFetch",
    "WebSearch",
    "Workflow",
    "Write",
]
AGENT_TYPES = "Available agent types for the Agent tool:\n- claude: Catch-all for any task."


def tool(name: str) -> dict:
    return {
        "name": name,
        "description": f"The {name} tool.",
        "input_schema": {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"input": {"type": "string"}},
            "required": ["input"],
            "additionalProperties": False,
        },
    }


def claude_code_request(messages: list[dict], *, stream: bool = True) -> dict:
    return {
        "model": MODEL,
        "messages": messages,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.1c0;"},
            {
                "type": "text",
                "text": "You are a Claude agent, built on Anthropic's Claude Agent SDK.",
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "You are an interactive agent that helps users with "
                "software engineering tasks.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "tools": [tool(name) for name in TOOL_NAMES],
        "metadata": {"user_id": json.dumps({"device_id": "d3", "session_id": "s1"})},
        "max_tokens": 32000,
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "stream": stream,
    }


def user(*texts: str) -> dict:
    blocks = [{"type": "text", "text": t} for t in texts]
    blocks[-1]["cache_control"] = {"type": "ephemeral"}
    return {"role": "user", "content": blocks}


FIRST = [
    user("<system-reminder>\nToday's date is 2026-12-08.\n</system-reminder>\n\n", "Say hello"),
    {"role": "system", "content": AGENT_TYPES},
]


@pytest.fixture
def server(serve_moa, upstream: FakeUpstream):
    upstream.script("a", Reply("proposal A"))
    upstream.script("b", Reply("proposal B"))
    return serve_moa(recipe(upstream.base_url))


def post(server, body: dict) -> list[dict]:
    with httpx.stream(
        "POST", f"{server.url}/v1/messages?beta=true", json=body, headers=HEADERS
    ) as response:
        assert response.status_code == 200, response.read()
        return events(response)


def answer_text(payloads: list[dict]) -> str:
    return "".join(
        p["delta"].get("text", "") for p in payloads if p["type"] == "content_block_delta"
    )


def test_its_first_request_ending_with_a_system_turn_is_answered(
    upstream: FakeUpstream, server
) -> None:
    upstream.script("agg", Reply("Hello!"))
    payloads = post(server, claude_code_request(FIRST))
    assert payloads[-1]["type"] == "message_stop"
    assert answer_text(payloads) == "Hello!"
    sent = upstream.requests_for("agg")[0]
    assert len(sent["tools"]) == 24 and "tool_choice" not in sent
    # `smart` declares no system turns: the trailing one joins the user's turn, marked.
    last = sent["messages"][-1]
    assert last["role"] == "user"
    assert last["content"].endswith(f"Say hello\n\n[system]\n{AGENT_TYPES}")
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    # The proposers read it too.
    assert AGENT_TYPES in upstream.requests_for("a")[0]["messages"][-1]["content"]


def test_system_turns_mid_conversation_and_last_in_a_tool_loop(
    upstream: FakeUpstream, server
) -> None:
    upstream.script("agg", Reply("Done: it printed hi."))
    conversation = [
        *FIRST,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "…", "signature": "sig"},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "Bash",
                    "input": {"input": "echo hi"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "hi"}],
        },
        {
            "role": "system",
            "content": [{"type": "text", "text": "The user switched to plan mode."}],
        },
    ]
    payloads = post(server, claude_code_request(conversation))
    assert answer_text(payloads) == "Done: it printed hi."
    sent = upstream.requests_for("agg")[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool"]
    assert sent[1]["content"].endswith(AGENT_TYPES)
    assert sent[3]["content"] == "hi\n\n[system]\nThe user switched to plan mode."


def test_a_provider_that_takes_system_turns_gets_them_in_place(
    serve_moa, upstream: FakeUpstream
) -> None:
    server = serve_moa(recipe(upstream.base_url) + "system_turns = true\n")
    upstream.script("agg", Reply("Hello!"))
    response = httpx.post(
        f"{server.url}/v1/messages?beta=true",
        json=claude_code_request(FIRST, stream=False),
        headers=HEADERS,
    )
    assert response.json()["content"][-1] == {"type": "text", "text": "Hello!"}
    sent = upstream.requests_for("agg")[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "system"]
    assert sent[-1]["content"] == AGENT_TYPES
