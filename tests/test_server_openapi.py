"""The server's OpenAPI document tells the truth: schemathesis drives a real server with every
check on (statuses, content types, response schemas and headers, schema-valid requests
accepted and invalid ones refused, unsupported methods), bounded to a few seconds."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

MODEL = "test-moa"
QUESTION = {"role": "user", "content": "a question"}
# Priced, so that a request's `moa_max_cost_usd` budget can be kept.
SERVER_RECIPE = """
name = "test-moa"
[retry]
max_attempts = 1
[[layers]]
models = [
    {model = "fake:a", price = {input = 1.0, output = 2.0}},
    {model = "fake:b", price = {input = 1.0, output = 2.0}},
]
[aggregator]
model = "fake:agg"
price = {input = 1.0, output = 2.0}
"""
# Fixed seed, every check on; the coverage phase (boundary values, missing fields, wrong types,
# unsupported methods) plus 25 generated cases per operation: about 350 requests.
BOUNDED = """
seed = 20260
max-failures = 10
[generation]
max-examples = {examples}
[checks]
enabled = true
[phases.coverage]
enabled = {coverage}
[phases.stateful]
enabled = false
"""


def schemathesis_failures(
    url: str, headers: dict[str, str] | None = None, *, examples: int = 25, coverage: bool = True
) -> list[str]:
    bounded = BOUNDED.format(examples=examples, coverage=str(coverage).lower())
    config = SchemathesisConfig.from_str(bounded + (_auth(headers) if headers else ""))
    # POST /v1/responses, the Messages API (/v1/messages…, errors in Anthropic's shape) and
    # the events API (/v1/moa/...) are left out until their request models say what they accept.
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config).exclude(
        path_regex="^/v1/(responses|messages|moa/)"
    )

    @schema.hook
    def map_case(context: Any, case: Any) -> Any:
        # The rules the document states in prose, as JSON Schema cannot: a conversation ends with
        # a user message that has text, and a budget must cover the run. Appending such a message
        # or raising a valid budget keeps a negative case negative.
        body = case.body
        if not isinstance(body, dict):
            return case
        history = body.get("messages")
        if isinstance(history, list) and history and history[-1] != QUESTION:
            body = {**body, "messages": [*_answered(history), QUESTION]}
        # …and a tool_choice names one of the tools.
        tools, choice = body.get("tools"), body.get("tool_choice")
        if isinstance(choice, dict) and isinstance(tools, list) and tools:
            named = (tools[0].get("function") or {}) if isinstance(tools[0], dict) else {}
            if isinstance(named, dict) and isinstance(named.get("name"), str):
                body = {**body, "tool_choice": _renamed(choice, named["name"])}
        budget = body.get("moa_max_cost_usd")
        if isinstance(budget, int | float) and not isinstance(budget, bool) and budget > 0:
            body = {**body, "moa_max_cost_usd": 1000.0}
        case.body = body
        return case

    found: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.status == Status.FAILURE:
            for case_id, checks in event.recorder.checks.items():
                response = event.recorder.interactions[case_id].response
                found += [
                    f"{event.label}: {c.name}: {c.failure_info.failure.title}\n"
                    f"{c.failure_info.code_sample}\n"
                    f"-> {response.status_code if response else None}: "
                    f"{response.content[:300] if response and response.content else ''!r}"
                    for c in checks
                    if c.failure_info is not None
                ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found.append(f"schemathesis error: {event!r}")
    return found


def _answered(history: list[Any]) -> list[Any]:
    """The history without the tool messages that answer no earlier call (refused, as
    Messages' and Responses' are: a rule about two messages, which JSON Schema cannot state)."""
    kept: list[Any] = []
    called: set[object] = set()
    for message in history:
        if not isinstance(message, dict):
            kept.append(message)
            continue
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                called.add(call["id"])
        answers = message.get("tool_call_id")  # not a string: a negative case, kept
        if message.get("role") != "tool" or not isinstance(answers, str) or answers in called:
            kept.append(message)
    return kept


def _renamed(choice: dict[str, Any], name: str) -> dict[str, Any]:
    """A tool_choice object naming `name` wherever it names a function."""
    if isinstance(choice.get("function"), dict):
        return {**choice, "function": {**choice["function"], "name": name}}
    allowed = choice.get("allowed_tools")
    if isinstance(allowed, dict) and isinstance(allowed.get("tools"), list):
        tools = [_renamed(t, name) if isinstance(t, dict) else t for t in allowed["tools"]]
        return {**choice, "allowed_tools": {**allowed, "tools": tools}}
    return choice


def _auth(headers: dict[str, str]) -> str:
    lines = "".join(f'"{k}" = "{v}"\n' for k, v in headers.items())
    return f"[headers]\n{lines}"


def test_the_server_answers_as_its_openapi_document_says(serve_moa) -> None:
    server = serve_moa(SERVER_RECIPE)
    assert schemathesis_failures(server.url) == []


def test_with_keys_the_document_says_which_operations_need_one(serve_moa) -> None:
    server = serve_moa(SERVER_RECIPE, api_keys=["sk-test"])
    document = httpx.get(f"{server.url}/openapi.json").json()  # readable without a key
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    guarded = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("security") == [{"bearer": []}] and "401" in operation["responses"]
    }
    assert guarded == {
        "POST /v1/chat/completions",
        "POST /v1/responses",
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
        "POST /v1/moa/runs",
        "GET /v1/moa/recipes",
        "GET /v1/models",
        "GET /v1/models/{model_id}",
        "GET /metrics",
    }
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    keyed = {"Authorization": "Bearer sk-test"}
    assert schemathesis_failures(server.url, keyed, examples=10, coverage=False) == []


def test_every_error_status_is_documented_in_openai_shape_and_422_is_gone(moa_server) -> None:
    document = httpx.get(f"{moa_server.url}/openapi.json").json()
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"400", "404", "413", "429", "502"} <= set(chat) and "422" not in chat
    for status in ("400", "404", "413", "429", "502"):
        body = chat[status]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorDetail"]["required"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("content", [None, "   "])
def test_an_empty_prompt_is_refused_without_cli_wording(moa_server, content) -> None:
    message: dict[str, Any] = {"role": "user"} | ({} if content is None else {"content": content})
    response = httpx.post(
        f"{moa_server.url}/v1/chat/completions", json={"model": MODEL, "messages": [message]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert "stdin" not in error["message"] and "'-'" not in error["message"]
    assert error["param"] in ("messages", "messages[0].content")


def test_what_the_document_allows_the_server_accepts(moa_server) -> None:
    """An assistant turn may omit `content`; 5.0 is an integer to JSON Schema."""
    document = httpx.get(f"{moa_server.url}/openapi.json").json()
    message = document["components"]["schemas"]["ChatMessage"]
    needs_content, needs_call_id = message["allOf"]
    assert needs_content["if"]["properties"]["role"]["enum"] == ["system", "developer", "user"]
    assert needs_call_id["then"]["required"] == ["tool_call_id"]
    assert needs_content["then"]["required"] == ["content"]
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}, QUESTION],
        "max_tokens": 5.0,
    }
    response = httpx.post(f"{moa_server.url}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
