"""Conversations that use tools: what proposers see of them, and a streamed call put together.

Only the aggregator acts (it holds the tool schema and may answer with `tool_calls`, as in
Hermes Agent's mixture-of-agents); proposers advise. Most proposers are not the acting model and
many cannot take tool turns at all, so they see tool calls and tool results rendered as text in
ordinary user/assistant turns. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from moa.types import Message


def has_tool_turns(messages: Sequence[Message]) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def as_text(messages: Sequence[Message]) -> list[Message]:
    """`messages` with every tool call and tool result written out as text: an assistant turn's
    calls appended to its content, a tool result as a user turn (merged with a neighbouring
    user turn, since chat templates want user and assistant to alternate)."""
    out: list[Message] = []
    names = _call_names(messages)
    for message in messages:
        if message["role"] == "tool":
            name = names.get(message.get("tool_call_id", ""), message.get("name", "a tool"))
            turn = Message(role="user", content=f"[result of {name}]\n{message['content']}")
        elif message.get("tool_calls"):
            calls = "\n".join(_call_text(c) for c in message.get("tool_calls", []))
            content = "\n".join(p for p in (message["content"], calls) if p)
            turn = Message(role="assistant", content=content)
        else:
            turn = Message(role=message["role"], content=message["content"])
        if out and turn["role"] == "user" and out[-1]["role"] == "user":
            out[-1] = Message(role="user", content=out[-1]["content"] + "\n\n" + turn["content"])
        else:
            out.append(turn)
    return out


def _call_names(messages: Sequence[Message]) -> dict[str, str]:
    return {
        str(call.get("id")): str((call.get("function") or {}).get("name", "a tool"))
        for message in messages
        for call in message.get("tool_calls", [])
    }


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function") or {}
    return f"[called {function.get('name', '?')}({function.get('arguments', '')})]"


def assemble(deltas: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole tool calls from OpenAI's streamed deltas: a call's `id`, `type` and name come in
    its first delta, its `arguments` in pieces across the rest, all under one `index`."""
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        index = int(delta.get("index", 0))
        call = calls.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if delta.get("id"):
            call["id"] = delta["id"]
        function = delta.get("function") or {}
        call["function"]["name"] = with_name_piece(call["function"]["name"], function.get("name"))
        call["function"]["arguments"] += function.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]


def with_name_piece(name: str, piece: str | None) -> str:
    """A call's name after one more delta. Some servers (llama-cpp-python's among them) repeat
    the whole name in every delta of a call: a piece equal to the name so far is that name
    again, not its continuation (no real name is a word said twice over)."""
    if not piece or piece == name:
        return name
    return name + piece


class DeltaCleaner:
    """One stream's tool-call deltas as OpenAI sends them: a call's `id` and name once, in its
    first delta. Clients (the openai SDK's stream helpers, openai-agents) concatenate every
    string a delta repeats, so a server that repeats them would give `get_weatherget_weather`."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[str, str]] = {}  # index → (id, name so far)

    def __call__(self, deltas: Iterable[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
        return tuple(self._clean(delta) for delta in deltas)

    def _clean(self, delta: dict[str, Any]) -> dict[str, Any]:
        index = int(delta.get("index", 0))
        function = dict(delta.get("function") or {})
        if index not in self.seen:
            self.seen[index] = (str(delta.get("id") or ""), str(function.get("name") or ""))
            return delta
        call_id, name = self.seen[index]
        out = {k: v for k, v in delta.items() if k not in ("id", "type", "function")}
        if delta.get("id") and delta["id"] != call_id:
            out["id"] = call_id = delta["id"]
        piece = function.pop("name", None)
        grown = with_name_piece(name, piece)
        if grown != name:
            function["name"] = grown[len(name) :]
        self.seen[index] = (call_id, grown)
        out["function"] = function
        return out


def as_deltas(calls: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Complete calls (a whole-answer body) as one delta each, for a stream."""
    return tuple({"index": i, **call} for i, call in enumerate(calls))


def describe(calls: Sequence[dict[str, Any]]) -> str:
    """The calls as one line of text (a trace's `output` when the answer was only calls)."""
    return json.dumps(
        [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in calls]
    )
