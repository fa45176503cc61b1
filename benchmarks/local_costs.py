"""What the embedded model's work costs on this machine, the figures the staircase spacing rests
on (README "Time to first token", benchmarks/RESULTS.md row 10):

- a prompt token read (one `eval` of ~400 tokens) against a generated token (one sequence of 96
  tokens alone in the batch);
- 96 batch steps with 3 short sequences, with a 4th short one, and with a 4th whose prompt is
  long (as a staircase aggregator's is; read before the clock starts): what one more sequence
  adds per step.

    python -m benchmarks.local_costs

SmolLM2-135M, llama.cpp's default threads; medians of 3 runs, each from cold caches.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from statistics import median

from moa.providers.local.provider import LocalProvider, forget_cached_prompts, resolve_model_path
from moa.types import ChatRequest, Message, Sampling

TOKENS = 96
RUNS = 3


def prompt_read_ms() -> float:
    """One token of a ~400-token prompt read in one `eval` (what a staircase step re-reads)."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(resolve_model_path("smollm2")), n_ctx=2048, verbose=False)
    prompt = llama.tokenize(b"The quick brown fox jumps over the lazy dog. " * 40)
    reads = []
    for _ in range(RUNS):
        llama.reset()
        started = time.perf_counter()
        llama.eval(prompt)
        reads.append((time.perf_counter() - started) / len(prompt))
    return median(reads) * 1000


def _ask(text: str, seed: int) -> ChatRequest:
    sampling = Sampling(temperature=1.0, max_tokens=TOKENS, seed=seed)
    return ChatRequest("smollm2", (Message(role="user", content=text),), sampling)


async def batch_seconds(requests: list[ChatRequest], warm: ChatRequest | None = None) -> float:
    """Median wall time of the requests run together; `warm`'s prompt is read beforehand, so
    that only its steps are timed."""
    provider = LocalProvider(batching=True)

    async def one(request: ChatRequest) -> None:
        async for _ in provider.stream(request):
            pass

    times = []
    for _ in range(RUNS):
        forget_cached_prompts()
        if warm is not None:
            await one(replace(warm, sampling=replace(warm.sampling, max_tokens=1)))
        started = time.perf_counter()
        await asyncio.gather(*(one(r) for r in requests))
        times.append(time.perf_counter() - started)
    return median(times)


def main() -> None:
    short = [_ask(f"Tell me a story about the number {i}.", i) for i in range(4)]
    long = _ask("Summarize: " + " ".join(f"word{i}" for i in range(300)), 9)
    alone = asyncio.run(batch_seconds(short[:1]))
    three = asyncio.run(batch_seconds(short[:3]))
    four = asyncio.run(batch_seconds(short))
    with_long = asyncio.run(batch_seconds([*short[:3], long], warm=long))
    read_ms, write_ms = prompt_read_ms(), 1000 * alone / TOKENS
    print(
        f"prompt token read: {read_ms:.2f} ms; generated token, one sequence alone: "
        f"{write_ms:.2f} ms (read / generated {read_ms / write_ms:.2f})"
    )
    print(
        f"{TOKENS} tokens each — 1 short: {alone:.2f} s; 3 short: {three:.2f} s; 4 short: "
        f"{four:.2f} s; 3 short + 1 with a long prompt (already read): {with_long:.2f} s"
    )
    for label, total in (
        ("a 4th short sequence", four),
        ("a 4th, long-prompt sequence", with_long),
    ):
        print(f"{label} adds {1000 * (total - three) / TOKENS:.1f} ms per step")


if __name__ == "__main__":
    main()
