"""The selection rules the `local` recipe research scores (benchmarks/quality/analyze.py)."""

from __future__ import annotations

import pytest

analyze = pytest.importorskip("benchmarks.quality.analyze")

Q = "What is the capital of Germany?"


def test_an_answers_gist_drops_the_restated_question_and_function_words() -> None:
    assert analyze.key("The capital of Germany is Berlin.", Q) == {"berlin"}
    assert analyze.key("Berlin. It has 3.6 million people.", Q) == {"berlin"}
    assert analyze.key("It has EIGHT legs", "How many legs does a spider have?") == {"8"}


def test_vote_takes_the_majority_gist_and_the_earliest_on_a_tie() -> None:
    texts = ["Bonn.", "The capital of Germany is Berlin.", "Berlin.", "Munich."]
    assert analyze.vote(texts, Q) == "The capital of Germany is Berlin."
    assert analyze.vote(["Bonn.", "Berlin."], Q) == "Bonn."


def call(text: str, seconds: float = 1.0) -> dict[str, object]:
    return {"text": text, "s": seconds, "cpu": seconds, "in": 10, "out": 2}


def test_early_stop_pays_for_more_calls_only_when_the_first_two_disagree() -> None:
    rule = analyze.early_stop([("a", 1), ("b", 1)], ("c", 2))
    agree = {"question": Q, "calls": {"a": [call("Berlin.")], "b": [call("Berlin!")],
                                      "c": [call("Bonn."), call("Bonn.")]}}  # fmt: skip
    outcome = rule(agree)
    assert (outcome.text, outcome.calls, outcome.seconds) == ("Berlin.", 2, 2.0)
    split = {"question": Q, "calls": {"a": [call("Bonn.")], "b": [call("Berlin.")],
                                      "c": [call("Berlin."), call("Munich.")]}}  # fmt: skip
    outcome = rule(split)
    assert (outcome.text, outcome.calls) == ("Berlin.", 4)


def test_the_untuned_questions_are_the_dev_set_minus_the_tuned_ones_and_nothing_else() -> None:
    import json
    from pathlib import Path

    untuned = pytest.importorskip("benchmarks.quality.untuned")

    def questions(path: Path) -> list[str]:
        return [json.loads(line)["question"] for line in path.read_text().splitlines() if line]

    dev, tuned = questions(untuned.DEV), set(questions(untuned.TUNED))
    held_out = questions(untuned.OUT)
    assert len(held_out) == len(set(held_out)) == len(dev) - len(tuned)
    assert not tuned & set(held_out)
    assert set(held_out) | tuned == set(dev)
    # The committed file is what the script writes (same rows, same shuffled order).
    rows = [json.loads(line) for line in untuned.DEV.read_text().splitlines() if line.strip()]
    assert [r["question"] for r in untuned.untuned(rows, tuned)] == held_out
