"""A Messages API request in the chat shapes the engine speaks.

In: `system` (a string or text blocks) becomes the system turn, and a `system` turn inside
`messages` (Anthropic's mid-conversation system messages; Claude Code ends its requests with
one) a system turn where it stands, which each model gets as its provider can take it
(moa.call.prompts.place_system); a user turn's `tool_result`
blocks become `tool` turns (before the turn's text, as Anthropic orders them), an assistant
turn's `tool_use` blocks its `tool_calls` (`input` as JSON text); `thinking` blocks a client
sends back are the model's own notes and are dropped. Images and documents are refused: moa's
engine carries text only, so no provider it calls could read them. Client tools (`name`,
`description`, `input_schema`) and `tool_choice` (`auto`, `any`, `tool`, `none`) take chat's
form and reach the aggregator only. Anthropic's server tools (web search, bash, …) are its to
run, so they are refused with a 400 naming the tool.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from moa.server.errors import bad_request
from moa.server.schemas import WHOLE
from moa.types import Answering, Message, Sampling, Tools

_DROPPED = {"thinking", "redacted_thinking"}
_NOT_TEXT = {"image", "document", "search_result", "container_upload"}


class MessagesRequest(BaseModel):
    # Fields a MoA cannot act on (metadata, service_tier, cache_control, …) are ignored.
    # strict, as on chat completions: "10" is not a number and 0 is not false.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: Annotated[int, Field(ge=1), WHOLE] = Field(
        description="Required, as Anthropic requires it: the most the answer may write."
    )
    system: str | list[dict[str, Any]] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0), WHOLE] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    moa_trace: bool | None = None
    moa_layers: str | None = None
    moa_max_cost_usd: Annotated[float, Field(gt=0)] | None = None


class CountTokensRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None


def to_sampling(request: MessagesRequest) -> Sampling:
    """The answer's settings. `top_k` is sent where the provider declares it, and refused
    before any call where not (OpenAI's API has no such field)."""
    stop = tuple(request.stop_sequences) if request.stop_sequences else None
    return Sampling(
        temperature=request.temperature,
        max_tokens=request.max_tokens,
        top_p=request.top_p,
        stop=stop,
        top_k=request.top_k,
    )


def to_messages(
    system: str | list[dict[str, Any]] | None, turns: Sequence[dict[str, Any]]
) -> list[Message]:
    out: list[Message] = []
    if system:
        out.append(Message(role="system", content=_system(system)))
    for index, turn in enumerate(turns):
        where = f"messages[{index}]"
        role = turn.get("role")
        if role == "user":
            out += _user(where, turn.get("content"), out)
        elif role == "assistant":
            out.append(_assistant(where, turn.get("content")))
        elif role == "system":  # Anthropic's mid-conversation system messages
            text = _system(_blocks(where, turn.get("content")), where)
            out.append(Message(role="system", content=text))
        else:
            raise bad_request(f"{where}: role must be user, assistant or system", f"{where}.role")
    return out


def _system(system: str | list[dict[str, Any]], where: str = "system") -> str:
    if isinstance(system, str):
        return system
    return "\n".join(_text_of(where, j, block) for j, block in enumerate(system))


def _blocks(where: str, content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(f"{where}: content must be a string or a list", f"{where}.content")
    for j, block in enumerate(content):
        if not isinstance(block, dict):
            raise bad_request(f"{where}.content[{j}]: a block is an object", f"{where}.content")
    return content


def _text_of(where: str, j: int, block: Any) -> str:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind in _NOT_TEXT:
        raise bad_request(
            f"{where}.content[{j}]: {kind} blocks are not supported — moa's engine carries "
            f"text only, so no model of the mixture could read it; send text",
            f"{where}.content[{j}].type",
        )
    if kind != "text" or not isinstance(block.get("text"), str):
        raise bad_request(
            f"{where}.content[{j}]: expected a text block, got {kind!r}",
            f"{where}.content[{j}].type",
        )
    return str(block["text"])


def _user(where: str, content: Any, before: Sequence[Message]) -> list[Message]:
    texts: list[str] = []
    results: list[Message] = []
    blocks = _blocks(where, content)
    if not blocks:
        raise bad_request(
            f"{where}: the content is empty — a user turn needs a text or tool_result block",
            f"{where}.content",
        )
    for j, block in enumerate(blocks):
        if block.get("type") == "tool_result":
            results.append(_tool_result(f"{where}.content[{j}]", block, before))
        elif block.get("type") not in _DROPPED:
            texts.append(_text_of(where, j, block))
    text = [Message(role="user", content="\n".join(texts))] if texts else []
    return results + text


def _tool_result(where: str, block: dict[str, Any], before: Sequence[Message]) -> Message:
    call_id = block.get("tool_use_id")
    called = {c.get("id") for m in before for c in m.get("tool_calls", [])}
    if not isinstance(call_id, str) or call_id not in called:
        raise bad_request(
            f"{where}: no tool_use block before it has id {call_id!r} — send the assistant's "
            "tool_use blocks back in its turn, before their results",
            f"{where}.tool_use_id",
        )
    content = block.get("content", "")
    text = content if isinstance(content, str) else _system(content) if content else ""
    if block.get("is_error"):
        text = f"[the tool failed] {text}"
    return Message(role="tool", content=text, tool_call_id=call_id)


def _assistant(where: str, content: Any) -> Message:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(where, content)):
        kind = block.get("type")
        if kind == "tool_use":
            calls.append(_tool_use(f"{where}.content[{j}]", block))
        elif kind not in _DROPPED:
            texts.append(_text_of(where, j, block))
    message = Message(role="assistant", content="".join(texts))
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_use(where: str, block: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
        raise bad_request(f"{where}: a tool_use block needs `id` and `name`", where)
    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
    function = {"name": block["name"], "arguments": arguments}
    return {"id": block["id"], "type": "function", "function": function}


# -- tools ---------------------------------------------------------------------------------


def to_answering(request: MessagesRequest | CountTokensRequest) -> Answering:
    if not request.tools:
        if request.tool_choice and request.tool_choice.get("type") in ("any", "tool"):
            raise bad_request(
                "tool_choice asks for a tool call, but no tools are given", "tool_choice"
            )
        return Answering()
    specs = tuple(_tool(i, spec) for i, spec in enumerate(request.tools))
    choice, parallel = _tool_choice(request.tool_choice)
    return Answering(tools=Tools(specs, choice, parallel))


def _tool(index: int, spec: Any) -> dict[str, Any]:
    where = f"tools[{index}]"
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in (None, "custom"):
        raise bad_request(
            f"{where}: tools of type {kind!r} are Anthropic's server tools, which only "
            'Anthropic runs — give client tools: {"name", "description", "input_schema"}',
            f"{where}.type",
        )
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise bad_request(f"{where}: a tool needs a `name`", f"{where}.name")
    schema = spec.get("input_schema")
    if not isinstance(schema, dict):
        raise bad_request(
            f"{where}: a tool needs an `input_schema` object", f"{where}.input_schema"
        )
    function: dict[str, Any] = {"name": spec["name"], "parameters": schema}
    if isinstance(spec.get("description"), str):
        function["description"] = spec["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any] | None) -> tuple[str | dict[str, Any] | None, bool | None]:
    if choice is None:
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", None
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise bad_request(
        'tool_choice: use {"type": "auto"}, {"type": "any"}, {"type": "none"} or '
        '{"type": "tool", "name": …}',
        "tool_choice",
    )


def asks_thinking(request: MessagesRequest) -> bool:
    """Whether the request turned Anthropic's extended thinking on."""
    return bool(request.thinking and request.thinking.get("type") in ("enabled", "adaptive"))
