"""The built-in `local` recipe scored from `moa tune`'s samples, beside what tuning chose.

`local` is five SmolLM2 calls and five Gemma 3 270M calls (greedy first, then seeds 1-4, as
`short.toml` prompts them) picked by `medoid`: one of the configurations `run.sh short` scores
when it draws four samples a model. This prints `local`'s accuracy on both splits and, on the
held-out split, its paired difference to the recipe tune chose and to the best member alone.

    python -m benchmarks.quality.tune.against_local [benchmarks/quality/results/tune-short]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from moa.batch.items import records
from moa.engine.layer import Rounds
from moa.evaluation.stats import paired_difference, wilson
from moa.evaluation.tune.samples import DEV, HELDOUT, prompts
from moa.evaluation.tune.search import MEDOID, Config, Member, Table

LOCAL = Config((Member("local:smollm2", 5), Member("local:gemma3-270m", 5)), MEDOID)


def config(data: dict[str, Any]) -> Config:
    rounds = data["rounds"]
    return Config(
        tuple(Member(m, n) for m, n in data["members"]),
        data["strategy"],
        None if rounds is None else Rounds(*rounds),
    )


def main(folder: Path) -> None:
    work = folder / "tuned.tune"
    drawn = prompts(records(work / "samples.jsonl"))
    configs = json.loads((work / "summary.json").read_text())["configurations"]
    for split in (DEV, HELDOUT):
        right = [Table(p).outcome(LOCAL).correct for p in drawn if p.split == split]
        low, high = wilson(sum(right), len(right))
        share = sum(right) / len(right)
        print(f"local on {split}: {sum(right)}/{len(right)} = {share:.1%} [{low:.1%}, {high:.1%}]")
    held = [Table(p) for p in drawn if p.split == HELDOUT]
    local = [t.outcome(LOCAL).correct for t in held]
    for name, data in configs.items():
        if data["writer"] is not None:
            print(f"{name} writes its answer: compare it with the report's held-out table")
            continue
        other = [t.outcome(config(data)).correct for t in held]
        d = paired_difference(local, other)
        print(
            f"local - {name} ({sum(other)}/{len(other)}): {100 * d.difference:+.1f} points "
            f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}], McNemar p = {d.p_value:.3g}"
        )


def subset(folder: Path, models: list[str]) -> None:
    """The search again over `models` only (the candidates `local` may use without the qwen
    extra), from the same samples: what tune would choose among them, and how it holds up."""
    from moa.evaluation.tune.decide import choose
    from moa.evaluation.tune.search import configurations, rank_key, score

    drawn = prompts(records(folder / "tuned.tune" / "samples.jsonl"))
    for p in drawn:
        for m in [m for m in p.draws if m not in models]:
            del p.draws[m]
    dev = [p for p in drawn if p.split == DEV]
    held = [Table(p) for p in drawn if p.split == HELDOUT]
    scores = score(list(configurations(models, 5)), dev)
    chosen = choose(scores).config
    alone = min((s for s in scores if s.config.strategy == "alone"), key=rank_key).config
    for name, c in (("chosen", chosen), ("best member", alone), ("local", LOCAL)):
        dev_right = next(s for s in scores if s.config == c).correct
        right = [t.outcome(c).correct for t in held]
        print(f"{name}: {c.label}: dev {dev_right}/{len(dev)}, held-out {sum(right)}/{len(right)}")
    d = paired_difference(
        [t.outcome(chosen).correct for t in held], [t.outcome(alone).correct for t in held]
    )
    print(
        f"chosen - best member alone: {100 * d.difference:+.1f} points "
        f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}], McNemar p = {d.p_value:.3g}"
    )


if __name__ == "__main__":
    where = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/quality/results/tune-short")
    main(where)
    print("-- among the models `local` uses (no qwen extra):")
    subset(where, ["local:smollm2", "local:gemma3-270m"])
