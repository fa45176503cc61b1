"""AlpacaEval 2: generate `model_outputs.json`, and judge it pairwise against a baseline.

The outputs file is what the official `alpaca_eval` tool reads: a JSON list of objects with
`instruction`, `output`, `generator` and `dataset`. The built-in judge is a quick stand-in
for it: the same annotator prompt (`m` / `M`), any model, each pair judged in both orders so
position bias cancels; it reads the verdict as text (the official annotator weighs the `m`/`M`
log-probabilities) and reports the plain win rate, not the length-controlled one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import asdict, dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from rich.console import Console

from moa.batch.items import BatchStats, Item, Job, answer_job, records, run_items
from moa.engine.mixture import MoA
from moa.errors import ConfigError
from moa.evaluation.data import load_jsonl, need
from moa.evaluation.judge import Judge, pairwise_messages, parse_pairwise
from moa.evaluation.stats import finite, mean, standard_error
from moa.types import NO_USAGE, Message, Usage

JUDGE_MAX_TOKENS = 8  # the answer is one identifier; a little room for a stray quote or space


def load_instructions(data: Traversable, limit: int | None = None) -> list[dict[str, Any]]:
    rows = load_jsonl(data / "alpaca_eval" / "instructions.jsonl")
    return rows[:limit] if limit is not None else rows


def judge_template(data: Traversable) -> str:
    return need(data / "alpaca_eval" / "pairwise_judge_prompt.txt").read_text(encoding="utf-8")


def items(instructions: list[dict[str, Any]]) -> list[Item]:
    return [
        Item(row["id"], (Message(role="user", content=row["instruction"]),), row)
        for row in instructions
    ]


async def generate(
    mixture: MoA,
    instructions: list[dict[str, Any]],
    runs: Path,
    *,
    concurrency: int,
    console: Console | None,
    label: str,
) -> BatchStats:
    """Answer the instructions into `runs` (resumable JSONL with traces)."""
    job = answer_job(mixture)
    return await run_items(
        items(instructions), job, runs, concurrency=concurrency, console=console, label=label
    )


def model_outputs(
    instructions: list[dict[str, Any]], runs: Path, generator: str
) -> list[dict[str, Any]]:
    """AlpacaEval's `model_outputs.json` rows, in the instructions' order, for those answered."""
    answered = {repr(r["id"]): r["answer"] for r in records(runs)}
    return [
        {
            "instruction": row["instruction"],
            "output": answered[repr(row["id"])],
            "generator": generator,
            "dataset": row.get("dataset", "alpaca_eval"),
        }
        for row in instructions
        if repr(row["id"]) in answered
    ]


def load_outputs(path: Path) -> dict[str, str]:
    """An AlpacaEval outputs file (a JSON list of {instruction, output, ...}) by instruction."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read outputs file {path}: {exc}") from None
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and isinstance(r.get("instruction"), str) and "output" in r
        for r in rows
    ):
        raise ConfigError(f"{path}: expected a JSON list of objects with instruction and output")
    return {r["instruction"]: str(r["output"]) for r in rows}


def pair_items(
    outputs: list[dict[str, Any]], baseline: dict[str, str], instructions: list[dict[str, Any]]
) -> list[Item]:
    """One item per instruction both sides answered. The id carries a digest of the two
    outputs, so a resumed judging never reuses a verdict about answers that have changed."""
    ids = {row["instruction"]: row["id"] for row in instructions}
    pairs = []
    for row in outputs:
        instruction = row["instruction"]
        if instruction not in baseline:
            continue
        ours, theirs = row["output"], baseline[instruction]
        digest = hashlib.sha256(json.dumps([ours, theirs]).encode()).hexdigest()[:16]
        data = {"instruction": instruction, "output": ours, "baseline": theirs}
        pairs.append(Item(f"{ids.get(instruction, instruction)}:{digest}", data=data))
    return pairs


