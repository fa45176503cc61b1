"""Row 10 — staircase streaming (issue 12): time to the first and the last answer token, and the
aggregator's input tokens, staircase vs wait-for-all, side by side in one run.

Simulated upstream: 4 proposers of PROPOSAL_TOKENS tokens at TOKENS_PER_S, an aggregator with
a PREFILL_S time to first token (on every call: each staircase step re-sends the prompt) that
writes ANSWER_TOKENS at the same rate and continues a final assistant message. Wait-for-all
and staircase at several chunk sizes alternate, `reps` times each. Input tokens are counted on
the requests the upstream received (moa.tokens's estimate, the same for every mode).

Embedded model: the `local-synthesize` recipe (3 proposers of up to 160 tokens, an aggregator
writing up to 256, all SmolLM2 on one llama.cpp thread; 64 tokens per call with --quick):
wait-for-all with the proposals one after another and in one llama.cpp batch
(MOA_LOCAL_BATCH=0/1), and staircase on the batch at the embedded model's default spacing
(moa.engine.staircase_rules.KV_SPACING: first step at 32 chunks, then each time the proposals have grown
fourfold) and at fixed 16-chunk steps (the paper's); times from the start of the run.
"""

from __future__ import annotations

import asyncio
import os
import time

from benchmarks.common import RowResult, median
from moa import Aggregator, MoA, ProposalLayer, ProviderConfig, Registry, RetryPolicy
from moa.events import Token
from moa.providers.base import Capabilities
from moa.testing import FakeUpstream, Reply, continuing
from moa.tokens import messages_tokens
from moa.types import Sampling

PROPOSERS = 4
PROPOSAL_TOKENS = 400
TOKENS_PER_S = 40.0
PREFILL_S = 0.3
ANSWER_TOKENS = 300
CHUNKS = (16, 32, 64, 128)
QUICK_LOCAL_TOKENS = 64  # per call on the embedded model with --quick
LOCAL_QUESTIONS = ("Explain the staircase.", "Why is the sky blue?", "What is photosynthesis?")


def _text(name: str, tokens: int) -> str:
    return " ".join(f"{name}{i}" for i in range(tokens))


async def _timed(
    mixture: MoA, sampling: Sampling | None = None, question: str = "Explain the staircase."
) -> tuple[float, float, str]:
    started = time.perf_counter()
    first = None
    parts: list[str] = []
    async for event in mixture.stream(question, sampling=sampling):
        if isinstance(event, Token):
            first = first or time.perf_counter() - started
            parts.append(event.text)
    return first or 0.0, time.perf_counter() - started, "".join(parts)


def _simulated(up: FakeUpstream, scale: float) -> dict[str, MoA]:
    pace = 1.0 / TOKENS_PER_S
    names = [f"p{i}" for i in range(PROPOSERS)]
    for name in names:
        up.script(name, Reply(_text(name, int(PROPOSAL_TOKENS * scale)), token_delay_s=pace))
    answer = _text("a", int(ANSWER_TOKENS * scale))
    up.script("agg", Reply(continuing(answer), delay_s=PREFILL_S, token_delay_s=pace))
    continues = Capabilities(continuation="assistant")
    registry = Registry({"fake": ProviderConfig("fake", up.base_url, capabilities=continues)})
    modes: dict[str, MoA] = {}
    for label, chunk in [("wait-for-all", None), *((f"staircase {c}", c) for c in CHUNKS)]:
        modes[label] = MoA(
            ProposalLayer(*(f"fake:{n}" for n in names)),
            Aggregator("fake:agg", staircase=chunk is not None, chunk_tokens=chunk),
            registry=registry,
            retry=RetryPolicy(max_attempts=1),
        )
    return modes


async def _measure_simulated(up: FakeUpstream, reps: int, scale: float) -> dict[str, dict]:
    modes = _simulated(up, scale)
    out: dict[str, dict] = {k: {"ttft": [], "last": [], "input_tokens": []} for k in modes}
    for _ in range(reps):
        for label, mixture in modes.items():
            since = len(up.requests)
            first, last, text = await _timed(mixture)
            assert "<the continuation" not in text, "a continuation did not match"
            sent = [b for b in up.requests[since:] if b.get("model") == "agg"]
            out[label]["ttft"].append(first)
            out[label]["last"].append(last)
            out[label]["input_tokens"].append(sum(messages_tokens(b["messages"]) for b in sent))
    for mixture in modes.values():
        await mixture.aclose()
    return out


