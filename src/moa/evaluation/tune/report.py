"""What `moa tune` tells the user: the verdict, the held-out table, the frontier, the recipe.

When no configuration beats the best member on the held-out split (the 95% interval of the
paired difference reaches zero), the report says so plainly and the recipe written is the best
member alone: that mixing does not pay on this task is a result, not a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moa.evaluation.stats import PairedDifference, paired_difference, wilson
from moa.evaluation.tune.decide import BEST, CHOSEN, SELF_CONSISTENCY
from moa.evaluation.tune.found import Found
from moa.evaluation.tune.recipe import Candidate, recipe, to_toml
from moa.evaluation.tune.search import Score, pareto
from moa.pricing import format_usd


@dataclass(frozen=True, slots=True)
class Verdict:
    wins: bool
    against_best: PairedDifference
    against_self_consistency: PairedDifference
    written: Candidate  # the recipe written: the winner, or the best member alone


def verdict(found: Found) -> Verdict:
    assert found.chosen is not None, "judge() has not run"
    right = {name: [o.correct for o in s.outcomes] for name, s in found.heldout.items()}
    best = paired_difference(right[CHOSEN], right[BEST])
    sc = paired_difference(right[CHOSEN], right[SELF_CONSISTENCY])
    wins = found.chosen != found.baselines[BEST] and best.low > 0
    return Verdict(wins, best, sc, found.chosen if wins else found.baselines[BEST])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _usd(x: float | None) -> str:
    return "unknown" if x is None else format_usd(x)


def _per_correct(score: Score, per_prompt: float | None) -> str:
    if per_prompt is None:
        return "unknown"
    return f"{per_prompt * score.n / score.correct:.3g}" if score.correct else "∞"


def heldout_rows(found: Found, v: Verdict) -> list[dict[str, Any]]:
    rows = []
    for name, score in found.heldout.items():
        low, high = wilson(score.correct, score.n)
        diff = paired_difference(
            [o.correct for o in score.outcomes], [o.correct for o in found.heldout[BEST].outcomes]
        )
        label = found.chosen.label if name == CHOSEN and found.chosen else ""
        label = label or found.baselines[name].label
        rows.append(
            {
                "system": name,
                "configuration": label,
                "correct": score.correct,
                "n": score.n,
                "accuracy": score.accuracy,
                "interval": [low, high],
                "vs_best": None if name == BEST else [diff.difference, diff.low, diff.high],
                "mcnemar_p": None if name == BEST else diff.p_value,
                "calls": score.mean("calls"),
                "tokens": score.mean("tokens"),
                "seconds": score.mean("seconds"),
                "usd": score.usd,
            }
        )
    return rows


def _diff(d: PairedDifference) -> str:
    return _points(d.difference, d.low, d.high)


def _points(difference: float, low: float, high: float) -> str:
    return f"{100 * difference:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}]"


def headline(found: Found, v: Verdict) -> str:
    assert found.chosen is not None
    best = found.baselines[BEST].label
    if v.wins:
        return (
            f"{found.chosen.label} beats the best member alone ({best}) on the held-out split: "
            f"{_diff(v.against_best)}, McNemar p = {v.against_best.p_value:.3g}."
        )
    if found.chosen == found.baselines[BEST]:
        top = found.top
        if top is None or top.config == found.chosen.config:
            why = f"nothing scored above {best}"
        else:
            alone = next(s for s in found.scores if s.config == found.chosen.config)
            why = (
                f"nothing beat {best} ({_pct(alone.accuracy)}) by more than a standard error "
                f"(the most accurate, {found.candidate(top).label}, scored {_pct(top.accuracy)})"
            )
        return (
            f"No mixture beats the best member: on the tuning split {why}, so the recipe "
            f"written is that model alone."
        )
    return (
        f"No mixture beats the best member ({best}) on the held-out split: the best "
        f"configuration found, {found.chosen.label}, differs by {_diff(v.against_best)}, an "
        f"interval that includes zero (McNemar p = {v.against_best.p_value:.3g}). The recipe "
        f"written is the best member alone."
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def one_by_one_calls(found: Found) -> int:
    """What evaluating every configuration by running it on the tuning split would cost."""
    picked = sum(s.mean("calls") * s.n for s in found.scores)
    return round(picked + sum(s.mean("calls") * s.n for s in found.written))


def sampling_calls(found: Found) -> int:
    return sum(len(d) for p in [*found.dev, *found.held] for d in p.draws.values())


def markdown(found: Found, v: Verdict, chart: str | None = None) -> str:
    s = found.settings
    out = [f"# moa tune: {s.data.name}", "", f"**{headline(found, v)}**", ""]
    out.append(
        f"Tuned on {len(found.dev)} prompts, checked on {len(found.held)} held-out prompts "
        f"(--holdout {s.holdout}, seed {s.seed}). Candidates: {', '.join(s.models)}; each "
        f"answered every prompt once at T=0 and {s.samples} times at T={s.temperature:g} "
        f"(seeds 1…{s.samples})."
    )
    for model, why in found.skipped.items():
        out.append(f"\n- skipped {model}: it gave no sample ({why})")
    out += ["", "## Held-out split", "", *_heldout_table(found, v)]
    out += [
        "",
        "Per prompt, but for the last two columns; call-seconds add up each call's latency.",
        "",
    ]
    out += _search(found, chart)
    if found.notes:
        out += ["", "### Notes", ""] + [f"- {n}" for n in found.notes]
    return "\n".join(out) + "\n"


def _heldout_table(found: Found, v: Verdict) -> list[str]:
    rows = []
    for r in heldout_rows(found, v):
        vs = "—" if r["vs_best"] is None else _points(*r["vs_best"])
        p = "—" if r["mcnemar_p"] is None else f"{r['mcnemar_p']:.3g}"
        score = found.heldout[r["system"]]
        interval = f"{_pct(r['accuracy'])} [{_pct(r['interval'][0])}, {_pct(r['interval'][1])}]"
        rows.append(
            [
                f"{r['system']}: {r['configuration']}",
                interval,
                vs,
                p,
                f"{r['calls']:.2f}",
                f"{r['tokens']:.0f}",
                f"{r['seconds']:.2f}",
                _usd(r["usd"]),
                _per_correct(score, score.mean("calls")),
                _usd(score.usd * score.n / score.correct)
                if score.correct and score.usd is not None
                else ("unknown" if score.usd is None else "∞"),
            ]
        )
    header = ["system", "accuracy [95%]", "vs best member", "McNemar p", "calls", "tokens"]
    header += ["call-seconds", "USD", "calls per correct", "USD per correct"]
    return _table(header, rows)


def _search(found: Found, chart: str | None) -> list[str]:
    out = ["## The search", ""]
    out.append(
        f"{len(found.scores)} picking configurations scored from the samples with no call; "
        f"running each one on the tuning split would have cost {one_by_one_calls(found):,} "
        f"calls. This tuning made {sampling_calls(found):,} calls in its sampling pass and "
        f"{found.calls_after_sampling:,} after it."
    )
    frontier = pareto([*found.scores, *found.written])
    out += ["", "### Pareto frontier (tuning split)", ""]
    rows = [_frontier_row(found, f) for f in frontier]
    out += _table(["configuration", "accuracy", "calls", "tokens"], rows)
    if chart:
        out += ["", f"![accuracy against calls]({chart})"]
    return out


def _frontier_row(found: Found, score: Score) -> list[str]:
    calls, tokens = score.mean("calls"), score.mean("tokens")
    return [found.candidate(score).label, _pct(score.accuracy), f"{calls:.2f}", f"{tokens:.0f}"]


def recipe_text(found: Found, v: Verdict, name: str) -> str:
    s = found.settings
    written = v.written
    chosen = found.heldout[CHOSEN if v.wins else BEST]
    low, high = wilson(chosen.correct, chosen.n)
    comment = "\n".join(
        [
            f"Written by `moa tune {s.data.name}` ({', '.join(s.models)}; {s.samples} samples at "
            f"T={s.temperature:g}).",
            f"Tuned on {len(found.dev)} prompts; on {len(found.held)} held-out prompts it scored "
            f"{chosen.correct}/{chosen.n} ({_pct(chosen.accuracy)}, 95% interval "
            f"{_pct(low)}-{_pct(high)}).",
            headline(found, v),
        ]
    )
    description = f"Tuned by moa tune on {s.data.name}: {written.label}"
    return to_toml(recipe(written, found.settings.sampler(), name, description), comment)


def chart(found: Found, path: Path) -> None:
    """Accuracy against calls a prompt on the tuning split: every configuration, the frontier,
    and the baselines' held-out points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = [*found.scores, *found.written]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.scatter(
        [s.mean("calls") for s in everything],
        [100 * s.accuracy for s in everything],
        s=8,
        alpha=0.35,
        label="configurations (tuning split)",
    )
    frontier = pareto(everything)
    axes.plot(
        [s.mean("calls") for s in frontier],
        [100 * s.accuracy for s in frontier],
        "-o",
        markersize=4,
        label="Pareto frontier",
    )
    for name, score in found.heldout.items():
        axes.scatter(
            [score.mean("calls")],
            [100 * score.accuracy],
            marker="*",
            s=140,
            label=f"{name} (held-out)",
        )
    axes.set_xlabel("calls a prompt")
    axes.set_ylabel("accuracy (%)")
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
