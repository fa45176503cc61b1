"""A streamed Responses API answer: output items opened and closed as the answer arrives.

The text is a `message` item (`response.output_text.delta` …), each tool call a `function_call`
item (`response.function_call_arguments.delta` …). An item opens on its first piece and closes
when the next one opens or the answer ends, with the `.done` events the SDKs assemble from.
"""

from __future__ import annotations

import json
from typing import Any

from moa.server.responses.items import call_item, message_item, new_id, text_part
from moa.tooluse import with_name_piece


class Numbered:
    """Writes the events of one stream, numbered as the API does (`sequence_number`)."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> str:
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


class StreamedItems:
    """The output items of one streamed answer, in the order they opened."""

    def __init__(self, write: Numbered, message_id: str) -> None:
        self.write = write
        self.message_id = message_id  # the first message item's (any later one gets a new id)
        self.items: list[dict[str, Any]] = []  # each item's latest form
        self.calls: dict[int, int] = {}  # a tool call's index in the answer → its output index
        self.open: int | None = None  # the output index of the item receiving pieces
        self.text: list[str] = []  # the open message's pieces

    def add_text(self, piece: str) -> list[str]:
        out: list[str] = []
        if self.open is None or self.items[self.open]["type"] != "message":
            out += self.close()
            out += self._open_message()
        self.text.append(piece)
        out.append(
            self.write("response.output_text.delta", **self._where(), delta=piece, logprobs=[])
        )
        return out

    def add_calls(self, deltas: tuple[dict[str, Any], ...]) -> list[str]:
        out: list[str] = []
        for delta in deltas:
            index = int(delta.get("index", 0))
            function = delta.get("function") or {}
            if index not in self.calls:
                out += self.close()
                out += self._open_call(index, delta.get("id"), function.get("name") or "")
            else:  # a name sent in pieces, as moa.tooluse.assemble reads it
                item = self.items[self.calls[index]]
                item["name"] = with_name_piece(item["name"], function.get("name"))
            item = self.items[self.calls[index]]
            arguments = function.get("arguments") or ""
            if arguments:
                item["arguments"] += arguments
                out.append(
                    self.write(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=self.calls[index],
                        delta=arguments,
                    )
                )
        return out

    def close(self, status: str = "completed") -> list[str]:
        """The `.done` events of the open item, if there is one."""
        if self.open is None:
            return []
        index, self.open = self.open, None
        item = self.items[index]
        item["status"] = status
        if item["type"] == "message":
            text = "".join(self.text)
            item["content"] = [text_part(text)]
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            return [
                self.write("response.output_text.done", **where, text=text, logprobs=[]),
                self.write("response.content_part.done", **where, part=text_part(text)),
                self.write("response.output_item.done", output_index=index, item=item),
            ]
        return [
            self.write(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
                name=item["name"],
            ),
            self.write("response.output_item.done", output_index=index, item=item),
        ]

    def finish(self, status: str) -> list[str]:
        """Close the answer: an answer with no items at all is an empty message."""
        out = [] if self.items else self._open_message()
        return out + self.close(status)

    def _open_message(self) -> list[str]:
        item_id = self.message_id if not self.items else new_id("msg")
        self.open, self.text = len(self.items), []
        self.items.append(message_item(item_id, None, "in_progress"))
        return [
            self.write(
                "response.output_item.added",
                output_index=self.open,
                item=message_item(item_id, None, "in_progress"),
            ),
            self.write("response.content_part.added", **self._where(), part=text_part("")),
        ]

    def _open_call(self, index: int, call_id: str | None, name: str) -> list[str]:
        call = {"id": call_id, "function": {"name": name}}
        item = call_item(new_id("fc"), call, "in_progress")
        self.open = self.calls[index] = len(self.items)
        self.items.append(item)
        return [self.write("response.output_item.added", output_index=self.open, item=dict(item))]

    def _where(self) -> dict[str, Any]:
        assert self.open is not None
        return {
            "item_id": self.items[self.open]["id"],
            "output_index": self.open,
            "content_index": 0,
        }
