"""Row 6 — the embedded model: moa's local adapter vs raw llama-cpp-python, and `moa ask`.

Tokens/s: the same prompt and settings (temperature 0, seed 0, max_tokens MAX_TOKENS, n_ctx
4096, one thread per CPU) through `moa.providers.local.provider.LocalProvider.stream` and through
`llama_cpp.Llama.create_chat_completion(stream=True)`, alternating, each timed from the call
to its last token after a warm-up generation; medians. Each sample runs in a fresh process:
llama.cpp's OpenMP team belongs to the thread that calls it and spins between tokens, so two
paths measured in one process would slow each other down. Then `moa ask` on the default `local` recipe in a subprocess:
wall time and time to the first byte of the answer on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from benchmarks.common import RowResult, median
from moa.providers.local.provider import LocalProvider, resolve_model_path
from moa.types import ChatRequest, Message, Sampling

PROMPT = "Explain in a few sentences why the sky is blue."
MAX_TOKENS = 128


def _raw(llama: object) -> tuple[int, float]:
    started = time.perf_counter()
    tokens = 0
    for part in llama.create_chat_completion(  # type: ignore[attr-defined]
        messages=[{"role": "user", "content": PROMPT}],
        temperature=0.0,
        seed=0,
        max_tokens=MAX_TOKENS,
        stream=True,
    ):
        if part["choices"][0].get("delta", {}).get("content"):
            tokens += 1
    return tokens, time.perf_counter() - started


async def _adapter(provider: LocalProvider) -> tuple[int, float]:
    request = ChatRequest(
        "smollm2",
        (Message(role="user", content=PROMPT),),
        Sampling(temperature=0.0, seed=0, max_tokens=MAX_TOKENS),
    )
    started = time.perf_counter()
    tokens = 0
    async for chunk in provider.stream(request):
        tokens += bool(chunk.text)
    return tokens, time.perf_counter() - started


def _moa_ask() -> tuple[float, float | None, int]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", "from moa.cli.app import main; main()", "ask", PROMPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        bufsize=0,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    first = process.stdout.read(1)
    first_at = time.perf_counter() - started if first else None
    process.stdout.read()
    code = process.wait()
    return time.perf_counter() - started, first_at, code


def _sample(kind: str) -> tuple[int, float]:
    """One warmed-up generation by `kind` ("adapter" or "raw"), in this process."""
    if kind == "adapter":
        provider = LocalProvider()
        asyncio.run(_adapter(provider))
        return asyncio.run(_adapter(provider))
    from llama_cpp import Llama

    llama = Llama(
        model_path=str(resolve_model_path("smollm2")),
        n_ctx=4096,
        n_threads=max(1, os.cpu_count() or 1),
        verbose=False,
    )
    _raw(llama)
    return _raw(llama)


def _sample_in_subprocess(kind: str) -> tuple[int, float]:
    code = (
        "import json, sys; from benchmarks.rows.local_model import _sample; "
        f"print(json.dumps(_sample({kind!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    tokens, seconds = json.loads(out.stdout.strip().splitlines()[-1])
    return int(tokens), float(seconds)


def run(quick: bool = False) -> RowResult:
    reps = 2 if quick else 5
    asks = 1 if quick else 3
    row = RowResult("6", "local model (SmolLM2-135M, llama.cpp): adapter vs raw; moa ask")
    row.params = {"reps": reps, "max_tokens": MAX_TOKENS, "moa_ask_runs": asks, "prompt": PROMPT}
    rates: dict[str, list[float]] = {"adapter": [], "raw": []}
    tokens: dict[str, list[int]] = {"adapter": [], "raw": []}
    for _ in range(reps):
        for name in ("adapter", "raw"):
            n, seconds = _sample_in_subprocess(name)
            rates[name].append(n / seconds)
            tokens[name].append(n)
    ask = [_moa_ask() for _ in range(asks)]
    row.raw = {"tokens_per_s": rates, "tokens": tokens, "moa_ask": ask}
    row.add("adapter tokens/s", median(rates["adapter"]), "tok/s")
    row.add("raw llama_cpp tokens/s", median(rates["raw"]), "tok/s")
    row.add("adapter / raw", median(rates["adapter"]) / median(rates["raw"]), "", ">= 0.95")
    row.add("moa ask (local recipe) wall", median([w for w, _, _ in ask]), "s")
    row.add("moa ask runs that exited 0", sum(code == 0 for _, _, code in ask))
    firsts = [f for _, f, _ in ask if f is not None]
    row.add("moa ask time to first answer byte", median(firsts) if firsts else None, "s")
    row.notes.append(
        "moa ask = 3 proposals + 1 aggregation on one 2-core CPU, model load included "
        "(a fresh process each time)."
    )
    return row