def pairwise_job(judge: Judge, template: str) -> Job:
    """Judge one pair in both orders. Preferences are the model's: 1 win, 0 loss, None when
    the verdict is unparsable; identical outputs tie at 0.5 without asking, as AlpacaEval does."""

    async def job(item: Item) -> tuple[dict[str, Any], Usage]:
        instruction, ours, theirs = (item.data[k] for k in ("instruction", "output", "baseline"))
        if ours == theirs:
            return {"verdicts": [None, None], "preferences": [0.5, 0.5]}, NO_USAGE
        (first, u1), (second, u2) = await asyncio.gather(
            judge.ask(pairwise_messages(template, instruction, ours, theirs)),
            judge.ask(pairwise_messages(template, instruction, theirs, ours)),
        )
        picked = parse_pairwise(first), parse_pairwise(second)
        preferences = [
            None if picked[0] is None else float(picked[0] == 1),  # ours shown first, as `m`
            None if picked[1] is None else float(picked[1] == 2),  # ours shown second, as `M`
        ]
        return {"verdicts": [first, second], "preferences": preferences}, u1 + u2

    return job


@dataclass(frozen=True, slots=True)
class WinRate:
    pairs: int  # pairs with at least one usable verdict
    win_rate: float  # percent, ties count half
    standard_error: float  # percent
    wins: int
    losses: int
    ties: int  # the two orders disagreed (or identical outputs)
    unparsable: int  # verdicts that were neither `m` nor `M`
    unjudged: int  # pairs where neither verdict was usable
    first_position_rate: float  # share of usable verdicts for the output shown first (bias)
    avg_length: float  # characters, as AlpacaEval's avg_length
    baseline_avg_length: float

    def to_dict(self) -> dict[str, Any]:
        return {k: finite(v) if isinstance(v, float) else v for k, v in asdict(self).items()}


def win_rate(judged: list[dict[str, Any]]) -> WinRate:
    """Each pair scores the mean of its usable preferences (1, 0.5 or 0); the win rate is the
    mean over pairs and its standard error the pairs' standard error of the mean."""
    scores: list[float] = []
    unparsable = unjudged = first = usable = 0
    for record in judged:
        for order, (verdict, p) in enumerate(
            zip(record["verdicts"], record["preferences"], strict=True)
        ):
            if p is None:
                unparsable += 1
            elif verdict is not None:  # identical outputs were not shown to the judge
                usable += 1
                first += int(p == (1.0 if order == 0 else 0.0))
        prefs = [p for p in record["preferences"] if p is not None]
        if not prefs:
            unjudged += 1
            continue
        scores.append(mean(prefs))
    outputs = [len(r["output"]) for r in judged]
    baselines = [len(r["baseline"]) for r in judged]
    return WinRate(
        pairs=len(scores),
        win_rate=100 * mean(scores),
        standard_error=100 * standard_error(scores),
        wins=sum(1 for s in scores if s == 1.0),
        losses=sum(1 for s in scores if s == 0.0),
        ties=sum(1 for s in scores if s not in (0.0, 1.0)),
        unparsable=unparsable,
        unjudged=unjudged,
        first_position_rate=first / usable if usable else float("nan"),
        avg_length=mean(outputs),
        baseline_avg_length=mean(baselines),
    )


async def judge_all(
    judge: Judge,
    template: str,
    pairs: list[Item],
    judgments: Path,
    *,
    concurrency: int,
    console: Console | None,
) -> tuple[BatchStats, list[dict[str, Any]]]:
    """Judge every pair (resumable) and return the judged records joined with their pair."""
    stats = await run_items(
        pairs,
        pairwise_job(judge, template),
        judgments,
        concurrency=concurrency,
        console=console,
        label=f"judging with {judge.model}",
    )
    done = {repr(r["id"]): r for r in records(judgments)}
    joined = [{**p.data, **done[repr(p.id)]} for p in pairs if repr(p.id) in done]
    return stats, joined


def outputs_by_instruction(
    instructions: list[dict[str, Any]], runs: Path, generator: str
) -> dict[str, str]:
    """The answers in `runs` keyed by instruction: the shape `pair_items` takes a baseline in."""
    return {r["instruction"]: r["output"] for r in model_outputs(instructions, runs, generator)}


async def judge_win_rate(
    judge: Judge,
    template: str,
    rows: list[dict[str, Any]],
    baseline: dict[str, str],
    instructions: list[dict[str, Any]],
    judgments: Path,
    *,
    concurrency: int,
    console: Console | None,
) -> tuple[BatchStats, WinRate]:
    """Judge `rows` against `baseline` in both orders (resumable) and score the win rate."""
    pairs = pair_items(rows, baseline, instructions)
    if not pairs:
        raise ConfigError("no instruction has both an output and a baseline output")
    stats, judged = await judge_all(
        judge, template, pairs, judgments, concurrency=concurrency, console=console
    )
    return stats, win_rate(judged)
