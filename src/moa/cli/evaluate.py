"""`moa eval {alpaca-eval, mt-bench, quick}`.

Work files sit beside the requested output so that rerunning the same command resumes:
answers and verdicts already on disk are not asked for again.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from moa.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    DataDirOpt,
    LimitOpt,
    NoCacheOpt,
    QuietOpt,
    RecipeOpt,
    RedisOpt,
    RedisOptionalOpt,
    check_failures,
    console_for,
    report,
    slug,
    stderr,
    stdout,
)
from moa.cli.guard import run_guarded
from moa.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from rich.table import Table

    from moa.batch.items import BatchStats
    from moa.engine.mixture import MoA
    from moa.evaluation.compare import Entrant, Row
    from moa.evaluation.judge import Judge
    from moa.evaluation.mtbench import Bench, Scores

# Each command imports the evaluation code when it runs: the command line is built for every
# `moa` invocation, and must not load the engine (start-up time).

eval_app = typer.Typer(
    help="Score a recipe: AlpacaEval 2, MT-Bench, or a quick offline accuracy check.",
    no_args_is_help=True,
)


@eval_app.command("alpaca-eval")
def alpaca_eval(
    recipe: RecipeOpt = "local",
    output: Annotated[
        Path, typer.Option("--output", "-o", help="AlpacaEval model_outputs.json to write.")
    ] = Path("model_outputs.json"),
    limit: LimitOpt = None,
    name: Annotated[str | None, typer.Option(help="`generator` name (default: recipe's).")] = None,
    judge: Annotated[
        str | None, typer.Option("--judge", help="Judge MODEL (provider:model) for a win rate.")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="Baseline: a recipe, or an AlpacaEval outputs .json file."),
    ] = None,
    concurrency: ConcurrencyOpt = 4,
    data: DataDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
    redis: RedisOpt = None,
    redis_optional: RedisOptionalOpt = False,
) -> None:
    """Answer the AlpacaEval 2 instructions; with --judge, a win rate against --baseline."""
    if judge and not baseline:
        raise typer.BadParameter("--judge needs --baseline (a recipe or an outputs .json)")

    async def main() -> None:
        from moa import recipes
        from moa.cli.session import open_session
        from moa.evaluation import alpaca
        from moa.evaluation.data import data_dir

        folder = data_dir(data)
        instructions = alpaca.load_instructions(folder, limit)
        loaded = recipes.load(recipe)
        base_file = Path(baseline) if baseline and baseline.endswith(".json") else None
        base_recipe = recipes.load(baseline) if baseline and base_file is None else None
        stem = output.with_suffix("")
        async with open_session(no_cache, cache, redis, redis_optional) as session:
            mixture = session.build(loaded)
            # Built now so that a missing key for the baseline or judge fails before any call.
            base = (base_recipe.name, session.build(base_recipe)) if base_recipe else None
            sources = [loaded] + ([base_recipe] if base_recipe else [])
            the_judge = session.judge(judge, sources, alpaca.JUDGE_MAX_TOKENS) if judge else None
            runs = Path(f"{stem}.runs.jsonl")
            stats = await _alpaca_answers(
                mixture, instructions, runs, loaded.name, "answers", concurrency, quiet
            )
            all_stats = [stats]
            rows = _write_model_outputs(instructions, runs, name or loaded.name, output)
            if the_judge is not None:
                all_stats += await _alpaca_win_rate(
                    the_judge, rows, instructions, folder, stem, base_file, base, concurrency, quiet
                )
            stderr().print(f"  {session.cache_note()}")
        check_failures(*all_stats)

    run_guarded(main)


async def _alpaca_win_rate(
    the_judge: Judge,
    rows: list[dict[str, Any]],
    instructions: list[dict[str, Any]],
    folder: Traversable,
    stem: Path,
    base_file: Path | None,
    base: tuple[str, MoA] | None,
    concurrency: int,
    quiet: bool,
) -> list[BatchStats]:
    """Answer as the baseline if it is a recipe, judge both orders, print the win rate."""
    from moa.evaluation import alpaca

    all_stats = []
    if base_file is not None:
        baseline, base_name = alpaca.load_outputs(base_file), base_file.stem
    else:
        assert base is not None
        base_name, base_mixture = base
        base_runs = Path(f"{stem}.baseline-{slug(base_name)}.runs.jsonl")
        all_stats.append(
            await _alpaca_answers(
                base_mixture,
                instructions,
                base_runs,
                base_name,
                "baseline answers",
                concurrency,
                quiet,
            )
        )
        baseline = alpaca.outputs_by_instruction(instructions, base_runs, base_name)
    judgments = Path(f"{stem}.judge-{slug(the_judge.model)}-vs-{slug(base_name)}.jsonl")
    stats, result = await alpaca.judge_win_rate(
        the_judge,
        alpaca.judge_template(folder),
        rows,
        baseline,
        instructions,
        judgments,
        concurrency=concurrency,
        console=console_for(quiet),
    )
    report(stats, f"verdicts ({judgments})")
    all_stats.append(stats)
    summary = {
        "generator": rows[0]["generator"],
        "baseline": base_name,
        "judge": the_judge.model,
        **result.to_dict(),
    }
    _write_json(Path(f"{stem}.winrate.json"), summary)
    _print_win_rate(summary)
    return all_stats


async def _alpaca_answers(
    mixture: MoA,
    instructions: list[dict[str, Any]],
    runs: Path,
    label: str,
    what: str,
    concurrency: int,
    quiet: bool,
) -> BatchStats:
    from moa.evaluation import alpaca

    stats = await alpaca.generate(
        mixture,
        instructions,
        runs,
        concurrency=concurrency,
        console=console_for(quiet),
        label=label,
    )
    report(stats, f"{what} ({runs})")
    return stats


def _write_model_outputs(
    instructions: list[dict[str, Any]], runs: Path, generator: str, output: Path
) -> list[dict[str, Any]]:
    from moa.evaluation import alpaca

    rows = alpaca.model_outputs(instructions, runs, generator)
    _write_json(output, rows)
    stderr().print(
        f"wrote {len(rows)} outputs to {output} (generator {rows[0]['generator']!r})"
        if rows
        else f"wrote no outputs to {output}"
    )
    return rows


def _write_json(path: Path, value: Any) -> None:
    from moa.batch.jsonl import write_json_atomic

    write_json_atomic(path, value)


def _print_win_rate(s: dict[str, Any]) -> None:
    from rich.table import Table

    def pct(value: float | None, spec: str = ".1f") -> str:
        return "–" if value is None else format(value, spec)

    table = Table(box=None, show_header=False)
    rate, se = pct(s["win_rate"]), pct(s["standard_error"])
    table.add_row("win rate", f"[bold]{rate}%[/bold] ± {se} (SE)")
    table.add_row("vs", f"{s['baseline']} · judged by {s['judge']}, both orders")
    table.add_row("pairs", f"{s['pairs']} ({s['wins']} won, {s['losses']} lost, {s['ties']} split)")
    table.add_row("unparsable", f"{s['unparsable']} verdicts; {s['unjudged']} pairs unjudged")
    first = "–" if s["first_position_rate"] is None else f"{s['first_position_rate']:.0%}"
    table.add_row("first shown won", f"{first} of verdicts (position bias)")
    table.add_row(
        "avg length",
        f"{pct(s['avg_length'], '.0f')} chars (baseline {pct(s['baseline_avg_length'], '.0f')})",
    )
    stdout().print(table)


@eval_app.command("mt-bench")
def mt_bench(
    recipe: Annotated[
        list[str], typer.Option("--recipe", "-r", help="Recipe (repeat to compare several).")
    ],
    judge: Annotated[str, typer.Option("--judge", help="Judge MODEL as provider:model.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for answers, verdicts and scores.")
    ] = Path("mt_bench"),
    chart: Annotated[
        Path | None, typer.Option(help="PNG chart (default OUTPUT/mt_bench.png).")
    ] = None,
    limit: LimitOpt = None,
    concurrency: ConcurrencyOpt = 4,
    data: DataDirOpt = None,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
    redis: RedisOpt = None,
    redis_optional: RedisOptionalOpt = False,
) -> None:
    """Both turns of the MT-Bench questions, graded 1-10 by --judge; scores and a chart."""

    async def main() -> None:
        from moa import recipes
        from moa.cli.session import open_session
        from moa.evaluation import mtbench
        from moa.evaluation.data import data_dir

        bench = mtbench.load(data_dir(data), limit)
        loaded = [recipes.load(r) for r in recipe]
        names = [r.name for r in loaded]
        if len(set(names)) != len(names):
            raise ConfigError("two recipes share a name; give each recipe file its own `name`")
        scores: dict[str, Scores] = {}
        all_stats = []
        async with open_session(no_cache, cache, redis, redis_optional) as session:
            the_judge = session.judge(judge, loaded, mtbench.JUDGE_MAX_TOKENS)
            mixtures = [session.build(r) for r in loaded]  # every key checked before any call
            for spec, mixture in zip(loaded, mixtures, strict=True):
                stats, scores[spec.name] = await _mt_bench_recipe(
                    mixture, spec.name, the_judge, bench, output, concurrency, quiet
                )
                all_stats += stats
            stderr().print(f"  {session.cache_note()}")
        mtbench.write_scores(output / "scores.json", scores, judge=judge)
        png = chart or output / "mt_bench.png"
        mtbench.chart(scores, png, judge=judge)
        _print_scores(scores)
        stderr().print(f"scores in {output / 'scores.json'}, chart in {png}")
        check_failures(*all_stats)

    run_guarded(main)


async def _mt_bench_recipe(
    mixture: MoA,
    name: str,
    the_judge: Judge,
    bench: Bench,
    output: Path,
    concurrency: int,
    quiet: bool,
) -> tuple[list[BatchStats], Scores]:
    """Answer both turns with one recipe, then grade them (each step resumable)."""
    from moa.evaluation import mtbench

    runs = output / f"{slug(name)}.answers.jsonl"
    stats = await mtbench.generate(
        mixture, bench, runs, concurrency=concurrency, console=console_for(quiet), label=name
    )
    report(stats, f"answers ({runs})")
    judgments = output / f"{slug(name)}.judge-{slug(the_judge.model)}.jsonl"
    graded, scores = await mtbench.grade(
        the_judge, bench, runs, judgments, concurrency=concurrency, console=console_for(quiet)
    )
    report(graded, f"grades ({judgments})")
    return [stats, graded], scores


def _print_scores(scores: dict[str, Scores]) -> None:
    from rich.table import Table

    from moa.evaluation import mtbench

    table = Table("category", *scores, box=None)
    for category in mtbench.CATEGORIES:
        if any(category in s.by_category for s in scores.values()):
            table.add_row(category, *(_num(s.by_category.get(category)) for s in scores.values()))
    table.add_row("turn 1", *(_num(s.by_turn.get(1)) for s in scores.values()))
    table.add_row("turn 2", *(_num(s.by_turn.get(2)) for s in scores.values()))
    table.add_row("[bold]overall", *(f"[bold]{_num(s.overall)}" for s in scores.values()))
    table.add_row("unparsable", *(str(s.unparsable) for s in scores.values()))
    stdout().print(table)


def _num(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}"


@eval_app.command("quick")
def quick_eval(
    data: Annotated[Path, typer.Option("--data", help="JSONL of `question` + `answers`.")],
    recipe: Annotated[
        list[str] | None,
        typer.Option("--recipe", "-r", help="Recipe (repeat to compare several; default local)."),
    ] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option(help="Run each recipe once per aggregator strategy (repeatable)."),
    ] = None,
    deceptive: Annotated[
        bool, typer.Option("--deceptive", help="Also run each with one proposer lying.")
    ] = False,
    limit: LimitOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder to keep (and resume) the runs in."),
    ] = None,
    concurrency: ConcurrencyOpt = 1,
    no_cache: NoCacheOpt = False,
    cache: CacheOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    quiet: QuietOpt = False,
    redis: RedisOpt = None,
    redis_optional: RedisOptionalOpt = False,
) -> None:
    """Accuracy, cost and paired difference to the first proposer alone at T=0, per recipe."""

    async def main() -> None:
        from moa.cli.session import open_session
        from moa.evaluation import compare, quick

        items = quick.load(data)[:limit]
        chosen = _entrants(recipe or ["local"], strategy or (), deceptive)
        with tempfile.TemporaryDirectory() as scratch:
            async with open_session(no_cache, cache, redis, redis_optional) as session:
                rows, stats = await compare.run(
                    chosen,
                    items,
                    runs=output or Path(scratch),
                    registry=session.registry,
                    cache=session.cache,
                    concurrency=concurrency,
                    console=console_for(quiet),
                )
                for entrant, one in zip(chosen, stats, strict=True):
                    report(one, entrant.name)
        if as_json:
            print(json.dumps({"scores": [r.to_dict() for r in rows]}, indent=2))
        else:
            stdout().print(_quick_table(rows))
        check_failures(*stats)

    run_guarded(main)


def _entrants(recipe: list[str], strategy: Sequence[str], deceptive: bool) -> list[Entrant]:
    from moa import recipes
    from moa.evaluation import compare

    try:
        return compare.entrants(
            [recipes.load(r) for r in recipe], strategy, with_deceiver=deceptive
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _quick_table(rows: list[Row]) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from moa.evaluation import quick

    table = Table(
        "",
        "correct",
        "accuracy (95% CI)",
        "vs baseline (95% CI)",
        "McNemar p",
        "calls/q",
        "tokens/q",
        "s/q",
        box=None,
    )
    for r in rows:
        a, d = r.accuracy, r.vs_baseline
        whole = r.system == quick.MIXTURE
        name = r.entrant if whole else f"  {r.system}"
        versus = (
            "–"
            if d is None
            else (f"{d.difference * 100:+.1f} ({d.low * 100:+.1f}, {d.high * 100:+.1f}) pts")
        )
        table.add_row(
            f"[bold]{escape(name)}" if whole else escape(name),
            f"{a.correct}/{a.n}",
            f"{a.accuracy:.0%} ({a.low:.0%}–{a.high:.0%})",
            versus,
            "–" if d is None else f"{d.p_value:.3f}",
            *((f"{r.calls:.1f}", f"{r.tokens:.0f}", f"{r.seconds:.2f}") if whole else ("",) * 3),
        )
    return table
