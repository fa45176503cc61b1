"""A chat UI's side requests: Open WebUI asks the chat's own model for each chat's title, its
tags and follow-up questions (and, with web search on, search queries), every one a whole
mixture run on a layered recipe. Such a request may be answered by the recipe's aggregator
alone (`moa.engine.mixture.MoA.alone`): when the recipe says `side_requests = "aggregator"`
and the request is one of Open WebUI's tasks, or when the `X-MoA-Side-Request` header says so
(`true` or `false`, over the recipe)."""

from __future__ import annotations

from collections.abc import Sequence

from moa.server.runs import TRUTHY
from moa.types import Message

# How Open WebUI's task prompts begin and what each holds (its DEFAULT_*_PROMPT_TEMPLATEs:
# title, tags, follow-ups, queries, image prompts), the conversation quoted inside.
TASK_START, TASK_HISTORY = "### Task:", "<chat_history>"


def is_side_request(recipe_value: str, messages: Sequence[Message], header: str | None) -> bool:
    if header is not None and header.strip():
        return header.strip().lower() in TRUTHY
    if recipe_value != "aggregator":
        return False
    asked = [m for m in messages if m["role"] == "user"]
    text = asked[-1]["content"].lstrip() if asked else ""
    return text.startswith(TASK_START) and TASK_HISTORY in text
