"""A streamed Messages API answer: content blocks opened and closed as the run goes.

    message_start, ping,
    content_block_start (thinking) … thinking_delta … content_block_stop   (the layers, if asked)
    content_block_start (text) … text_delta … content_block_stop
    content_block_start (tool_use) … input_json_delta … content_block_stop  (one per call)
    message_delta (stop_reason, usage, moa), message_stop

Each event goes as `event: TYPE` + `data:`, as Anthropic sends them. A block opens on its first
piece and closes when a piece of another kind (or another call) arrives, or the answer ends.
"""

from __future__ import annotations

import json
from typing import Any

from moa.server.messages.reply import new_id, thinking


def event(kind: str, **fields: Any) -> str:
    payload = {"type": kind, **fields}
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


class Blocks:
    """The content blocks of one streamed answer, in the order they opened."""

    def __init__(self) -> None:
        self.count = 0  # blocks opened so far: the next one's index
        self.open: str | None = None  # the kind of the block receiving pieces
        self.calls: dict[int, int] = {}  # a tool call's index in the answer → its block's
        self.call: int | None = None  # the answer's index of the open tool_use block

    def thinking(self, text: str) -> list[str]:
        out = self._switch("thinking", thinking(""))
        delta = {"type": "thinking_delta", "thinking": text}
        return [*out, event("content_block_delta", index=self.count - 1, delta=delta)]

    def text(self, piece: str) -> list[str]:
        out = self._switch("text", {"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": piece}
        return [*out, event("content_block_delta", index=self.count - 1, delta=delta)]

    def calls_delta(self, deltas: tuple[dict[str, Any], ...]) -> list[str]:
        out: list[str] = []
        for delta in deltas:
            index = int(delta.get("index", 0))
            function = delta.get("function") or {}
            if index not in self.calls:
                out += self.close()
                block: dict[str, Any] = {
                    "type": "tool_use",
                    "id": delta.get("id") or new_id("toolu"),
                    "name": function.get("name") or "",
                    "input": {},
                }
                out.append(event("content_block_start", index=self.count, content_block=block))
                self.calls[index], self.open, self.call = self.count, "tool_use", index
                self.count += 1
            arguments = function.get("arguments") or ""
            if arguments:
                delta_body = {"type": "input_json_delta", "partial_json": arguments}
                out.append(event("content_block_delta", index=self.calls[index], delta=delta_body))
        return out

    def close(self) -> list[str]:
        if self.open is None:
            return []
        self.open = self.call = None
        return [event("content_block_stop", index=self.count - 1)]

    def finish(self) -> list[str]:
        """Close the answer: one with no blocks at all gets an empty text block."""
        out = [] if self.count else self._switch("text", {"type": "text", "text": ""})
        return out + self.close()

    def _switch(self, kind: str, block: dict[str, Any]) -> list[str]:
        if self.open == kind:
            return []
        out = self.close()
        out.append(event("content_block_start", index=self.count, content_block=block))
        self.open = kind
        self.count += 1
        return out
