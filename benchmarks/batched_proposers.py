"""Embedded model: time until every proposer has streamed its first chunk, with the proposals
generated one after another (as `moa` does today: one llama.cpp context, one call at a time)
vs interleaved in one llama.cpp batch (a sequence per proposer, the shared prompt decoded once
and copied with llama_memory_seq_cp, a sampler chain per sequence). A measurement prototype for
issue 12, not a provider: `python -m benchmarks.batched_proposers [reps]`.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

import llama_cpp as L
from llama_cpp import Llama

from moa.providers.local.provider import resolve_model_path

PROPOSERS = ((0.3, 1), (0.7, 2), (1.0, 3))  # the `local` recipe's (temperature, seed)
CHUNK = 16
MAX_TOKENS = 64
QUESTION = "Explain in a few sentences why the sky is blue."


def _prompt(llama: Llama) -> list[int]:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = str(llama.metadata["tokenizer.chat_template"])
    formatter = Jinja2ChatFormatter(template, "", "")
    text = formatter(messages=[{"role": "user", "content": QUESTION}]).prompt
    return llama.tokenize(text.encode(), add_bos=False, special=True)


def _sampler(temperature: float, seed: int) -> Any:
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(temperature))
    L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
    return chain


def sequential(llama: Llama, prompt: list[int]) -> tuple[float, float]:
    """Each proposal to its end, then the next; when has every one sent CHUNK tokens?"""
    started = time.perf_counter()
    all_first = 0.0
    for index, (temperature, seed) in enumerate(PROPOSERS):
        llama.set_seed(seed)
        vocab = L.llama_model_get_vocab(llama._model.model)
        for count, token in enumerate(llama.generate(prompt, temp=temperature, reset=True), 1):
            if L.llama_vocab_is_eog(vocab, token):
                break
            if index == len(PROPOSERS) - 1 and count == CHUNK:
                all_first = time.perf_counter() - started
            if count >= MAX_TOKENS:
                break
    return all_first, time.perf_counter() - started


def batched(llama: Llama, prompt: list[int], threads: int) -> tuple[float, float]:
    n = len(PROPOSERS)
    params = L.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_seq_max = 2048, 512, n
    params.n_threads = params.n_threads_batch = threads
    ctx = L.llama_init_from_model(llama._model.model, params)
    vocab = L.llama_model_get_vocab(llama._model.model)
    batch = L.llama_batch_init(512, 0, n)
    samplers = [_sampler(t, s) for t, s in PROPOSERS]
    started = time.perf_counter()
    try:
        for i, token in enumerate(prompt):  # the shared prefix, decoded once on sequence 0
            _put(batch, i, token, i, 0, i == len(prompt) - 1)
        batch.n_tokens = len(prompt)
        assert L.llama_decode(ctx, batch) == 0
        memory = L.llama_get_memory(ctx)
        for seq in range(1, n):
            L.llama_memory_seq_cp(memory, 0, seq, -1, -1)
        last = len(prompt) - 1
        rows = [last] * n
        alive = list(range(n))
        all_first = 0.0
        for step in range(MAX_TOKENS):
            sampled = {s: L.llama_sampler_sample(samplers[s], ctx, rows[s]) for s in alive}
            alive = [s for s in alive if not L.llama_vocab_is_eog(vocab, sampled[s])]
            if step + 1 == CHUNK:
                all_first = time.perf_counter() - started
            if not alive or step + 1 == MAX_TOKENS:
                break
            kept = {s: sampled[s] for s in alive}
            for row, (seq, token) in enumerate(kept.items()):
                _put(batch, row, token, len(prompt) + step, seq, True)
                rows[seq] = row
            batch.n_tokens = len(kept)
            assert L.llama_decode(ctx, batch) == 0
        return all_first, time.perf_counter() - started
    finally:
        for sampler in samplers:
            L.llama_sampler_free(sampler)
        L.llama_batch_free(batch)
        L.llama_free(ctx)


def _put(batch: Any, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
    batch.seq_id[i][0], batch.logits[i] = seq, logits


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    threads = max(1, os.cpu_count() or 1)
    path = str(resolve_model_path("smollm2"))
    llama = Llama(model_path=path, n_ctx=2048, n_threads=threads, verbose=False)
    prompt = _prompt(llama)
    samples: dict[str, list[tuple[float, float]]] = {"sequential": [], "batched": []}
    sequential(llama, prompt)  # warm-up
    for _ in range(reps):
        samples["sequential"].append(sequential(llama, prompt))
        samples["batched"].append(batched(llama, prompt, threads))
    for name, runs in samples.items():
        first = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        print(
            f"{name:10} every proposer's first {CHUNK} tokens: {first:6.2f} s   "
            f"all {len(PROPOSERS)} x {MAX_TOKENS} tokens: {total:6.2f} s"
        )


if __name__ == "__main__":
    main()
