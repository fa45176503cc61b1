"""Write `untuned.jsonl`: the dev questions that the `local` recipe was NOT tuned on.

`python -m benchmarks.quality.untuned`

The `local` recipe was chosen (issue 10) by comparing ~34 configurations on the 75 questions
in `results/samples.jsonl`, so its lead there is flattered by the choice. The other dev
questions were never looked at by that search; they are the honest held-out check. They are
written in `sample.py`'s fixed shuffled order (dev.jsonl is grouped by topic), so a prefix
(`moa eval quick -n N`) is still a sample of every topic, not just geography.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent
DEV = HERE / "dev.jsonl"
TUNED = HERE / "results" / "samples.jsonl"
OUT = HERE / "untuned.jsonl"


def untuned(dev: list[dict[str, object]], tuned: set[str]) -> list[dict[str, object]]:
    """Dev rows whose question is not among the tuned ones, in sample.py's shuffled order."""
    rows = list(dev)
    random.Random(0).shuffle(rows)  # the same fixed shuffle as sample.py
    return [r for r in rows if r["question"] not in tuned]


def main() -> None:
    dev = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    tuned = {json.loads(line)["question"] for line in TUNED.read_text().splitlines() if line}
    rows = untuned(dev, tuned)
    if not tuned <= {r["question"] for r in dev}:
        raise SystemExit("a tuned question is no longer in dev.jsonl")
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    print(f"{len(rows)} untuned of {len(dev)} dev questions ({len(tuned)} tuned) -> {OUT}")


if __name__ == "__main__":
    main()
