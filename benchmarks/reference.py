"""The reference MoA code's calling styles, re-implemented here (our code, not theirs) so the
benchmark can run the same workload the way it does, against the same fake upstream.

Faithful to the reference (togethercomputer/MoA) in what matters for timing and throughput:

* notebook / `moa.py` / `advanced-moa.py` style: each layer's proposers gathered with
  `asyncio.gather` on an async client; layer 2+ get a system prompt made of the aggregate-and-
  synthesize text plus the numbered previous answers; the aggregator is then called with a
  *synchronous* client, streaming, inside the coroutine.
* evaluation-script style (`generate_for_alpaca_eval.py` and friends): a synchronous client,
  the proposers called one after another, then the aggregator.
* retries: `for sleep_time in [1, 2, 4]` around the call, catching the rate-limit error only;
  after the third 429 the reference crashes (`response` is unbound) — here that is an
  `UnboundLocalError` too, counted by the caller. `backoff_scale` scales the sleeps when the
  benchmark scales time down.

The reference uses the Together SDK; here it is the `openai` SDK with its own retries off
(`max_retries=0`), so the only retrying is the reference's visible loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import openai

from moa.call.prompts import AGGREGATE_AND_SYNTHESIZE

SLEEPS = (1, 2, 4)


def collect_responses(system_prompt: str, results: Sequence[str]) -> str:
    return system_prompt + "\n" + "\n".join(f"{i + 1}. {r}" for i, r in enumerate(results))


def _messages(user_prompt: str, prev: Sequence[str] | None) -> list[dict[str, str]]:
    if prev:
        return [
            {"role": "system", "content": collect_responses(AGGREGATE_AND_SYNTHESIZE, prev)},
            {"role": "user", "content": user_prompt},
        ]
    return [{"role": "user", "content": user_prompt}]


async def run_llm(
    client: openai.AsyncOpenAI,
    model: str,
    user_prompt: str,
    prev_response: Sequence[str] | None = None,
    *,
    backoff_scale: float = 1.0,
    on_429: list[int] | None = None,
) -> str:
    """The notebook's `run_llm`: fixed 1-2-4 s backoff on rate limits, then give up (crash)."""
    for sleep_time in SLEEPS:
        try:
            response = await client.chat.completions.create(
                model=model,
                messages=_messages(user_prompt, prev_response),  # type: ignore[arg-type]
                temperature=0.7,
                max_tokens=512,
            )
            break
        except openai.RateLimitError:
            if on_429 is not None:
                on_429.append(1)
            await asyncio.sleep(sleep_time * backoff_scale)
    return response.choices[0].message.content or ""  # unbound after 3 x 429, as upstream


async def notebook_moa(
    client: openai.AsyncOpenAI,
    sync_client: openai.OpenAI | None,
    layers: Sequence[Sequence[str]],
    aggregator: str,
    user_prompt: str,
    *,
    backoff_scale: float = 1.0,
    on_429: list[int] | None = None,
) -> str:
    """`multi_layer_moa`: gathered proposers per layer, then the aggregator.

    With a `sync_client` the aggregator streams on it, blocking the event loop (as the
    notebook does); without one it goes through `run_llm` (the notebook's note: run_llm can
    serve the aggregator too), which the batch row uses so that prompts can overlap."""
    results: list[str] = []
    for models in layers:
        results = list(
            await asyncio.gather(
                *(
                    run_llm(
                        client,
                        m,
                        user_prompt,
                        prev_response=results or None,
                        backoff_scale=backoff_scale,
                        on_429=on_429,
                    )
                    for m in models
                )
            )
        )
    if sync_client is None:
        return await run_llm(
            client, aggregator, user_prompt, results, backoff_scale=backoff_scale, on_429=on_429
        )
    stream = sync_client.chat.completions.create(
        model=aggregator,
        messages=_messages(user_prompt, results),  # type: ignore[arg-type]
        stream=True,
    )
    parts = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    return "".join(parts)


def generate_sync(
    client: openai.OpenAI, model: str, user_prompt: str, prev: Sequence[str] | None
) -> str:
    """The eval scripts' `generate_together`: one blocking call, fixed backoff on 429."""
    for sleep_time in SLEEPS:
        try:
            response = client.chat.completions.create(
                model=model,
                messages=_messages(user_prompt, prev),  # type: ignore[arg-type]
                temperature=0.7,
                max_tokens=512,
            )
            break
        except openai.RateLimitError:
            time.sleep(sleep_time)
    return response.choices[0].message.content or ""


def eval_script_moa(
    client: openai.OpenAI, layers: Sequence[Sequence[str]], aggregator: str, user_prompt: str
) -> str:
    """`generate_for_alpaca_eval.py`'s loop: proposers one after another, layer by layer."""
    results: list[str] = []
    for models in layers:
        results = [generate_sync(client, m, user_prompt, results or None) for m in models]
    return generate_sync(client, aggregator, user_prompt, results)
