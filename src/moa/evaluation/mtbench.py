"""MT-Bench: both turns of the 80 questions, single-answer grading (1-10) by an LLM judge.

As FastChat's `llm_judge` does it: turn 1 is graded with `single-v1`, turn 2 with
`single-v1-multi-turn` (the judge sees the whole conversation, grades the second answer);
math, reasoning and coding use the `-math-` prompts with GPT-4's reference answers. The judge
runs at temperature 0 with up to 2048 tokens, and "[[rating]]" (else "[rating]") is its score.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from rich.console import Console

from moa.batch.items import BatchStats, Item, Job, records, run_items
from moa.batch.jsonl import write_json_atomic
from moa.engine.mixture import MoA
from moa.errors import ConfigError
from moa.evaluation.data import load_jsonl
from moa.evaluation.judge import Judge, parse_rating
from moa.evaluation.stats import finite, mean
from moa.types import NO_USAGE, Message, Sampling, Usage

NEED_REFERENCE = frozenset({"math", "reasoning", "coding"})
CATEGORIES: tuple[str, ...] = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
)
JUDGE_MAX_TOKENS = 2048


@dataclass(frozen=True, slots=True)
class Bench:
    questions: list[dict[str, Any]]
    references: dict[int, list[str]]  # question_id -> reference answer per turn
    prompts: dict[str, dict[str, Any]]  # judge prompt name -> its record


def load(data: Traversable, limit: int | None = None) -> Bench:
    folder = data / "mt_bench"
    questions = load_jsonl(folder / "question.jsonl")
    references = {
        int(r["question_id"]): list(r["choices"][0]["turns"])
        for r in load_jsonl(folder / "reference_answer_gpt-4.jsonl")
    }
    prompts = {p["name"]: p for p in load_jsonl(folder / "judge_prompts.jsonl")}
    return Bench(questions[:limit] if limit is not None else questions, references, prompts)


def answer_job(mixture: MoA, sampling: Sampling | None = None) -> Job:
    """Both turns of one question: the second run sees the first turn and its answer."""

    async def job(item: Item) -> tuple[dict[str, Any], Usage]:
        turns: list[str] = item.data["turns"]
        history: list[Message] = []
        answers, traces, usage = [], [], NO_USAGE
        for turn in turns:
            history.append(Message(role="user", content=turn))
            result = await mixture.arun(history, sampling=sampling)
            history.append(Message(role="assistant", content=result.text))
            answers.append(result.text)
            traces.append(result.to_dict())
            usage = usage + result.usage
        return {"category": item.data["category"], "answers": answers, "traces": traces}, usage

    return job


async def generate(
    mixture: MoA,
    bench: Bench,
    runs: Path,
    *,
    concurrency: int,
    console: Console | None,
    label: str,
) -> BatchStats:
    items = [Item(q["question_id"], data=q) for q in bench.questions]
    return await run_items(
        items, answer_job(mixture), runs, concurrency=concurrency, console=console, label=label
    )


def judge_messages(
    bench: Bench, question: dict[str, Any], answers: list[str], turn: int
) -> list[Message]:
    """The judge's conversation for one turn (1 or 2) of one answered question."""
    with_reference = question["category"] in NEED_REFERENCE
    name = "single-math-v1" if with_reference else "single-v1"
    if turn == 2:
        name += "-multi-turn"
    prompt = bench.prompts.get(name)
    if prompt is None:
        raise ConfigError(f"MT-Bench judge prompt {name!r} is missing from judge_prompts.jsonl")
    q = question["turns"]
    if turn == 1:
        values = {"question": q[0], "answer": answers[0]}
    else:
        values = {"question_1": q[0], "question_2": q[1], "answer_1": answers[0]}
        values["answer_2"] = answers[1]
    if with_reference:
        reference = bench.references.get(int(question["question_id"]))
        if reference is None:
            raise ConfigError(
                f"no reference answer for MT-Bench question {question['question_id']}"
            )
        values["ref_answer_1"] = reference[0]
        if turn == 2:
            values["ref_answer_2"] = reference[1]
    return [
        Message(role="system", content=prompt["system_prompt"]),
        Message(role="user", content=prompt["prompt_template"].format(**values)),
    ]


