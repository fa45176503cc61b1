"""Multi-step word problems with exact integer answers, generated from fixed seeds.

Each problem is one of a few templates (shopping with change, rates and times, sharing in
groups, savings and spending, …) filled with numbers drawn so that every step stays a whole
number; each needs two to four operations. Two splits come from disjoint seeds: `dev`, to tune
recipes on, and `untuned`, never looked at while tuning, to measure on. The shipped files
(datasets/word_problems/*.jsonl) are this module's output, and a test keeps them so:

    python -m moa.evaluation.wordproblems dev 60 > dev.jsonl

Rows are `moa eval quick` rows with `"scoring": "final"`: an answer counts as right when its
final result (moa.strategies.final, as `vote` reads it) is the number, not when the number
merely appears somewhere in its reasoning.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from typing import Any

SPLITS = {"dev": 10_000, "untuned": 90_000}  # first seed of each split: disjoint ranges

Problem = tuple[str, int]
_NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon")


def _shop(r: random.Random, name: str) -> Problem:
    pen, book, pens, books = r.randint(2, 9), r.randint(3, 15), r.randint(2, 8), r.randint(2, 5)
    cost = pen * pens + book * books
    bill = next(b for b in (20, 50, 100, 200) if b > cost)
    question = (
        f"Pens cost {pen} dollars each and notebooks cost {book} dollars each. {name} buys "
        f"{pens} pens and {books} notebooks and pays with a {bill}-dollar bill. How many "
        f"dollars of change does {name} get?"
    )
    return question, bill - cost


def _bakery(r: random.Random, name: str) -> Problem:
    trays, per, sold, given = r.randint(3, 9), r.randint(6, 15), r.randint(5, 20), r.randint(2, 9)
    made = trays * per
    sold = min(sold, made - given - 1)
    question = (
        f"{name} bakes {trays} trays of {per} cookies. {name} sells {sold} cookies and gives "
        f"{given} to a neighbour. How many cookies are left?"
    )
    return question, made - sold - given


def _marbles(r: random.Random, name: str) -> Problem:
    start, bags, per = r.randint(5, 40), r.randint(2, 6), r.randint(4, 12)
    friends = r.randint(2, 5)
    each = r.randint(1, (start + bags * per) // friends - 1)
    question = (
        f"{name} has {start} marbles and buys {bags} bags with {per} marbles in each. Then "
        f"{name} gives {each} marbles to each of {friends} friends. How many marbles does "
        f"{name} have now?"
    )
    return question, start + bags * per - each * friends


def _trip(r: random.Random, name: str) -> Problem:
    s1, h1, s2, h2 = r.randint(40, 90), r.randint(2, 5), r.randint(30, 70), r.randint(1, 4)
    back = r.randint(10, 60)
    question = (
        f"{name} drives at {s1} km per hour for {h1} hours, then at {s2} km per hour for {h2} "
        f"hours, and then drives {back} km back the same way. How far from the start is "
        f"{name} now, in km?"
    )
    return question, s1 * h1 + s2 * h2 - back


def _groups(r: random.Random, name: str) -> Problem:
    size, groups, markers = r.randint(3, 6), r.randint(4, 9), r.randint(2, 6)
    box = r.choice([d for d in (2, 3, 4, 5, 6, 8, 10, 12) if (groups * markers) % d == 0])
    question = (
        f"{name}'s class of {size * groups} students is split into groups of {size}. Each "
        f"group needs {markers} markers, and markers come in boxes of {box}. How many boxes "
        f"does {name} need?"
    )
    return question, groups * markers // box


def _savings(r: random.Random, name: str) -> Problem:
    weekly, weeks = r.randint(5, 30), r.randint(4, 12)
    total = weekly * weeks
    bike = r.randint(total // 4, total // 2)
    if (total - bike) % 2:
        bike += 1
    question = (
        f"{name} saves {weekly} dollars every week for {weeks} weeks, then spends {bike} "
        f"dollars on a bike and half of what is left on books. How many dollars does {name} "
        f"have left?"
    )
    return question, (total - bike) // 2


def _tank(r: random.Random, name: str) -> Problem:
    rate, minutes, leak = r.randint(3, 12), r.randint(5, 15), r.randint(2, 20)
    capacity = rate * minutes - leak + r.randint(10, 90)
    question = (
        f"A tank holds {capacity} litres and starts empty. {name} fills it at {rate} litres "
        f"per minute for {minutes} minutes, and {leak} litres leak out. How many more litres "
        f"are needed to fill the tank?"
    )
    return question, capacity - (rate * minutes - leak)


def _farm(r: random.Random, name: str) -> Problem:
    cows, hens, sold = r.randint(3, 15), r.randint(5, 30), r.randint(1, 4)
    bought = r.randint(2, 10)
    cows_now, hens_now = cows - min(sold, cows - 1), hens + bought
    question = (
        f"{name}'s farm has {cows} cows and {hens} chickens. {name} sells {cows - cows_now} "
        f"cows and buys {bought} chickens. How many legs do the farm's cows and chickens have "
        f"in total now?"
    )
    return question, 4 * cows_now + 2 * hens_now


TEMPLATES: tuple[Callable[[random.Random, str], Problem], ...] = (
    _shop,
    _bakery,
    _marbles,
    _trip,
    _groups,
    _savings,
    _tank,
    _farm,
)


def generate(split: str, n: int) -> list[dict[str, Any]]:
    """`n` problems of `split` ("dev" or "untuned"): the same every time."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} — use one of {', '.join(SPLITS)}")
    rows = []
    for i in range(n):
        seed = SPLITS[split] + i
        rng = random.Random(seed)
        template = TEMPLATES[i % len(TEMPLATES)]
        question, answer = template(rng, rng.choice(_NAMES))
        assert answer >= 0, (template.__name__, seed)
        rows.append(
            {
                "id": f"{split}-{i:03d}",
                "question": question,
                "answers": [str(answer)],
                "scoring": "final",
            }
        )
    return rows


def main(argv: list[str]) -> None:
    split, n = argv[0], int(argv[1]) if len(argv) > 1 else 60
    for row in generate(split, n):
        print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1:])
