"""Tables for RESULTS.md from a `moa eval quick -o DIR` run on untuned.jsonl.

`python -m benchmarks.quality.heldout [DIR]` (default results/untuned)

`moa eval quick` prints each mixture against the baseline; this adds what it does not: any two
entrants against each other on the same questions (staircase on vs off), time per question as
ratios (of totals, and the median of per-question ratios: absolute seconds on a shared
2-core machine mean little), and only the questions every entrant answered, so a run cut short
still compares like with like.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from moa.evaluation.stats import paired_difference, wilson

HERE = Path(__file__).parent
BASELINE = "baseline_local_smollm2_alone_T_0"
# (entrant file stem, label, the entrant it is compared with besides the baseline)
ENTRANTS = [
    (BASELINE, "baseline: SmolLM2 alone, T=0", None),
    ("local", "`local` (10 short answers, medoid)", None),
    ("local-synthesize", "`local-synthesize` (wait-for-all)", None),
    ("local-synthesize-staircase", "`local-synthesize` + staircase", "local-synthesize"),
]


def load(runs: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """entrant -> question id -> record, for the entrants that have a file."""
    out = {}
    for stem, _, _ in ENTRANTS:
        path = runs / f"{stem}.jsonl"
        if path.exists():
            rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
            out[stem] = {repr(r["id"]): r for r in rows if "correct" in r}
    return out


def versus(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """`a` against `b` on the same questions: points (95% CI), +gained/-lost, McNemar p."""
    d = paired_difference(
        [bool(r["correct"]["mixture"]) for r in a], [bool(r["correct"]["mixture"]) for r in b]
    )
    return (
        f"{100 * d.difference:+.1f} ({100 * d.low:+.1f}, {100 * d.high:+.1f}) | "
        f"+{d.gained}/-{d.lost} | {d.p_value:.3f}"
    )


def time_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    sa = [r["cost"]["seconds"] for r in a]
    sb = [r["cost"]["seconds"] for r in b]
    per_q = statistics.median(x / y for x, y in zip(sa, sb, strict=True) if y > 0)
    return f"{sum(sa) / sum(sb):.2f} / {per_q:.2f}"


def tokens_ratio(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> float:
    return sum(r["cost"]["tokens"] for r in a) / sum(r["cost"]["tokens"] for r in b)


def same_text(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    """Questions where both gave the very same final answer (e.g. a staircase whose first step
    already saw the whole, short proposals)."""
    return sum(
        x["outputs"]["mixture"] == y["outputs"]["mixture"] for x, y in zip(a, b, strict=True)
    )


def proposers(rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each layer-1 proposer alone (its first answer in the mixture's run) against the baseline."""
    base = [bool(r["correct"]["mixture"]) for r in rows[BASELINE]]
    out = [
        "Each proposer alone (its answer inside the mixture's run):\n",
        "| configuration | proposer | accuracy | vs baseline, points (95% CI) | McNemar p |",
        "|---|---|---|---|---|",
    ]
    for stem, label, _ in ENTRANTS:
        if stem == BASELINE or stem not in rows:
            continue
        for system in (s for s in rows[stem][0]["correct"] if s != "mixture"):
            marks = [bool(r["correct"].get(system)) for r in rows[stem]]
            d = paired_difference(marks, base)
            out.append(
                f"| {label} | {system} | {100 * sum(marks) / len(marks):.1f}% "
                f"| {100 * d.difference:+.1f} ({100 * d.low:+.1f}, {100 * d.high:+.1f}) "
                f"| {d.p_value:.3f} |"
            )
    return out


def table(runs: Path) -> str:
    data = load(runs)
    common = set.intersection(*(set(d) for d in data.values()))
    ids = sorted(common, key=lambda i: int(i) if i.isdigit() else i)
    rows = {stem: [data[stem][i] for i in ids] for stem in data}
    lines = [
        f"n = {len(ids)} questions answered by every entrant\n",
        "| configuration | accuracy (95% CI) | vs baseline, points (95% CI) | +/- | McNemar p "
        "| calls/q | tokens/q | s/q mean (median) | time x baseline (total / median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for stem, label, _ in ENTRANTS:
        if stem not in rows:
            continue
        r = rows[stem]
        k = sum(bool(x["correct"]["mixture"]) for x in r)
        low, high = wilson(k, len(r))
        secs = [x["cost"]["seconds"] for x in r]
        calls, tokens = (statistics.fmean(x["cost"][key] for x in r) for key in ("calls", "tokens"))
        vs = versus(r, rows[BASELINE]) if stem != BASELINE else "— | — | —"
        lines.append(
            f"| {label} | {100 * k / len(r):.1f}% ({k}/{len(r)}; {100 * low:.0f}-{100 * high:.0f}%)"
            f" | {vs} | {calls:.1f} | {tokens:.0f} | "
            f"{statistics.fmean(secs):.2f} ({statistics.median(secs):.2f}) | "
            f"{time_ratio(r, rows[BASELINE])} |"
        )
    lines += ["", *proposers(rows)]
    for stem, label, other in ENTRANTS:
        if other and stem in rows and other in rows:
            lines += [
                "",
                f"{label} against {other} (same questions):\n",
                "| difference, points (95% CI) | +/- | McNemar p | time x (total / median) "
                "| tokens x | same answer text |",
                "|---|---|---|---|---|---|",
                f"| {versus(rows[stem], rows[other])} | {time_ratio(rows[stem], rows[other])} "
                f"| {tokens_ratio(rows[stem], rows[other]):.2f} "
                f"| {same_text(rows[stem], rows[other])}/{len(ids)} |",
            ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "untuned"))