async def _measure_local(reps: int, tokens: int | None) -> dict[str, dict]:
    """On each of the first `reps` questions the modes alternate: proposals one after another
    or in one llama.cpp batch (MOA_LOCAL_BATCH), the aggregator wait-for-all or staircase — at
    the embedded model's default spacing and at fixed 16-chunk steps."""
    from moa.providers.local.provider import forget_cached_prompts
    from moa.recipes import build, load

    # (label, MOA_LOCAL_BATCH, staircase (chunk_tokens, chunk_growth); None: wait-for-all)
    modes: list[tuple[str, str, tuple[int | None, float | None] | None]] = [
        ("sequential wait-for-all", "0", None),
        ("batched wait-for-all", "1", None),
        ("batched staircase", "1", (None, None)),
        ("batched staircase fixed 16", "1", (16, 1.0)),
    ]
    out: dict[str, dict] = {
        label: {"ttft": [], "last": [], "answer_chars": []} for label, *_ in modes
    }
    saved = os.environ.get("MOA_LOCAL_BATCH")
    try:
        for question in LOCAL_QUESTIONS[:reps]:
            for label, batch, staircase in modes:
                # Every run reads its prompts cold: the same question's earlier run must not
                # have left its proposals' or aggregator's prompt in a cache.
                forget_cached_prompts()
                os.environ["MOA_LOCAL_BATCH"] = batch  # read when the registry is built
                mixture = build(load("local-synthesize"))
                if staircase is not None:
                    chunk, growth = staircase
                    mixture.aggregator = Aggregator(
                        mixture.aggregator.agent,
                        staircase=True,
                        chunk_tokens=chunk,
                        chunk_growth=growth,
                    )
                first, last, text = await _timed(mixture, Sampling(max_tokens=tokens), question)
                out[label]["ttft"].append(first)
                out[label]["last"].append(last)
                out[label]["answer_chars"].append(len(text))
                await mixture.aclose()
    finally:
        if saved is None:
            os.environ.pop("MOA_LOCAL_BATCH", None)
        else:
            os.environ["MOA_LOCAL_BATCH"] = saved
    return out


def run(quick: bool = False) -> RowResult:
    reps, scale = (1, 0.25) if quick else (3, 1.0)
    row = RowResult("10", "staircase streaming: first/last answer token, input tokens")
    row.params = {
        "reps": reps,
        "proposers": f"{PROPOSERS} x {int(PROPOSAL_TOKENS * scale)} tokens at {TOKENS_PER_S:g}/s",
        "aggregator": f"{PREFILL_S}s prefill per call, {int(ANSWER_TOKENS * scale)} tokens "
        f"at {TOKENS_PER_S:g}/s, continues a final assistant message",
    }
    with FakeUpstream() as up:
        sim = asyncio.run(_measure_simulated(up, reps, scale))
    row.raw["simulated"] = sim
    base = sim["wait-for-all"]
    base_ttft, base_last = median(base["ttft"]), median(base["last"])
    row.add("simulated wait-for-all: first token", base_ttft, "s")
    row.add("simulated wait-for-all: last token", base_last, "s")
    row.add("simulated wait-for-all: aggregator input tokens", median(base["input_tokens"]))
    for chunk in CHUNKS:
        m = sim[f"staircase {chunk}"]
        label = f"simulated staircase chunk {chunk}"
        row.add(f"{label}: first token / wait-for-all", median(m["ttft"]) / base_ttft, "", "<= 0.3")
        row.add(f"{label}: last token / wait-for-all", median(m["last"]) / base_last, "", "<= 1.1")
        row.add(
            f"{label}: input tokens / wait-for-all",
            median(m["input_tokens"]) / median(base["input_tokens"]),
        )
    try:
        settings = (1, QUICK_LOCAL_TOKENS) if quick else (len(LOCAL_QUESTIONS), None)
        local = asyncio.run(_measure_local(*settings))
    except ImportError as error:
        row.notes.append(f"embedded model skipped: {error}")
        return row
    row.raw["local"] = local
    for label, m in local.items():
        row.add(f"local-synthesize {label}: first token", median(m["ttft"]), "s")
        row.add(f"local-synthesize {label}: last token", median(m["last"]), "s")
        row.add(f"local-synthesize {label}: answer length", median(m["answer_chars"]), "chars")
    base = local["batched wait-for-all"]
    goals = {"ttft": "<= 0.3", "last": "<= 1.1"}
    for label in ("batched staircase", "batched staircase fixed 16"):
        m = local[label]
        for key, name in (("ttft", "first token"), ("last", "last token")):
            ratio = median(m[key]) / median(base[key])
            row.add(
                f"local-synthesize {label} / batched wait-for-all: {name}", ratio, "", goals[key]
            )
    m = local["sequential wait-for-all"]
    for key, name in (("ttft", "first token"), ("last", "last token")):
        ratio = median(m[key]) / median(base[key])
        row.add(f"local-synthesize sequential wait-for-all / batched: {name}", ratio)
    return row
