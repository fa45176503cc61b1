"""The word problems `local-reason` is tuned and measured on: generated from fixed seeds, two
disjoint splits shipped inside moa, scored by the answer's final result only."""

from __future__ import annotations

import json
from importlib.resources import files

from moa.evaluation import quick, wordproblems


def shipped(split: str) -> list[dict[str, object]]:
    path = files("moa.evaluation") / "datasets" / "word_problems" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_shipped_splits_are_the_generators_output() -> None:
    for split in ("dev", "untuned"):
        assert shipped(split) == wordproblems.generate(split, 60)


def test_the_splits_share_no_problem_and_every_answer_is_a_whole_number() -> None:
    dev = {str(row["question"]) for row in shipped("dev")}
    untuned = {str(row["question"]) for row in shipped("untuned")}
    assert not dev & untuned
    for row in [*shipped("dev"), *shipped("untuned")]:
        (answer,) = row["answers"]  # type: ignore[misc]
        assert str(answer).isdigit() and row["scoring"] == "final"


def test_a_reasoning_answer_is_right_by_its_final_result_only() -> None:
    steps = "3 trays of 7 is 21. 21 - 12 - 8 = 1.\nAnswer: 1"
    assert quick.is_correct(steps, ["1"], "final")
    wrong = "She starts with 12 cookies and has 21 after baking.\nAnswer: 9"
    assert not quick.is_correct(wrong, ["12"], "final")  # 12 appears, but is not the result
    assert quick.is_correct(wrong, ["12"], "words")  # as short answers are scored
