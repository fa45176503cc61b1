"""An LLM judge: any `provider:model`, called at temperature 0, and its verdict parsers.

Judge calls go through the same `Caller` as MoA runs (timeouts, retries, cache), so a judged
pair that is judged again is answered from the cache at no cost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from moa.call.agent import Agent
from moa.call.caller import Caller
from moa.call.request import Call
from moa.policies.cache import Cache
from moa.policies.retry import RetryPolicy
from moa.pricing import PriceBook
from moa.providers.registry import Registry
from moa.types import Message, Sampling, Usage


class Judge:
    def __init__(
        self,
        model: str,
        registry: Registry,
        *,
        max_tokens: int,
        cache: Cache | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        prices: PriceBook | None = None,
    ) -> None:
        self.model = model
        self._prices = prices or PriceBook()
        self._agent = Agent(model, Sampling(temperature=0.0, max_tokens=max_tokens))
        self._caller = Caller(registry, retry or RetryPolicy(), timeout_s, Sampling(), cache)
        self._caller.check(self._agent)  # a missing key fails before any answer is generated

    async def ask(self, messages: Sequence[Message]) -> tuple[str, Usage]:
        completion = await self._caller.complete(Call(self._agent, messages))
        cost = self._prices.cost(self.model, completion.usage)
        return completion.text, replace(completion.usage, cost_usd=cost)


# -- AlpacaEval 2 pairwise ------------------------------------------------------------------

_CHATML = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)<\|im_end\|>", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{(instruction|output_1|output_2)\}")
_MODEL_ID = re.compile(
    r"""^(?:(?i:model(?:[ _]identifier)?)\s*[:=]?\s*)?["'`*\s]*([mM])["'`*.\s]*$"""
)


def fill(template: str, values: Mapping[str, str]) -> str:
    """Put values into `{name}` placeholders in one pass: an output that itself contains
    `{output_2}` stays literal text, and the template's other braces are left alone."""
    return _PLACEHOLDER.sub(lambda m: values[m[1]], template)


def chatml_messages(text: str) -> list[Message]:
    """AlpacaEval's prompt files are ChatML (`<|im_start|>role ... <|im_end|>`) turned into
    chat messages before they are sent; so are these."""
    messages = [Message(role=role, content=body.strip()) for role, body in _CHATML.findall(text)]
    return messages or [Message(role="user", content=text.strip())]


def pairwise_messages(
    template: str, instruction: str, output_1: str, output_2: str
) -> list[Message]:
    values = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    # Fill each message after splitting, so an output holding `<|im_end|>` cannot end a turn.
    return [
        Message(role=m["role"], content=fill(m["content"], values))
        for m in chatml_messages(template)
    ]


def parse_pairwise(text: str) -> int | None:
    """1 if the judge picked `m` (output_1), 2 for `M` (output_2), None if it is unparsable."""
    found = _MODEL_ID.match(text.strip())
    if found is None:
        return None
    return 1 if found[1] == "m" else 2


# -- MT-Bench single-answer grading ---------------------------------------------------------

# FastChat's two patterns: "[[8]]" first, then "[8]" as a fallback.
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_LOOSE = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(text: str) -> float | None:
    """The 1-10 rating in a judgment, or None when there is none (or it is out of range)."""
    found = _RATING.search(text) or _RATING_LOOSE.search(text)
    if found is None:
        return None
    rating = float(found[1])
    return rating if 1 <= rating <= 10 else None