def judge_items(bench: Bench, runs: Path) -> list[Item]:
    """One item per answered turn; the id carries a digest of the answers, so a changed
    answer is judged again rather than scored by a stale verdict."""
    by_id = {q["question_id"]: q for q in bench.questions}
    out = []
    for record in records(runs):
        question = by_id.get(record["id"])
        if question is None:
            continue
        answers = record["answers"]
        digest = hashlib.sha256(json.dumps(answers).encode()).hexdigest()[:16]
        for turn in (1, 2):
            data = {"question_id": record["id"], "category": question["category"], "turn": turn}
            data["messages"] = judge_messages(bench, question, answers, turn)
            out.append(Item(f"{record['id']}:{turn}:{digest}", data=data))
    return out


def grading_job(judge: Judge) -> Job:
    async def job(item: Item) -> tuple[dict[str, Any], Usage]:
        judgment, usage = await judge.ask(item.data["messages"])
        fields = {k: item.data[k] for k in ("question_id", "category", "turn")}
        return {**fields, "judgment": judgment, "rating": parse_rating(judgment)}, usage

    return job


@dataclass(slots=True)
class Scores:
    by_category: dict[str, float] = field(default_factory=dict)
    by_turn: dict[int, float] = field(default_factory=dict)
    overall: float = float("nan")
    graded: int = 0
    unparsable: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": finite(self.overall),
            "by_category": self.by_category,
            "by_turn": {str(k): v for k, v in self.by_turn.items()},
            "graded": self.graded,
            "unparsable": self.unparsable,
        }


def score(judged: list[dict[str, Any]]) -> Scores:
    """Means of the ratings per category (both turns), per turn and overall; verdicts with no
    rating are counted and left out, as FastChat drops its -1 scores."""
    rated = [j for j in judged if j["rating"] is not None]
    result = Scores(graded=len(rated), unparsable=len(judged) - len(rated))
    result.overall = mean([j["rating"] for j in rated])
    for category in CATEGORIES:
        values = [j["rating"] for j in rated if j["category"] == category]
        if values:
            result.by_category[category] = mean(values)
    for turn in (1, 2):
        values = [j["rating"] for j in rated if j["turn"] == turn]
        if values:
            result.by_turn[turn] = mean(values)
    return result


async def grade(
    judge: Judge,
    bench: Bench,
    runs: Path,
    judgments: Path,
    *,
    concurrency: int,
    console: Console | None,
) -> tuple[BatchStats, Scores]:
    items = judge_items(bench, runs)
    stats = await run_items(
        items,
        grading_job(judge),
        judgments,
        concurrency=concurrency,
        console=console,
        label=f"grading with {judge.model}",
    )
    done = {repr(r["id"]): r for r in records(judgments)}
    return stats, score([done[repr(i.id)] for i in items if repr(i.id) in done])


def chart(scores: dict[str, Scores], path: Path, *, judge: str) -> None:
    """Per-category scores as grouped bars, one colour per recipe."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the PNG only
    import matplotlib.pyplot as plt

    names = list(scores)
    categories = [c for c in CATEGORIES if any(c in s.by_category for s in scores.values())]
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(categories) + 2), 4.5))
    for i, name in enumerate(names):
        heights = [scores[name].by_category.get(c, 0.0) for c in categories]
        positions = [x + (i - (len(names) - 1) / 2) * width for x in range(len(categories))]
        label = f"{name} ({scores[name].overall:.2f})"
        ax.bar(positions, heights, width=width, label=label)
    ax.set_xticks(range(len(categories)), categories, rotation=20)
    ax.set_ylim(0, 10)
    ax.set_ylabel("score (1-10)")
    ax.set_title(f"MT-Bench, judged by {judge}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")  # off the bars
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_scores(path: Path, scores: dict[str, Scores], *, judge: str) -> None:
    """`scores.json`: the judge and each recipe's scores, by category and turn."""
    write_json_atomic(
        path, {"judge": judge, "recipes": {n: s.to_dict() for n, s in scores.items()}}
    )
