"""`moa eval mt-bench`: both turns, single-answer grading, references, scores and a chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from moa.cli.app import app
from moa.evaluation import mtbench
from moa.evaluation.data import data_dir
from moa.testing import FakeUpstream, Reply

RECIPE = 'name = "{name}"\n[[layers]]\nmodels = ["fake:p1"]\n[aggregator]\nmodel = "fake:{agg}"\n'


def invoke(*args: str, tmp_path: Path):
    # MOA_DATA_DIR unset: the questions, references and judge prompts come with moa.
    env = {"MOA_CACHE": str(tmp_path / "cache.sqlite"), "MOA_DATA_DIR": None}
    return CliRunner().invoke(app, list(args), env=env)


def scripted_grade(body: dict) -> str:
    """Rates answers from `strong` 9 and others 4; a turn-2 answer saying `lost` gets no rating."""
    prompt = body["messages"][-1]["content"]
    if "lost" in prompt:
        return "I cannot find a rating to give."
    return "Good. Rating: [[9]]" if "strong" in prompt else "Weak. Rating: [[4]]"


def test_the_judge_prompt_follows_fastchat_with_references_for_math(monkeypatch) -> None:
    monkeypatch.delenv("MOA_DATA_DIR", raising=False)
    bench = mtbench.load(data_dir(None))  # no --data-dir: the data shipped with moa
    assert len(bench.questions) == 80
    math_q = next(q for q in bench.questions if q["category"] == "math")
    writing_q = next(q for q in bench.questions if q["category"] == "writing")
    reference = bench.references[math_q["question_id"]]

    turn1 = mtbench.judge_messages(bench, math_q, ["A1", "A2"], 1)
    assert turn1[0]["content"] == bench.prompts["single-math-v1"]["system_prompt"]
    assert "[The Start of Reference Answer]\n" + reference[0] in turn1[1]["content"]
    assert "[The Start of Assistant's Answer]\nA1\n" in turn1[1]["content"]

    turn2 = mtbench.judge_messages(bench, math_q, ["A1", "A2"], 2)
    assert turn2[0]["content"] == bench.prompts["single-math-v1-multi-turn"]["system_prompt"]
    assert reference[1] in turn2[1]["content"] and "### Assistant A:\nA2" in turn2[1]["content"]

    plain = mtbench.judge_messages(bench, writing_q, ["W1", "W2"], 2)
    assert plain[0]["content"] == bench.prompts["single-v1-multi-turn"]["system_prompt"]
    assert "Reference" not in plain[1]["content"]


def test_mt_bench_answers_both_turns_grades_and_charts_two_recipes(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    upstream.script("strong", Reply("a strong answer"))
    # Second turns of `weak` answer "lost": their verdicts carry no rating.
    upstream.script(
        "weak",
        Reply(
            text=lambda body: (
                "lost"
                if len([m for m in body["messages"] if m["role"] == "user"]) > 1
                else "a weak answer"
            )
        ),
    )
    upstream.script("judge", Reply(text=scripted_grade))
    out = tmp_path / "mt"
    done = invoke(
        "eval",
        "mt-bench",
        "-r",
        str(recipe_file(RECIPE.format(name="A", agg="strong"), "a.toml")),
        "-r",
        str(recipe_file(RECIPE.format(name="B", agg="weak"), "b.toml")),
        "--judge",
        "fake:judge",
        "--limit",
        "3",
        "-o",
        str(out),
        tmp_path=tmp_path,
    )
    assert done.exit_code == 0, done.output

    answers = [json.loads(line) for line in (out / "A.answers.jsonl").read_text().splitlines()]
    assert len(answers) == 3 and all(len(a["answers"]) == 2 for a in answers)
    # Turn 2 is asked with turn 1 and its answer in the conversation.
    turn2 = [r for r in upstream.requests_for("p1") if len(r["messages"]) == 3]
    assert len(turn2) == 6 and turn2[0]["messages"][1]["role"] == "assistant"

    assert len(upstream.requests_for("judge")) == 12  # 2 recipes x 3 questions x 2 turns
    scores = json.loads((out / "scores.json").read_text())["recipes"]
    assert scores["A"]["overall"] == 9.0 and scores["A"]["by_category"] == {"writing": 9.0}
    assert scores["B"]["overall"] == 4.0 and scores["B"]["unparsable"] == 3
    assert scores["B"]["by_turn"] == {"1": 4.0}
    png = (out / "mt_bench.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert re.search(r"overall\s+9\.00\s+4\.00", done.output)


def test_scores_average_per_category_turn_and_overall() -> None:
    judged = [
        {"category": "math", "turn": 1, "rating": 2.0},
        {"category": "math", "turn": 2, "rating": 4.0},
        {"category": "writing", "turn": 1, "rating": 9.0},
        {"category": "writing", "turn": 2, "rating": None},
    ]
    scores = mtbench.score(judged)
    assert scores.by_category == {"math": 3.0, "writing": 9.0}
    assert scores.by_turn == {1: 5.5, 2: 4.0}
    assert scores.overall == 5.0 and scores.unparsable == 1 and scores.graded == 3
