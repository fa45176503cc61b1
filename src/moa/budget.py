"""Context budgets: references are shortened to fit a model's window, never sent to be rejected.

Token counts are estimated from characters (3 characters a token: conservative for English and
code, so estimates run high and prompts stay inside the window).
"""

from __future__ import annotations

from collections.abc import Sequence

from moa.types import Message

CHARS_PER_TOKEN = 3.0
DEFAULT_CONTEXT_WINDOW = 8192
CUT_MARK = " […cut to fit the context window]"

# Context windows of the models the built-in recipes use (by the provider's model name).
KNOWN_CONTEXT_WINDOWS: dict[str, int] = {
    "meta-llama/Llama-3.3-70B-Instruct-Turbo": 131072,
    "Qwen/Qwen2.5-72B-Instruct-Turbo": 32768,
    "Qwen/Qwen2.5-Coder-32B-Instruct": 32768,
    "deepseek-ai/DeepSeek-V3": 131072,
    "Qwen/Qwen1.5-110B-Chat": 32768,
    "Qwen/Qwen1.5-72B-Chat": 32768,
    "microsoft/WizardLM-2-8x22B": 65536,
    "meta-llama/Llama-3-70b-chat-hf": 8192,
    "mistralai/Mixtral-8x22B-Instruct-v0.1": 65536,
    "databricks/dbrx-instruct": 32768,
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo": 131072,
    "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo": 131072,
    "google/gemma-2-27b-it": 8192,
    "zero-one-ai/Yi-34B-Chat": 4096,
    "deepseek-ai/deepseek-llm-67b-chat": 4096,
    "gpt-4o": 128000,
    "gpt-4o-mini": 128000,
}


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


def messages_tokens(messages: Sequence[Message]) -> int:
    # A few tokens per message for the chat template's role markers.
    return sum(estimate_tokens(m["content"]) + 4 for m in messages)


def fit_references(
    references: Sequence[str], *, available_tokens: int, overhead_tokens: int
) -> list[str]:
    """Shorten references proportionally so that they and the rest of the prompt fit.

    `available_tokens` is the window minus the answer's max_tokens; `overhead_tokens` is what the
    prompt costs without references. Each reference keeps its beginning and is marked where cut.
    """
    room = available_tokens - overhead_tokens
    needed = sum(estimate_tokens(r) for r in references)
    if needed <= room:
        return list(references)
    mark = estimate_tokens(CUT_MARK)
    scale = max(0.0, room - mark * len(references)) / needed
    out = []
    for ref in references:
        keep = int(len(ref) * scale)
        out.append(ref if keep >= len(ref) else ref[:keep].rstrip() + CUT_MARK)
    return out
