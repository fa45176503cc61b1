"""Row 15 — `invocation = "auto"` (docs/guide/invocation.md): calls and tokens per request on
scripted easy and hard prompts, beside the same recipe with `invocation = "always"`.

A 4 + 1 recipe on `moa.testing.FakeUpstream` in this process, through the Python API
(`recipes.build(...).arun`). The aggregator's decision is scripted, not a model's judgment:
on an easy prompt it answers directly (EASY_WORDS words); on a hard one it calls
`consult_the_panel`, reads the four proposals (PROPOSAL_WORDS words each) and answers
(HARD_WORDS words). With `always` the same aggregator writes the same answers after the
panel every time. So the row measures what `auto` costs once the decision is made, and
whether the decision is kept: the share of the trace's `panel_convened` that matches.

Tokens are the upstream's usage as moa records it (the fake counts words of the messages);
the tool schema a real provider also bills is not in them, so bytes sent per request (the
JSON bodies the upstream received, the schema included) are given too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from benchmarks.common import RowResult
from moa import recipes
from moa.engine.invocation import PANEL
from moa.testing import FakeUpstream, Reply

PROPOSERS = ["p0", "p1", "p2", "p3"]
PROPOSAL_WORDS, EASY_WORDS, HARD_WORDS = 80, 12, 120
EASY = [
    "thanks!",
    "What is 2 + 2?",
    "What is the capital of France?",
    "Say hello in Spanish.",
    "How many days are in a week?",
    "Is water wet?",
    "What colour is the sky on a clear day?",
    "Spell 'cat' backwards.",
    "Good morning!",
    "What is 10 divided by 2?",
]
HARD = [
    "Compare three designs for a rate limiter shared by many processes, with their failure modes.",
    "Prove that there are infinitely many primes, then explain the proof to a ten-year-old.",
    "Plan a migration of a 2 TB Postgres database to a new major version with under a minute of downtime.",
    "What are the strongest arguments for and against a carbon tax, and who bears its cost?",
    "Explain why the Monty Hall answer is 2/3 and where the usual intuition goes wrong.",
    "Write a careful review of this API design: one endpoint that takes free-form SQL.",
    "How would you test a distributed lock for correctness under network partitions?",
    "Summarise the causes of the 2008 financial crisis and which of them were fixed since.",
    "Design an experiment to tell whether a new onboarding flow improves retention.",
    "When does mixing several LLMs' answers beat the best single one, and when does it not?",
]

RECIPE = """\
name = "auto-bench"
invocation = "{invocation}"
[retry]
max_attempts = 1
[[layers]]
models = [{models}]
[aggregator]
model = "fake:agg"
[providers.fake]
base_url = "{base_url}"
tools = true
"""


def _words(n: int, word: str) -> str:
    return " ".join([word] * n)


def _script(up: FakeUpstream, invocation: str, hard: bool) -> None:
    answer = Reply(_words(HARD_WORDS if hard else EASY_WORDS, "answer"))
    if invocation == "auto" and hard:
        up.script("agg", Reply("", tool_calls=[{"name": PANEL, "arguments": "{}"}]), answer)
    else:
        up.script("agg", answer)


async def _measure(up: FakeUpstream, invocation: str) -> dict[str, dict[str, Any]]:
    models = ", ".join(f'"fake:{m}"' for m in PROPOSERS)
    text = RECIPE.format(invocation=invocation, models=models, base_url=up.base_url)
    mixture = recipes.build(recipes.parse(text))
    found: dict[str, dict[str, Any]] = {}
    try:
        for kind, prompts in (("easy", EASY), ("hard", HARD)):
            calls = tokens_in = tokens_out = sent = kept = 0
            for prompt in prompts:  # one at a time: the aggregator's script is per request
                _script(up, invocation, kind == "hard")
                before = len(up.requests)
                result = await mixture.arun(prompt)
                calls += len(result.calls)
                tokens_in += result.usage.input_tokens
                tokens_out += result.usage.output_tokens
                sent += sum(len(json.dumps(body)) for body in up.requests[before:])
                kept += result.panel_convened == (kind == "hard")
            n = len(prompts)
            found[kind] = {
                "calls": calls / n,
                "input_tokens": tokens_in / n,
                "output_tokens": tokens_out / n,
                "bytes_sent": sent / n,
                "decision_kept": kept / n,
            }
    finally:
        await mixture.aclose()
    return found


def run(quick: bool = False) -> RowResult:
    row = RowResult("15", 'invocation = "auto" vs "always": calls and tokens per request')
    row.params.update(
        proposers=len(PROPOSERS),
        easy_prompts=len(EASY),
        hard_prompts=len(HARD),
        words=dict(proposal=PROPOSAL_WORDS, easy_answer=EASY_WORDS, hard_answer=HARD_WORDS),
    )
    with FakeUpstream() as up:
        for model in PROPOSERS:
            up.script(model, Reply(_words(PROPOSAL_WORDS, "proposal")))
        measured = {mode: asyncio.run(_measure(up, mode)) for mode in ("always", "auto")}
    row.raw.update(measured)
    auto, always = measured["auto"], measured["always"]
    for kind in ("easy", "hard"):
        a, b = auto[kind], always[kind]
        row.add(f"{kind}: calls per request, auto", a["calls"])
        row.add(f"{kind}: calls per request, always", b["calls"])
        row.add(f"{kind}: tokens per request, auto", a["input_tokens"] + a["output_tokens"])
        row.add(f"{kind}: tokens per request, always", b["input_tokens"] + b["output_tokens"])
        total_a = a["input_tokens"] + a["output_tokens"]
        total_b = b["input_tokens"] + b["output_tokens"]
        row.add(f"{kind}: tokens auto / always", total_a / total_b)
        row.add(f"{kind}: bytes sent auto / always", a["bytes_sent"] / b["bytes_sent"])
        row.add(
            f"{kind}: trace's panel_convened as scripted (auto)", a["decision_kept"], goal=">= 1"
        )
    mix = {
        mode: sum(m[k]["input_tokens"] + m[k]["output_tokens"] for k in ("easy", "hard"))
        for mode, m in measured.items()
    }
    row.add("half easy, half hard: tokens auto / always", mix["auto"] / mix["always"])
    calls = {mode: sum(m[k]["calls"] for k in ("easy", "hard")) for mode, m in measured.items()}
    row.add("half easy, half hard: calls auto / always", calls["auto"] / calls["always"])
    return row
