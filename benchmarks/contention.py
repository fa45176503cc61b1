"""The embedded model on a busy machine (issue 23, part 4): its speed alone, beside a plain busy
loop, and beside another moa process generating on the embedded model, with the thread count
fixed at every core (what moa did before: `MOA_LOCAL_THREADS` = cores) and chosen from the load
(moa's default now).

    python -m benchmarks.contention [--model smollm2] [--rounds 3] [--tokens 160]

Each measurement is a fresh process that loads the model, warms it with one short call, then
times one temperature-0 generation of `--tokens` tokens (the prompt read included); the
neighbour starts before it and is killed after it. Medians over rounds, the conditions
alternating within each round, so that all figures share the machine's state. The last column
is the share of the same setting's quiet speed, and of the best quiet speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from statistics import median

PROMPT = "Explain in detail how a bicycle works, part by part."

WORKER = """
import asyncio, json, sys, time
from moa.providers.local.provider import LocalProvider
from moa.types import ChatRequest, Message, Sampling

model, tokens, forever, prompt = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
provider = LocalProvider()

async def once(n):
    sampling = Sampling(temperature=0.0, max_tokens=n)
    request = ChatRequest(model, (Message(role="user", content=prompt),), sampling)
    started, out, runtime = time.perf_counter(), 0, None
    async for chunk in provider.stream(request):
        if chunk.usage is not None:
            out = chunk.usage.output_tokens
        runtime = chunk.runtime or runtime
    return out, time.perf_counter() - started, runtime

async def main():
    await once(4)
    if forever:
        print("ready", flush=True)
        while True:
            await once(tokens)
    out, seconds, runtime = await once(tokens)
    print(json.dumps({"tokens": out, "seconds": seconds, "runtime": runtime}))

asyncio.run(main())
"""

BUSY_LOOP = "while True: pass"


def _env(threads: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MOA_LOCAL_THREADS", None)
    if threads is not None:
        env["MOA_LOCAL_THREADS"] = threads
    return env


def _start_neighbour(
    kind: str, model: str, tokens: int, threads: str | None
) -> subprocess.Popen[str] | None:
    if kind == "alone":
        return None
    if kind == "busy loop":
        return subprocess.Popen([sys.executable, "-c", BUSY_LOOP], text=True)
    # Another moa on the embedded model, set up as the measured one is.
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, model, str(tokens), "1", PROMPT],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(threads),
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready": loaded and generating
    return proc


def measure(kind: str, threads: str | None, model: str, tokens: int) -> dict[str, object]:
    neighbour = _start_neighbour(kind, model, tokens, threads)
    try:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, model, str(tokens), "0", PROMPT],
            capture_output=True,
            text=True,
            env=_env(threads),
            check=True,
        )
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--out", help="write the raw samples here as JSON")
    args = parser.parse_args()
    cores = str(len(os.sched_getaffinity(0)))
    settings = {f"fixed at {cores} (before)": cores, "from the load (now)": None}
    kinds = ["alone", "busy loop", "another moa"]
    samples: dict[tuple[str, str], list[float]] = {}
    runtimes: dict[tuple[str, str], str] = {}
    for _ in range(args.rounds):
        for kind in kinds:
            for name, threads in settings.items():
                r = measure(kind, threads, args.model, args.tokens)
                tps = float(r["tokens"]) / float(r["seconds"])  # type: ignore[arg-type]
                samples.setdefault((name, kind), []).append(tps)
                runtimes[(name, kind)] = str(r["runtime"])
    medians = {key: median(v) for key, v in samples.items()}
    best_quiet = max(medians[(name, "alone")] for name in settings)
    print(
        f"local:{args.model}, {args.tokens} tokens at T=0, {cores} cores, medians of {args.rounds}"
    )
    print(
        f"{'threads':<22}{'beside':<13}{'tokens/s':>9}{'of own quiet':>14}{'of best':>9}  runtime"
    )
    for name in settings:
        quiet = medians[(name, "alone")]
        for kind in kinds:
            m = medians[(name, kind)]
            print(
                f"{name:<22}{kind:<13}{m:>9.1f}{m / quiet:>14.2f}{m / best_quiet:>9.2f}"
                f"  {runtimes[(name, kind)]}"
            )
    if args.out:
        raw = {f"{n} | {k}": v for (n, k), v in samples.items()}
        with open(args.out, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
