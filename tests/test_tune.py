"""`moa tune`: sample once, score every picking configuration from the samples, spend calls only
where text is written, and judge the winner on prompts it never tuned on.

The world is scripted on the fake upstream: models of known accuracy whose samples differ by
seed. `strong` is right 70% of the time and wrong in scattered ways, so a majority over its
samples is right far more often than one answer; `weak` is right 30% of the time and always
wrong the same way, so adding it to a panel pulls the majority toward its mistake.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from moa import ProviderConfig, Registry, recipes
from moa.cli.app import app
from moa.errors import ConfigError, InputError
from moa.evaluation.tune import Settings, Tuned, tune_to
from moa.evaluation.tune.recipe import Candidate
from moa.evaluation.tune.samples import Draw, Prompt
from moa.evaluation.tune.search import ALONE, Config, Member, Table, configurations, score
from moa.testing import FakeUpstream, Reply

ACCURACY = {"strong": 0.7, "weak": 0.3, "steady": 0.7}


def _unit(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _gold(question: str) -> int:
    found = re.match(r"What is (\d+) plus (\d+)\?", question)
    assert found, question
    return int(found[1]) + int(found[2])


def scripted(model: str):
    """A model right with probability ACCURACY[model], independently per prompt and seed;
    `steady` answers the same whatever the seed (its samples add nothing)."""

    def answer(body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        seed = "greedy" if body.get("temperature") == 0 else body.get("seed")
        if model == "steady":
            seed = "always"
        gold = _gold(question)
        if _unit(model, question, seed) < ACCURACY[model]:
            return f"Adding up. Answer: {gold}"
        if model == "weak":
            return f"Adding up. Answer: {gold + 1}"  # the same mistake every time
        return f"Adding up. Answer: {gold + 2 + int(_unit('wrong', question, seed) * 1000)}"

    return answer


def write_data(path: Path, count: int) -> Path:
    rows = [
        {
            "id": f"q{i}",
            "question": f"What is {i * 7 % 89} plus {i * 13 % 97}?",
            "answers": [str(i * 7 % 89 + i * 13 % 97)],
            "scoring": "final",
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def world(upstream: FakeUpstream) -> FakeUpstream:
    for model in ACCURACY:
        upstream.script(model, Reply(text=scripted(model)))
    return upstream


def run(upstream: FakeUpstream, tmp_path: Path, models: tuple[str, ...], **options: Any) -> Tuned:
    registry = Registry({"fake": ProviderConfig("fake", upstream.base_url)}, env={})
    data = options.pop("data", None) or write_data(tmp_path / "data.jsonl", 100)
    settings = Settings(data, tuple(f"fake:{m}" for m in models), samples=5, **options)
    return tune_to(
        settings,
        tmp_path / "tuned.toml",
        report_path=tmp_path / "tuned.md",
        cache=tmp_path / "cache.sqlite",
        registry=registry,
    )


def requests_by_model(upstream: FakeUpstream, proposals_only: bool = False) -> dict[str, int]:
    """Requests by model; `proposals_only`: those that answer the question itself (a ranker's
    or an aggregator's requests carry the others' answers)."""
    counts: dict[str, int] = {}
    for body in upstream.requests:
        if proposals_only and [m["role"] for m in body["messages"]] != ["user"]:
            continue
        counts[body["model"]] = counts.get(body["model"], 0) + 1
    return counts


def test_voting_over_samples_of_the_strong_model_beats_it_alone(world, tmp_path) -> None:
    tuned = run(world, tmp_path, ("strong", "weak"))
    chosen = tuned.found.chosen
    assert chosen is not None and chosen.writer is None
    assert [m.model for m in chosen.config.members] == ["fake:strong"]
    assert chosen.config.calls > 1
    assert tuned.verdict.wins
    assert tuned.verdict.against_best.low > 0
    written = recipes.load(tmp_path / "tuned.toml")
    assert {m.model for m in written.layers[0].models} == {"fake:strong"}
    assert "beats the best member" in (tmp_path / "tuned.md").read_text()
    assert (tmp_path / "tuned.png").stat().st_size > 0


def test_adding_the_weak_model_to_the_panel_hurts(world, tmp_path) -> None:
    tuned = run(world, tmp_path, ("strong", "weak"))
    by_label = {s.config.label: s for s in tuned.found.scores}
    alone_panel = by_label["fake:strong×6 · medoid"]
    mixed = by_label["fake:strong×6 + fake:weak×6 · medoid"]
    assert mixed.accuracy < alone_panel.accuracy


def test_sampling_calls_each_candidate_once_per_draw_and_picking_calls_nothing(
    world, tmp_path
) -> None:
    tuned = run(world, tmp_path, ("strong", "weak"))
    # 100 prompts × (greedy + 5 samples), for each candidate; no candidate was asked again.
    assert requests_by_model(world) == {"strong": 600, "weak": 600}
    assert tuned.found.calls_after_sampling == 0
    assert len(tuned.found.scores) > 50


def test_upstream_calls_are_the_sampling_pass_plus_the_writers(world, tmp_path) -> None:
    world.script("agg", Reply("Combining them. Answer: 0"))
    tuned = run(world, tmp_path, ("strong", "weak"), aggregators=("fake:agg",), leaders=1)
    proposals = requests_by_model(world, proposals_only=True)
    assert proposals == {"strong": 600, "weak": 600}  # the writers' came from the cache
    assert tuned.found.calls_after_sampling > 0
    tried = [n for n in tuned.found.notes if n.startswith("tried:")]
    assert len(tried) == 4  # synthesize, analysis, select, rank on the one leading panel
    assert len(world.requests) == 1200 + tuned.found.calls_after_sampling


def test_max_calls_caps_the_writers_and_says_which_were_not_tried(world, tmp_path) -> None:
    world.script("agg", Reply("Combining them. Answer: 0"))
    tuned = run(world, tmp_path, ("strong",), aggregators=("fake:agg",), leaders=1, max_calls=110)
    assert requests_by_model(world).get("agg", 0) <= 110
    notes = tuned.found.notes
    assert any(n.startswith("tried: ") and "synthesize" in n for n in notes)
    assert any(n.startswith("not tried: ") and "--max-calls" in n for n in notes)


def test_the_search_never_reads_the_held_out_split(world, tmp_path) -> None:
    first = run(world, tmp_path, ("strong", "weak"))
    samples = tmp_path / "tuned.tune" / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for row in rows:  # every held-out answer made wrong: the search must not notice
        if row["split"] == "heldout":
            for draws in row["draws"].values():
                for d in draws:
                    d["text"], d["correct"] = "Answer: -1", False
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    second = run(world, tmp_path, ("strong", "weak"))
    assert second.found.chosen == first.found.chosen
    assert [s.accuracy for s in second.found.scores] == [s.accuracy for s in first.found.scores]
    assert second.found.heldout["chosen"].accuracy == 0.0


def test_a_killed_run_resumes_without_calling_again_for_what_it_had(world, tmp_path) -> None:
    run(world, tmp_path, ("strong", "weak"))
    samples = tmp_path / "tuned.tune" / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    # Killed with 60 prompts written and the 61st half-written; the cache lost too.
    samples.write_text("".join(lines[:60]) + lines[60][:40])
    (tmp_path / "cache.sqlite").unlink()
    world.reset()
    for model in ACCURACY:
        world.script(model, Reply(text=scripted(model)))
    run(world, tmp_path, ("strong", "weak"))
    assert requests_by_model(world) == {"strong": 40 * 6, "weak": 40 * 6}


def test_when_no_mixture_beats_the_best_member_the_recipe_is_that_model_alone(
    world, tmp_path
) -> None:
    tuned = run(world, tmp_path, ("steady", "weak"))
    assert not tuned.verdict.wins
    assert tuned.verdict.written.config.strategy == ALONE
    assert tuned.verdict.written.config.members == (Member("fake:steady", 1),)
    written = recipes.load(tmp_path / "tuned.toml")
    assert written.layers == [] and written.aggregator.model == "fake:steady"
    assert "No mixture beats the best member" in (tmp_path / "tuned.md").read_text()
    assert "No mixture beats the best member" in (tmp_path / "tuned.toml").read_text()


def test_a_budget_the_sampling_pass_would_pass_is_refused_before_any_call(world, tmp_path) -> None:
    registry = Registry({"fake": ProviderConfig("fake", world.base_url)}, env={})
    settings = Settings(
        write_data(tmp_path / "d.jsonl", 40),
        ("fake:strong",),
        budget=0.01,
        max_tokens=100,
        specs={"fake:strong": {"price": {"input": 1.0, "output": 10.0}}},
    )
    # 40 prompts × 6 calls × up to 100 output tokens at $10 a million: up to $0.24 and more.
    with pytest.raises(ConfigError, match=r"could cost up to \$0\.2.* over --budget \$0\.01"):
        tune_to(settings, tmp_path / "t.toml", registry=registry, cache=tmp_path / "c.sqlite")
    assert world.requests == []


def test_data_without_gold_answers_gets_one_clear_line(world, tmp_path) -> None:
    data = tmp_path / "open.jsonl"
    data.write_text('{"prompt": "Write a haiku about rain."}\n' * 3)
    with pytest.raises(InputError, match="no gold `answers`"):
        run(world, tmp_path, ("strong",), data=data)
    assert world.requests == []


def test_an_unreachable_model_is_skipped_and_named(world, tmp_path) -> None:
    world.script("gone", Reply(status=404, text="no such model"))
    tuned = run(world, tmp_path, ("strong", "gone"))
    assert list(tuned.found.skipped) == ["fake:gone"]
    assert all("fake:gone" not in s.config.label for s in tuned.found.scores)
    assert "skipped fake:gone" in (tmp_path / "tuned.md").read_text()


def test_few_held_out_prompts_warn_that_the_interval_is_wide(world, tmp_path) -> None:
    tuned = run(world, tmp_path, ("strong",), data=write_data(tmp_path / "few.jsonl", 40))
    assert any("intervals are wide" in n for n in tuned.found.notes)


def test_the_offline_replay_is_what_the_engine_answers(world, tmp_path) -> None:
    """Each picking configuration's offline answer is the answer its written recipe gives when
    run, its proposals answered from the cache."""
    tuned = run(world, tmp_path, ("strong", "weak"))
    found = tuned.found
    registry = Registry({"fake": ProviderConfig("fake", world.base_url)}, env={})
    from moa.evaluation.tune.recipe import recipe
    from moa.policies.cache import ResponseCache

    cache = ResponseCache(tmp_path / "cache.sqlite")
    sampler = found.settings.sampler()
    picked = [s for s in found.scores if s.config.strategy != "vote"][
        :: max(1, len(found.scores) // 12)
    ]
    before = len(world.requests)
    for s in picked:
        mixture = recipes.build(
            recipes.Recipe.model_validate(recipe(Candidate(s.config), sampler, "check")),
            registry,
            cache=cache,
        )
        for prompt, outcome in list(zip(found.dev, s.outcomes, strict=True))[:10]:
            text = mixture.run(prompt.question).text
            gold = str(_gold(prompt.question))
            assert text.endswith(f"Answer: {gold}") == outcome.correct, s.config.label
    assert len(world.requests) == before


def test_adaptive_rounds_are_replayed_with_the_engines_stopping_rule() -> None:
    def draw(answer: str) -> Draw:
        return Draw(f"Answer: {answer}", True, answer == "5", 10, 1.0, 0.0)

    prompt = Prompt(
        "p",
        "What is 2 plus 3?",
        "dev",
        {"m": [draw("5"), draw("5"), draw("7"), draw("5"), draw("8"), draw("9")]},
    )
    table = Table(prompt)
    from moa.engine.layer import Rounds

    # 2 of 2 agree after the first round of two: one more could not overtake them... it could
    # (4 left), so a stop share of 100% stops there; 0.6 too.
    quick = table.outcome(Config((Member("m", 6),), "adaptive", Rounds(2, 1, 1.0)))
    assert quick.calls == 2 and quick.correct
    whole = table.outcome(Config((Member("m", 6),), "medoid"))
    assert whole.calls == 6 and whole.correct


def test_every_panel_and_draw_count_is_a_configuration() -> None:
    configs = list(configurations(["a", "b"], 3))
    panels = {c.members for c in configs}
    assert len(panels) == 3 + 3 + 9  # a×1..3, b×1..3, and every pair of counts
    assert sum(c.strategy == ALONE for c in configs) == 2
    prompt = Prompt(
        "p",
        "q?",
        "dev",
        {
            "a": [Draw("Answer: 1", True, True, 1, 1.0, None)] * 3,
            "b": [Draw("x", False, False, 0, 0.0, None)] * 3,
        },
    )
    scored = score(configs, [prompt])
    assert all(s.usd is None for s in scored if any(m.model == "a" for m in s.config.members))


def test_moa_tune_on_the_command_line_writes_a_recipe_moa_ask_loads(world, tmp_path) -> None:
    config = tmp_path / "tune.toml"
    config.write_text(
        f'[providers.fake]\nbase_url = "{world.base_url}"\n\n'
        '[models."fake:strong"]\nsystem = "Add the numbers."\nmax_tokens = 64\n'
    )
    data = write_data(tmp_path / "data.jsonl", 100)
    env = {"MOA_CACHE": str(tmp_path / "cache.sqlite")}
    args = [
        "tune",
        str(data),
        "-m",
        "fake:strong",
        "-m",
        "fake:weak",
        "-o",
        str(tmp_path / "mine.toml"),
    ]
    done = CliRunner().invoke(app, [*args, "--config", str(config), "--json", "-q"], env=env)
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["verdict"] == "mixture"
    assert summary["calls"]["sampling"] == 1200 and summary["calls"]["after_sampling"] == 0
    assert summary["heldout_rows"][0]["system"] == "chosen"
    assert [m for m, _ in summary["configurations"]["chosen"]["members"]] == ["fake:strong"]
    assert summary["configurations"]["best member"]["members"] == [["fake:strong", 1]]
    written = recipes.load(tmp_path / "mine.toml")
    assert all(m.system == "Add the numbers." for m in written.layers[0].models)
    before = len(world.requests)
    asked = CliRunner().invoke(
        app, ["ask", "-r", str(tmp_path / "mine.toml"), "What is 1 plus 2?"], env=env
    )
    assert asked.exit_code == 0, asked.output
    assert "Answer:" in asked.stdout and len(world.requests) > before


def test_a_candidate_table_may_not_set_what_tune_chooses(world, tmp_path) -> None:
    with pytest.raises(InputError, match="which tune chooses itself"):
        run(world, tmp_path, ("strong",), specs={"fake:strong": {"temperature": 0.3}})
    assert world.requests == []


def test_a_candidate_table_with_an_unknown_key_gets_one_line(world, tmp_path) -> None:
    with pytest.raises(InputError, match=r"\[models.'fake:strong'\]: temprature: unknown key"):
        run(world, tmp_path, ("strong",), specs={"fake:strong": {"temprature": 0.3}})
    assert world.requests == []


def test_open_ended_prompts_are_graded_by_the_judge_against_their_reference(
    upstream, tmp_path
) -> None:
    """The judge prefers an answer that says more than the reference, in either order; `good`
    does, `terse` only wins where it is shown first."""

    def verdict(body: dict[str, Any]) -> str:
        text = body["messages"][-1]["content"]
        first = text[text.index('"model_identifier": "m"') : text.index('"model_identifier": "M"')]
        if "in detail" in first:
            return "m"
        # Without a detailed answer it picks whichever is shown first: a position bias, which
        # must not make `terse` right (it is only right when preferred in both orders).
        return "M" if "in detail" in text else "m"

    upstream.script("good", Reply("Here it is in detail."))
    upstream.script("terse", Reply("Rain."))
    upstream.script("judge", Reply(text=verdict))
    data = tmp_path / "open.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": i, "prompt": f"Describe weather {i}.", "reference": "Weather."})
            + "\n"
            for i in range(40)
        )
    )
    tuned = run(upstream, tmp_path, ("good", "terse"), data=data, judge="fake:judge")
    best = tuned.found.baselines["best member"]
    assert best.config.members[0].model == "fake:good"
    assert tuned.found.heldout["best member"].accuracy == 1.0
    alone = {s.config.label: s.accuracy for s in tuned.found.scores if s.config.calls == 1}
    assert alone == {"fake:good alone (T=0)": 1.0, "fake:terse alone (T=0)": 0.0}
    judged = requests_by_model(upstream)["judge"]
    assert judged == 2 * 2 * 40  # both orders, for each distinct answer (here one a candidate)


def test_open_ended_prompts_without_a_judge_get_one_line(world, tmp_path) -> None:
    data = tmp_path / "open.jsonl"
    data.write_text('{"prompt": "Describe rain.", "reference": "Rain falls."}\n' * 3)
    with pytest.raises(InputError, match="a `reference` answer and --judge MODEL"):
        run(world, tmp_path, ("strong",), data=data)


def test_batch_api_draws_the_samples_as_jobs_and_the_writers_reuse_them(world, tmp_path) -> None:
    world.script("agg", Reply("Combining them. Answer: 0"))
    fake = {"base_url": world.base_url, "batch_api": True}
    tuned = run(
        world,
        tmp_path,
        ("strong", "weak"),
        data=write_data(tmp_path / "d.jsonl", 40),
        aggregators=("fake:agg",),
        leaders=1,
        batch_api=True,
        poll_s=0.01,
        providers={"fake": fake},
    )
    jobs = world.batches.jobs_for("strong")
    assert sum(len(j.lines) for j in jobs) == 40 * 6
    assert requests_by_model(world, proposals_only=True) == {}  # no sample was drawn real-time
    assert tuned.found.calls_after_sampling > 0  # the writers ran, on the jobs' answers
    assert len(tuned.found.dev) + len(tuned.found.held) == 40
    assert all(len(d) == 6 for p in tuned.found.dev for d in p.draws.values())
