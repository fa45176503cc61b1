"""Score every candidate `local` configuration from the calls `sample.py` drew.

`python -m benchmarks.quality.analyze [--samples FILE] [--markdown]`

A configuration = which calls it makes + how it picks the answer among them. Its time per
question is the sum of its calls' wall times (moa runs local calls one after another), and it
is compared with the baseline (plain prompt, temperature 0) drawn for the same question in the
same minute. Accuracy is graded as `moa eval quick` grades (moa.evaluation.quick.is_correct),
and the paired difference to the baseline is moa.evaluation.stats.paired_difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa.evaluation.quick import is_correct, normalize
from moa.evaluation.stats import paired_difference, wilson

HERE = Path(__file__).parent
DEV = HERE / "dev.jsonl"

STOP = {
    *("a", "an", "the", "is", "are", "was", "were", "be", "been", "of", "in", "on", "at"),
    *("to", "for", "by", "with", "and", "or", "it", "its", "this", "that", "which", "what"),
    *("who", "whom", "whose", "when", "where", "how", "many", "much", "do", "does", "did"),
    *("called", "name", "answer", "i", "think", "my", "there", "has", "have", "had", "as"),
}
NUMBERS = {
    w: str(i)
    for i, w in enumerate(
        (
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        )
    )
}


def first_sentence(text: str) -> str:
    text = text.strip().split("\n")[0]
    for mark in (". ", "! ", "? "):
        if mark in text:
            text = text.split(mark)[0]
    return text


def words(text: str) -> list[str]:
    return [NUMBERS.get(w, w) for w in normalize(text).replace("_", " ").split()]


def key(text: str, question: str) -> frozenset[str]:
    """The answer's gist: words of its first sentence that are neither in the question nor
    function words ("The capital of Germany is Berlin." and "Berlin." both give {berlin})."""
    asked = set(words(question))
    gist = frozenset(w for w in words(first_sentence(text)) if w not in asked and w not in STOP)
    return gist or frozenset(words(first_sentence(text)))


def norm_key(text: str, question: str) -> frozenset[str]:
    """Plain normalized first sentence (case, punctuation, articles, number words): what a
    question-blind `vote` can do."""
    return frozenset(
        [" ".join(w for w in words(first_sentence(text)) if w not in {"a", "an", "the"})]
    )


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def vote(texts: list[str], question: str, keyer: Callable[..., frozenset[str]] = key) -> str:
    """Majority of gists; a tie goes to the earliest (so list the greedy answer first)."""
    keys = [keyer(t, question) for t in texts]
    counts = [keys.count(k) for k in keys]
    best = max(counts)
    return texts[counts.index(best)]


def medoid(texts: list[str], question: str) -> str:
    """Universal self-consistency by lexical similarity: the answer closest to all others."""
    keys = [key(t, question) for t in texts]
    scores = [sum(jaccard(k, other) for other in keys) for k in keys]
    return texts[scores.index(max(scores))]


@dataclass
class Outcome:
    text: str
    seconds: float
    cpu: float
    calls: int
    tokens: int


def used(row: dict[str, Any], picks: list[tuple[str, int]], text: str) -> Outcome:
    calls = [row["calls"][arm][i] for arm, i in picks]
    # Samples were drawn right after their prompt's T=0 call, so llama.cpp had that prompt in
    # its KV cache and they never paid to evaluate it. A configuration that makes the samples
    # without the T=0 call would pay it once: charge the whole T=0 call (a slight overcharge).
    for arm in {a for a, _ in picks if a.endswith("T")}:
        greedy = arm[:-1] + "0"
        if greedy not in {a for a, _ in picks} and greedy in row["calls"]:
            calls.append({**row["calls"][greedy][0], "in": 0, "out": 0})
    return Outcome(
        text,
        sum(c["s"] for c in calls),
        sum(c.get("cpu", c["s"]) for c in calls),
        len(picks),
        sum(c["in"] + c["out"] for c in calls),
    )


Config = Callable[[dict[str, Any]], Outcome | None]


def single(arm: str) -> Config:
    def run(row: dict[str, Any]) -> Outcome | None:
        if arm not in row["calls"]:
            return None
        return used(row, [(arm, 0)], row["calls"][arm][0]["text"])

    return run


def pooled(arms: list[tuple[str, int]], pick: Callable[[list[str], str], str] = vote) -> Config:
    """All calls of the listed arms (first n of each), then one pick among them."""

    def run(row: dict[str, Any]) -> Outcome | None:
        if any(a not in row["calls"] or len(row["calls"][a]) < n for a, n in arms):
            return None
        picks = [(a, i) for a, n in arms for i in range(n)]
        texts = [row["calls"][a][i]["text"] for a, i in picks]
        return used(row, picks, pick(texts, row["question"]))

    return run


def early_stop(
    first: list[tuple[str, int]],
    more: tuple[str, int],
    pick: Callable[[list[str], str], str] = vote,
) -> Config:
    """Make the `first` calls; if their gists all agree, answer with the first; else draw the
    `more` calls too and pick among all of them (vote: the greedy answer first wins ties)."""

    def run(row: dict[str, Any]) -> Outcome | None:
        arms = [*first, more]
        if any(a not in row["calls"] or len(row["calls"][a]) < n for a, n in arms):
            return None
        q = row["question"]
        picks = [(a, i) for a, n in first for i in range(n)]
        texts = [row["calls"][a][i]["text"] for a, i in picks]
        keys = {key(t, q) for t in texts}
        if len(keys) == 1:
            return used(row, picks, texts[0])
        extra = [(more[0], i) for i in range(more[1]) if (more[0], i) not in picks]
        picks += extra
        texts += [row["calls"][a][i]["text"] for a, i in extra]
        return used(row, picks, pick(texts, q))

    return run


def configs() -> dict[str, Config]:
    c: dict[str, Config] = {
        "baseline: plain prompt, T=0 (512 tok)": single("plain0"),
        "short-answer system prompt, T=0": single("short0"),
        "few-shot chat (3 examples), T=0": single("fewshot0"),
        "gemma3-270m few-shot completion, T=0": single("gemma0"),
    }
    for k in (3, 5):
        c[f"few-shot k={k} T=0.7, vote"] = pooled([("fewshotT", k)])
        c[f"few-shot k={k} T=0.7, medoid"] = pooled([("fewshotT", k)], medoid)
    c["few-shot k=5 T=0.7, normalized-text vote"] = pooled(
        [("fewshotT", 5)], lambda t, q: vote(t, q, norm_key)
    )
    for k in (2, 4):
        c[f"few-shot T=0 + few-shot k={k} T=0.7, vote"] = pooled([("fewshot0", 1), ("fewshotT", k)])
        c[f"early stop: few-shot T=0 + 1 sample agree, else +{k - 1} more, vote"] = early_stop(
            [("fewshot0", 1), ("fewshotT", 1)], ("fewshotT", k)
        )
    c["prompt mix T=0: few-shot + short + plain, vote"] = pooled(
        [("fewshot0", 1), ("short0", 1), ("plain0", 1)]
    )
    c["prompt mix T=0: few-shot + short, vote"] = pooled([("fewshot0", 1), ("short0", 1)])
    c["gemma k=3 T=0.7, vote"] = pooled([("gemmaT", 3)])
    c["gemma k=4 T=0.7, medoid"] = pooled([("gemmaT", 4)], medoid)
    c["gemma T=0 + gemma k=4 T=0.7, medoid"] = pooled([("gemma0", 1), ("gemmaT", 4)], medoid)
    c["gemma T=0 + gemma k=4 T=0.7, vote"] = pooled([("gemma0", 1), ("gemmaT", 4)])
    c["two families T=0: few-shot smol + gemma, vote (smol wins ties)"] = pooled(
        [("fewshot0", 1), ("gemma0", 1)]
    )
    c["two families T=0: gemma + few-shot smol, vote (gemma wins ties)"] = pooled(
        [("gemma0", 1), ("fewshot0", 1)]
    )
    c["two families T=0: gemma + few-shot smol + short smol, vote"] = pooled(
        [("gemma0", 1), ("fewshot0", 1), ("short0", 1)]
    )
    c["two families: gemma T=0 + smol few-shot T=0 + 2 + 2 samples, vote"] = pooled(
        [("gemma0", 1), ("fewshot0", 1), ("gemmaT", 2), ("fewshotT", 2)]
    )
    c["two families: gemma T=0 + smol few-shot T=0 + 2 + 2 samples, medoid"] = pooled(
        [("gemma0", 1), ("fewshot0", 1), ("gemmaT", 2), ("fewshotT", 2)], medoid
    )
    c["two families: smol few-shot k=5 + gemma k=4, medoid"] = pooled(
        [("fewshotT", 5), ("gemmaT", 4)], medoid
    )
    c["two families: smol few-shot T=0 + k=4 + gemma T=0 + k=4, medoid"] = pooled(
        [("fewshot0", 1), ("fewshotT", 4), ("gemma0", 1), ("gemmaT", 4)], medoid
    )
    for k in (2, 4):
        c[f"early stop: few-shot T=0 + 1 sample agree, else +{k - 1} more, medoid"] = early_stop(
            [("fewshot0", 1), ("fewshotT", 1)], ("fewshotT", k), medoid
        )
    for k in (1, 2, 3):
        c[f"early stop: gemma T=0 + few-shot smol T=0 agree, else +{k} gemma samples"] = early_stop(
            [("gemma0", 1), ("fewshot0", 1)], ("gemmaT", k)
        )
        c[f"early stop: gemma T=0 + few-shot smol T=0 agree, else +{k} smol samples"] = early_stop(
            [("gemma0", 1), ("fewshot0", 1)], ("fewshotT", k)
        )
    return c


def evaluate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = [single("plain0")(r) for r in rows]
    table = []
    for name, config in configs().items():
        outs = [config(r) for r in rows]
        pairs = [(o, b, r) for o, b, r in zip(outs, base, rows, strict=True) if o and b]
        if not pairs:
            continue
        mine = [is_correct(o.text, r["answers"]) for o, _, r in pairs]
        theirs = [is_correct(b.text, r["answers"]) for _, b, r in pairs]
        diff = paired_difference(mine, theirs)
        k, n = sum(mine), len(mine)
        ratio = sum(o.seconds for o, _, _ in pairs) / sum(b.seconds for _, b, _ in pairs)
        per_q = [o.seconds / b.seconds for o, b, _ in pairs if b.seconds > 0]
        cpu = sum(o.cpu for o, _, _ in pairs) / sum(b.cpu for _, b, _ in pairs)
        cpu_q = [o.cpu / b.cpu for o, b, _ in pairs if b.cpu > 0]
        table.append(
            {
                "config": name,
                "correct": k,
                "n": n,
                "accuracy": k / n,
                "ci95": wilson(k, n),
                "diff": diff.difference,
                "diff_ci95": (diff.low, diff.high),
                "gained": diff.gained,
                "lost": diff.lost,
                "p": diff.p_value,
                "time_ratio_total": ratio,
                "time_ratio_median": statistics.median(per_q),
                "cpu_ratio_total": cpu,
                "cpu_ratio_median": statistics.median(cpu_q),
                "seconds_per_q": statistics.mean(o.seconds for o, _, _ in pairs),
                "base_seconds_per_q": statistics.mean(b.seconds for _, b, _ in pairs),
                "calls_per_q": statistics.mean(o.calls for o, _, _ in pairs),
                "tokens_per_q": statistics.mean(o.tokens for o, _, _ in pairs),
            }
        )
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| configuration | accuracy | vs baseline (95% CI) | +/- | McNemar p | calls/q | "
        "s/q (baseline) | wall x (total / median) | CPU x (total / median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in table:
        lo, hi = t["diff_ci95"]
        lines.append(
            f"| {t['config']} | {t['accuracy']:.1%} ({t['correct']}/{t['n']}) | "
            f"{t['diff'] * 100:+.1f} ({lo * 100:+.1f}, {hi * 100:+.1f}) | "
            f"+{t['gained']}/-{t['lost']} | {t['p']:.3f} | {t['calls_per_q']:.1f} | "
            f"{t['seconds_per_q']:.2f} ({t['base_seconds_per_q']:.2f}) | "
            f"{t['time_ratio_total']:.2f} / {t['time_ratio_median']:.2f} | "
            f"{t['cpu_ratio_total']:.2f} / {t['cpu_ratio_median']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=Path, default=HERE / "results" / "samples.jsonl")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.samples.read_text().splitlines() if line.strip()]
    # Graded against the dev set as it is now (accepted spellings added since the draw count).
    current = {r["question"]: r["answers"] for r in map(json.loads, DEV.read_text().splitlines())}
    rows = [{**r, "answers": current.get(r["question"], r["answers"])} for r in rows]
    # Every configuration on the same questions: those with every arm drawn.
    arms = set.intersection(*(set(r["calls"]) for r in rows))
    rows = [r for r in rows if set(r["calls"]) >= arms]
    table = evaluate(rows)
    print(json.dumps(table, indent=1) if args.json else markdown(table))


if __name__ == "__main__":
    main()
