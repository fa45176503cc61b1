"""The Responses API's items and tools, mapped to and from the chat shapes the engine speaks.

The one place the two APIs meet. In: message items become turns; a `function_call` item (the
model's call, sent back by the client) joins the assistant turn before it as one of its
`tool_calls`, and a `function_call_output` item becomes the `tool` turn answering it — so a
follow-up turn reaches the aggregator exactly as on chat completions. Flat function tools
(`{"type": "function", "name", "parameters"}`) and `tool_choice` take chat's nested form, and
`text.format` is chat's `response_format`. Out:
an answer's text is one `message` item, each of its tool calls one `function_call` item whose
`call_id` is the chat call's `id`. Only function tools exist here: a hosted tool (web search,
file search, …) is OpenAI's to run, so it is refused with a 400 naming the tool.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from moa.server.errors import bad_request
from moa.trace import Choice
from moa.types import Message, ResponseFormat, Role, Tools

_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
}
_TEXT_PARTS = {"input_text", "output_text", "text"}
_CHOICES = ("auto", "none", "required")
# The function tool's own keys (as FunctionToolParam spells them) that chat's `function` takes.
_FUNCTION_KEYS = ("name", "description", "parameters", "strict")
SUPPORTED_TOOLS = (
    'only function tools are supported: {"type": "function", "name": …, "parameters": {…}}'
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# -- in: input items -----------------------------------------------------------------------


def input_messages(items: Sequence[Any]) -> list[Message]:
    """The conversation the input items hold, in the chat shape."""
    out: list[Message] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise bad_request(f"{where}: an input item must be an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(where, item))
        elif kind == "function_call":
            _add_call(out, _function_call(where, item))
        elif kind == "function_call_output":
            out.append(_function_output(where, item, out))
        else:
            raise bad_request(
                f"{where}: items of type {kind!r} are not supported (use message, "
                f"function_call or function_call_output)",
                f"{where}.type",
            )
    return out


def _message(where: str, item: dict[str, Any]) -> Message:
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise bad_request(f"{where}: role must be one of {', '.join(_ROLES)}", f"{where}.role")
    return Message(role=role, content=_text(where, item.get("content"), "content"))


def _text(where: str, content: Any, key: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where}: {key} must be a string or a list", f"{where}.{key}")
    texts = []
    for j, part in enumerate(content):
        part_type = part.get("type") if isinstance(part, dict) else None
        if part_type not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise bad_request(
                f"{where}.{key}[{j}]: only text parts are supported (got {part_type!r})",
                f"{where}.{key}[{j}].type",
            )
        texts.append(part["text"])
    return "\n".join(texts)


def _function_call(where: str, item: dict[str, Any]) -> dict[str, Any]:
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise bad_request(f"{where}: a function_call item needs `{key}`", f"{where}.{key}")
    function = {"name": item["name"], "arguments": item["arguments"]}
    return {"id": item["call_id"], "type": "function", "function": function}


def _add_call(out: list[Message], call: dict[str, Any]) -> None:
    """A model's answer was one assistant turn, however many items it came back as: its
    calls join the assistant message (text or calls) just before them."""
    if out and out[-1]["role"] == "assistant":
        out[-1].setdefault("tool_calls", []).append(call)
    else:
        out.append(Message(role="assistant", content="", tool_calls=[call]))


def _function_output(where: str, item: dict[str, Any], before: Sequence[Message]) -> Message:
    call_id = item.get("call_id")
    called = {c.get("id") for m in before for c in m.get("tool_calls", [])}
    if not isinstance(call_id, str) or call_id not in called:
        # As OpenAI answers: no model can read a result of a call it was never shown.
        raise bad_request(
            f"{where}: no function_call item before it has call_id {call_id!r} — send the "
            "model's function_call items back in `input`, before their outputs",
            f"{where}.call_id",
        )
    return Message(
        role="tool", content=_text(where, item.get("output"), "output"), tool_call_id=call_id
    )


# -- in: tools -----------------------------------------------------------------------------


def to_tools(specs: Sequence[Any], choice: Any, parallel: bool | None) -> Tools:
    """The request's function tools and `tool_choice` as chat completions sends them."""
    return Tools(
        tuple(_tool(i, spec) for i, spec in enumerate(specs)), _tool_choice(choice), parallel
    )


def _tool(index: int, spec: Any) -> dict[str, Any]:
    where = f"tools[{index}]"
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind != "function":
        raise bad_request(
            f"{where}: tools of type {kind!r} are not supported — {SUPPORTED_TOOLS}",
            f"{where}.type",
        )
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise bad_request(f"{where}: a function tool needs a `name`", f"{where}.name")
    # `strict` only as given: chat's default (off) is not the Responses API's (on), and a
    # strict schema must follow rules a client that left it unset may not have kept.
    function = {k: spec[k] for k in _FUNCTION_KEYS if spec.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> str | dict[str, Any] | None:
    if choice is None or choice in _CHOICES:
        return choice  # type: ignore[no-any-return]
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if kind == "allowed_tools" and isinstance(choice.get("tools"), list):
        tools = [_named(t) for t in choice["tools"]]
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools},
        }
    raise bad_request(
        f"tool_choice: use {', '.join(map(repr, _CHOICES))}, "
        '{"type": "function", "name": …} or {"type": "allowed_tools", …} '
        f"({SUPPORTED_TOOLS})",
        "tool_choice",
    )


def _named(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or "name" not in tool:
        raise bad_request(f"tool_choice.tools: {SUPPORTED_TOOLS}", "tool_choice.tools")
    return {"type": "function", "function": {"name": tool["name"]}}


# -- in: structured output ----------------------------------------------------------------


def to_response_format(text: Any) -> ResponseFormat | None:
    """`text.format` (the Responses API's `response_format`) as the engine takes it."""
    spec = text.get("format") if isinstance(text, dict) else None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if spec is None or kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object", {}, kind="json_object")
    if kind == "json_schema" and isinstance(spec.get("schema"), dict):
        name = spec.get("name") or "response"
        return ResponseFormat(name, spec["schema"], strict=bool(spec.get("strict")))
    raise bad_request(
        'text.format: use {"type": "json_schema", "name", "schema"}, {"type": "json_object"} '
        'or {"type": "text"}',
        "text.format",
    )


# -- out: output items ---------------------------------------------------------------------


def message_item(item_id: str, text: str | None, status: str) -> dict[str, Any]:
    """The assistant's text as a `message` item (no content part while it is opening)."""
    content = [] if text is None else [text_part(text)]
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id: str, call: dict[str, Any], status: str) -> dict[str, Any]:
    """One of the answer's tool calls (chat's shape) as a `function_call` item."""
    function = call.get("function") or {}
    return {
        "id": item_id,
        "type": "function_call",
        "call_id": call.get("id") or new_id("call"),
        "name": function.get("name", ""),
        "arguments": function.get("arguments", ""),
        "status": status,
    }


def output_items(message_id: str, choice: Choice | None, status: str) -> list[dict[str, Any]]:
    """An answer's items: its text (if any, or if it has nothing else), then its calls."""
    calls = choice.tool_calls if choice is not None else []
    text = choice.text if choice is not None else ""
    items = [message_item(message_id, text, status)] if text or not calls else []
    return items + [call_item(new_id("fc"), call, "completed") for call in calls]


def tools_echo(specs: Sequence[Any] | None) -> list[dict[str, Any]]:
    """The request's tools as a response lists them (what a client did not set, as null)."""
    echo = []
    for spec in specs or ():
        if isinstance(spec, dict):
            echo.append({"parameters": None, "strict": None, **spec})
    return echo
