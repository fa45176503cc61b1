"""A finished run as a Messages API `message`: its content blocks (the layers as a `thinking`
block when asked, the answer's text, each tool call a `tool_use` block), why it stopped, and
its usage, with the `moa` extension beside them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from moa.trace import Choice, Result
from moa.types import Usage


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def stop_reason(choice: Choice | None) -> str:
    """Anthropic's word for why the answer ended (moa applies the stop sequences itself, so it
    knows when one ended it)."""
    if choice is None:
        return "end_turn"
    if choice.tool_calls:
        return "tool_use"
    if choice.stop_sequence is not None:
        return "stop_sequence"
    return "max_tokens" if choice.finish_reason == "length" else "end_turn"


def stop_fields(choice: Choice | None) -> dict[str, str | None]:
    """`stop_reason` and `stop_sequence`, as a message and a stream's `message_delta` say them."""
    sequence = choice.stop_sequence if choice is not None else None
    return {"stop_reason": stop_reason(choice), "stop_sequence": sequence}


def usage_body(usage: Usage | None) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
    }


def tool_input(arguments: str) -> Any:
    """A call's arguments as the object `tool_use.input` is; text that is not a JSON object
    is kept, under `arguments`, rather than lost."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def tool_use(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id") or new_id("toolu"),
        "name": function.get("name", ""),
        "input": tool_input(function.get("arguments", "")),
    }


def thinking(text: str) -> dict[str, Any]:
    # No signature: it is moa's narration of the layers, not a model's signed thinking.
    return {"type": "thinking", "thinking": text, "signature": ""}


def content(choice: Choice | None, layers: str | None) -> list[dict[str, Any]]:
    blocks = [thinking(layers)] if layers else []
    text = choice.text if choice is not None else ""
    calls = choice.tool_calls if choice is not None else []
    if text or not calls:
        blocks.append({"type": "text", "text": text})
    return blocks + [tool_use(call) for call in calls]


def message(
    message_id: str,
    model: str,
    blocks: list[dict[str, Any]],
    stop: dict[str, str | None] | None,
    usage: Usage | None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        **(stop or {"stop_reason": None, "stop_sequence": None}),
        "usage": usage_body(usage),
    }


def body(message_id: str, model: str, result: Result, layers: str | None) -> dict[str, Any]:
    choice = result.choices[0] if result.choices else None
    return message(message_id, model, content(choice, layers), stop_fields(choice), result.usage)
