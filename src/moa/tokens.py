"""Context budgets: references are shortened to fit a model's window, never sent to be rejected.

Token counts come from the model's profile (`ModelProfile.count_tokens`): the embedded model
counts with its own tokenizer; for the others `estimate_tokens` estimates from characters —
3 characters a token for alphabetic text (conservative for English and code) and one token per
CJK character (BPE vocabularies spend about 0.7-1.5 tokens on each), so estimates run high and
prompts stay inside the window.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
    # self-moa, together-fusion, openrouter-fusion (the listed windows, or less when unsure).
    "moonshotai/Kimi-K2.5": 262144,
    "deepseek-ai/DeepSeek-V3.1": 131072,
    "Qwen/Qwen3-235B-A22B-Instruct-2507-tput": 131072,
    "MiniMaxAI/MiniMax-M2.5": 131072,
    "openai/gpt-5.4": 128000,
    "anthropic/claude-sonnet-4.6": 128000,
    "google/gemini-3.1-pro-preview": 128000,
    "moonshotai/kimi-k2.5": 262144,
}


# CJK ideographs, kana, hangul and full-width forms: about a token each, not a third of one.
_WIDE = re.compile(r"[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")

TokenCounter = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    wide = len(_WIDE.findall(text))
    return int((len(text) - wide) / CHARS_PER_TOKEN) + wide + 1


def messages_tokens(messages: Sequence[Message], count: TokenCounter = estimate_tokens) -> int:
    # A few tokens per message for the chat template's role markers.
    return sum(count(m["content"]) + 4 for m in messages)


@dataclass(frozen=True, slots=True)
class Cut:
    """How much of one reference was kept to fit the window (characters)."""

    kept: int
    total: int


def fit_references(
    references: Sequence[str],
    *,
    available_tokens: int,
    overhead_tokens: int,
    count: TokenCounter = estimate_tokens,
) -> tuple[list[str], list[Cut]]:
    """Shorten references proportionally so that they and the rest of the prompt fit.

    `available_tokens` is the window minus the answer's max_tokens; `overhead_tokens` is what the
    prompt costs without references. Each reference keeps its beginning and is marked where cut;
    the cuts say how much of each was kept (empty when nothing was cut).
    """
    room = available_tokens - overhead_tokens
    needed = sum(count(r) for r in references)
    if needed <= room:
        return list(references), []
    mark = count(CUT_MARK)
    scale = max(0.0, room - mark * len(references)) / needed
    out, cuts = [], []
    for ref in references:
        keep = int(len(ref) * scale)
        if keep >= len(ref):
            out.append(ref)
            cuts.append(Cut(len(ref), len(ref)))
        else:
            out.append(ref[:keep].rstrip() + CUT_MARK)
            cuts.append(Cut(len(ref[:keep].rstrip()), len(ref)))
    return out, cuts
