"""`moa eval alpaca-eval`: AlpacaEval's outputs format, and a pairwise judge in both orders."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from moa.cli.app import app
from moa.evaluation.data import shipped
from moa.testing import FakeUpstream, Reply

DATA = shipped()  # the data moa ships: a plain install needs no data folder
OURS = (
    'name = "ours"\n[[layers]]\nmodels = ["fake:p1", "fake:p2"]\n[aggregator]\nmodel = "fake:agg"\n'
)
BASE = 'name = "base"\n[[layers]]\nmodels = ["fake:p1"]\n[aggregator]\nmodel = "fake:base"\n'
M_MARKER = '"model_identifier": "M"'


def invoke(*args: str, tmp_path: Path, data_dir: Path | None = None):
    # MOA_DATA_DIR unset (None removes it), so the shipped data is used unless a test says not.
    env = {"MOA_CACHE": str(tmp_path / "cache.sqlite"), "MOA_DATA_DIR": data_dir and str(data_dir)}
    return CliRunner().invoke(app, list(args), env=env)


def first_instructions(n: int) -> list[dict]:
    lines = (DATA / "alpaca_eval" / "instructions.jsonl").read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


def prefers_good(body: dict) -> str:
    """A scripted judge: picks whichever output says GOOD, wherever it is shown."""
    prompt = body["messages"][-1]["content"]
    return "M" if prompt.find("GOOD") > prompt.find(M_MARKER) else "m"


def assert_alpaca_eval_schema(rows: object, instructions: list[dict]) -> None:
    """What alpaca_eval's `evaluate(model_outputs=...)` reads: a JSON list of records (it loads
    them with pandas.read_json) with string `instruction` and `output`, one `generator` name
    per model, and `dataset`; instructions as in the eval set, each once."""
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(row) == {"instruction", "output", "generator", "dataset"}
        assert all(isinstance(row[k], str) and row[k] for k in row)
    assert [r["instruction"] for r in rows] == [i["instruction"] for i in instructions]
    assert [r["dataset"] for r in rows] == [i["dataset"] for i in instructions]
    assert len({r["generator"] for r in rows}) == 1


def test_outputs_are_written_in_alpaca_eval_format(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    upstream.script("agg", Reply(text=lambda body: "GOOD: " + body["messages"][-1]["content"][:20]))
    out = tmp_path / "model_outputs.json"
    done = invoke(
        "eval",
        "alpaca-eval",
        "-r",
        str(recipe_file(OURS)),
        "--limit",
        "3",
        "-o",
        str(out),
        tmp_path=tmp_path,
    )
    assert done.exit_code == 0, done.output
    rows = json.loads(out.read_text())
    assert_alpaca_eval_schema(rows, first_instructions(3))
    assert {r["generator"] for r in rows} == {"ours"}
    assert rows[0]["output"] == "GOOD: " + first_instructions(1)[0]["instruction"][:20]
    assert "wrote 3 outputs" in done.output
    # The answers with their traces are kept beside it, which is what makes a rerun resume.
    runs = [
        json.loads(line)
        for line in (tmp_path / "model_outputs.runs.jsonl").read_text().splitlines()
    ]
    assert len(runs) == 3 and all(r["trace"]["calls"] for r in runs)


def test_win_rate_against_a_baseline_recipe_judges_both_orders(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    upstream.script("agg", Reply("a GOOD answer"))
    upstream.script("base", Reply("a plain answer"))
    upstream.script("judge", Reply(text=prefers_good))
    out = tmp_path / "model_outputs.json"
    args = [
        "eval",
        "alpaca-eval",
        "-r",
        str(recipe_file(OURS)),
        "--limit",
        "3",
        "-o",
        str(out),
        "--judge",
        "fake:judge",
        "--baseline",
        str(recipe_file(BASE, "base.toml")),
    ]
    done = invoke(*args, tmp_path=tmp_path)
    assert done.exit_code == 0, done.output
    asked = upstream.requests_for("judge")
    assert len(asked) == 6  # 3 pairs, each in both orders
    positions = sorted(
        r["messages"][-1]["content"].find("GOOD") > r["messages"][-1]["content"].find(M_MARKER)
        for r in asked
    )
    assert positions == [False] * 3 + [True] * 3  # ours shown first 3 times, second 3 times
    assert all(r["temperature"] == 0 for r in asked)
    summary = json.loads((tmp_path / "model_outputs.winrate.json").read_text())
    assert summary["win_rate"] == 100.0 and summary["standard_error"] == 0.0
    assert summary["pairs"] == 3 and summary["unparsable"] == 0 and summary["baseline"] == "base"
    assert summary["avg_length"] == len("a GOOD answer")
    assert summary["baseline_avg_length"] == len("a plain answer")
    assert "100.0%" in done.output

    again = invoke(*args, tmp_path=tmp_path)  # resumed: nothing is asked again
    assert again.exit_code == 0, again.output
    assert len(upstream.requests_for("judge")) == 6
    assert json.loads((tmp_path / "model_outputs.winrate.json").read_text()) == summary


def test_a_baseline_outputs_file_and_unparsable_verdicts(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    instructions = first_instructions(4)
    baseline = tmp_path / "gpt4_outputs.json"
    baseline.write_text(
        json.dumps(
            [
                {
                    "instruction": i["instruction"],
                    "output": "baseline says GOOD",
                    "generator": "gpt4",
                }
                for i in instructions
            ]
        )
    )
    upstream.script("agg", Reply(text=lambda body: "ours " + body["messages"][-1]["content"][:8]))
    verdicts = iter(["m", "I cannot decide", "M", "M", "??", "m", "m", "M"])
    upstream.script("judge", Reply(text=lambda body: next(verdicts)))
    done = invoke(
        "eval",
        "alpaca-eval",
        "-r",
        str(recipe_file(OURS)),
        "--limit",
        "4",
        "-o",
        str(tmp_path / "o.json"),
        "--judge",
        "fake:judge",
        "--baseline",
        str(baseline),
        "-c",
        "1",
        tmp_path=tmp_path,
    )
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "o.winrate.json").read_text())
    assert summary["unparsable"] == 2 and summary["baseline"] == "gpt4_outputs"
    assert summary["pairs"] + summary["unjudged"] == 4


def test_judge_without_baseline_is_a_usage_error(recipe_file, tmp_path: Path) -> None:
    done = invoke(
        "eval", "alpaca-eval", "-r", str(recipe_file(OURS)), "--judge", "fake:j", tmp_path=tmp_path
    )
    assert done.exit_code == 2 and "--baseline" in done.output


def test_a_missing_data_dir_says_where_to_point(recipe_file, tmp_path: Path) -> None:
    done = invoke(
        "eval",
        "alpaca-eval",
        "-r",
        str(recipe_file(OURS)),
        "--data-dir",
        str(tmp_path / "nope"),
        tmp_path=tmp_path,
    )
    assert done.exit_code == 2 and "--data-dir" in done.output and "nope" in done.output


def test_the_instructions_and_annotator_prompt_ship_with_moa() -> None:
    rows = [json.loads(line) for line in (DATA / "alpaca_eval" / "instructions.jsonl").open()]
    assert len(rows) == 805 and {"id", "dataset", "instruction"} <= set(rows[0])
    prompt = (DATA / "alpaca_eval" / "pairwise_judge_prompt.txt").read_text()
    assert all(f"{{{field}}}" in prompt for field in ("instruction", "output_1", "output_2"))
    notice = (DATA / "alpaca_eval" / "NOTICE.md").read_text()
    assert "CC BY-NC 4.0" in notice and "tatsu-lab/alpaca_eval" in notice


def test_moa_data_dir_replaces_the_shipped_instructions(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    own = tmp_path / "data" / "alpaca_eval"
    own.mkdir(parents=True)
    row = {"id": 7, "dataset": "mine", "instruction": "Name a prime number."}
    (own / "instructions.jsonl").write_text(json.dumps(row) + "\n")
    out = tmp_path / "o.json"
    done = invoke(
        "eval", "alpaca-eval", "-r", str(recipe_file(OURS)), "-o", str(out),
        tmp_path=tmp_path, data_dir=tmp_path / "data",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert [(r["instruction"], r["dataset"]) for r in json.loads(out.read_text())] == [
        ("Name a prime number.", "mine")
    ]


def test_a_judge_that_never_answers_m_or_M_is_reported_not_fatal(
    upstream: FakeUpstream, recipe_file, tmp_path: Path
) -> None:
    upstream.script("agg", Reply("ours"))
    upstream.script("base", Reply("theirs"))
    upstream.script("judge", Reply("The best model identifier for the best model"))
    done = invoke(
        "eval",
        "alpaca-eval",
        "-r",
        str(recipe_file(OURS)),
        "--limit",
        "2",
        "-o",
        str(tmp_path / "o.json"),
        "--judge",
        "fake:judge",
        "--baseline",
        str(recipe_file(BASE, "base.toml")),
        tmp_path=tmp_path,
    )
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "o.winrate.json").read_text())  # strict JSON: no NaN
    assert summary["win_rate"] is None and summary["pairs"] == 0
    assert summary["unparsable"] == 4 and summary["unjudged"] == 2
    assert "win rate         –% ± – (SE)" in done.output
