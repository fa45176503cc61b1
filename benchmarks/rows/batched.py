"""Row 12 — the embedded model's proposals in one llama.cpp batch (issue 12) vs one after another.

N concurrent requests to one model, as a layer of the `local` recipe makes them (its system
prompt and examples, one greedy and the rest at T=0.7 with seeds 1..N-1, MAX_TOKENS each): the
time until every request has streamed its first CHUNK tokens (or finished), and until all have
finished; `LocalProvider(batching=True)` vs `batching=False`, alternating, `reps` times, after a
warm-up that loads the models. Everything in one process: both modes run on moa's one llama
thread. Then, for the same requests at T=0, how many batched answers equal the sequential ones
(llama.cpp's numerics with several sequences per decode).

The staircase aggregator on top of this is row 10's embedded part.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import RowResult, median
from moa.providers.local.provider import LocalProvider
from moa.recipes import build, load
from moa.types import ChatRequest, Message, Sampling

CHUNK = 8
MAX_TOKENS = 32
QUESTION = "Why do leaves change colour in autumn?"
MODELS = ("smollm2", "gemma3-270m")
SIZES = (3, 5)
IDENTITY_QUESTIONS = (
    "Why is the sky blue?",
    "What is the capital of Australia?",
    "Who wrote Hamlet?",
    "How many legs does a spider have?",
    "What is photosynthesis?",
)


def _recipe_prompt(model: str, question: str) -> tuple[tuple[Message, ...], tuple[str, ...]]:
    """The `local` recipe's messages (system, examples, question) and stop for `model`."""
    agents = build(load("local")).layers[0].agents
    agent = next(a for a in agents if a.model == f"local:{model}")
    messages: list[Message] = []
    if agent.system:
        messages.append(Message(role="system", content=agent.system))
    for q, a in agent.examples:
        messages += [Message(role="user", content=q), Message(role="assistant", content=a)]
    messages.append(Message(role="user", content=question))
    return tuple(messages), tuple(agent.sampling.stop or ())


def _requests(model: str, n: int, max_tokens: int = MAX_TOKENS) -> list[ChatRequest]:
    messages, stop = _recipe_prompt(model, QUESTION)
    out = [ChatRequest(model, messages, Sampling(0.0, max_tokens, None, stop or None))]
    for seed in range(1, n):
        out.append(ChatRequest(model, messages, Sampling(0.7, max_tokens, seed, stop or None)))
    return out


async def _timed(provider: LocalProvider, requests: list[ChatRequest]) -> tuple[float, float]:
    """(every request has CHUNK tokens or has finished, every request has finished), s."""
    started = time.perf_counter()
    reached: list[float] = []

    async def one(request: ChatRequest) -> None:
        count = 0
        noted = False
        async for chunk in provider.stream(request):
            count += bool(chunk.text)
            if count >= CHUNK and not noted:
                reached.append(time.perf_counter() - started)
                noted = True
        if not noted:
            reached.append(time.perf_counter() - started)

    await asyncio.gather(*(one(r) for r in requests))
    return max(reached), time.perf_counter() - started


async def _texts(provider: LocalProvider, requests: list[ChatRequest]) -> list[str]:
    async def one(request: ChatRequest) -> str:
        return (await provider.complete(request)).text

    return list(await asyncio.gather(*(one(r) for r in requests)))


async def _identical(model: str) -> tuple[int, int]:
    """T=0 answers to IDENTITY_QUESTIONS, all at once batched vs one at a time sequential."""
    requests = []
    for question in IDENTITY_QUESTIONS:
        messages, stop = _recipe_prompt(model, question)
        requests.append(ChatRequest(model, messages, Sampling(0.0, MAX_TOKENS, 0, stop or None)))
    batched = await _texts(LocalProvider(batching=True), requests)
    sequential = [await LocalProvider(batching=False).complete(r) for r in requests]
    return sum(b == s.text for b, s in zip(batched, sequential, strict=True)), len(requests)


async def _measure(reps: int) -> dict[str, dict[str, list[float]]]:
    on, off = LocalProvider(batching=True), LocalProvider(batching=False)
    for model in MODELS:  # load, and warm both paths
        await _timed(off, _requests(model, 1, 4))
        await _timed(on, _requests(model, 2, 4))
    out: dict[str, dict[str, list[float]]] = {}
    for model in MODELS:
        for n in SIZES:
            for mode in ("sequential", "batched"):
                out[f"{model} x{n} {mode}"] = {"all_first": [], "all_done": []}
            for _ in range(reps):
                for mode, provider in (("sequential", off), ("batched", on)):
                    first, done = await _timed(provider, _requests(model, n))
                    out[f"{model} x{n} {mode}"]["all_first"].append(first)
                    out[f"{model} x{n} {mode}"]["all_done"].append(done)
    return out


def run(quick: bool = False) -> RowResult:
    reps = 1 if quick else 3
    row = RowResult("12", "embedded proposals batched vs one after another (llama.cpp)")
    row.params = {"reps": reps, "chunk_tokens": CHUNK, "max_tokens": MAX_TOKENS, "sizes": SIZES}
    try:
        measured = asyncio.run(_measure(reps))
    except ImportError as error:
        row.skipped = f"{type(error).__name__}: {error}"
        return row
    row.raw["times"] = measured
    for model in MODELS:
        for n in SIZES:
            seq, bat = measured[f"{model} x{n} sequential"], measured[f"{model} x{n} batched"]
            for key, label in (
                ("all_first", f"first {CHUNK} tokens of all"),
                ("all_done", "all done"),
            ):
                s, b = median(seq[key]), median(bat[key])
                row.add(f"{model} x{n} {label}: sequential", s, "s")
                row.add(f"{model} x{n} {label}: batched", b, "s")
                row.add(f"{model} x{n} {label}: batched / sequential", b / s)
    for model in MODELS:
        same, total = asyncio.run(_identical(model))
        row.add(f"{model}: T=0 answers batched == sequential (of {total})", same)
    return row
