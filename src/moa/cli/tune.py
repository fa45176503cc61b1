"""`moa tune DATA.jsonl -m MODEL … -o RECIPE.toml`: which mixture beats your best model on your
own data, or that none does (docs/evaluation/tune.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from moa.cli.common import (
    CacheOpt,
    ConcurrencyOpt,
    MaxTokensOpt,
    QuietOpt,
    console_for,
    report,
    stderr,
    stdout,
)
from moa.cli.guard import run_guarded, warn

_ModelOpt = Annotated[
    list[str],
    typer.Option("--model", "-m", help="A candidate MODEL (provider:model); repeat for more."),
]
_AggregatorsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--aggregator", "-a", help="A writing aggregator MODEL to try on the leading panels."
    ),
]


def tune(
    data: Annotated[Path, typer.Argument(metavar="DATA.jsonl", help="question/prompt + answers")],
    models: _ModelOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="The recipe TOML to write.")],
    aggregators: _AggregatorsOpt = None,
    report_path: Annotated[
        Path | None, typer.Option("--report", help="A Markdown report (and its chart, .png).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    samples: Annotated[
        int, typer.Option("--samples", "-k", min=1, help="Samples per model and prompt.")
    ] = 5,
    temperature: Annotated[float, typer.Option(help="The samples' temperature.")] = 0.7,
    holdout: Annotated[
        float, typer.Option(help="Share of the prompts held out to check the winner on.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    max_calls: Annotated[
        int | None,
        typer.Option("--max-calls", min=0, help="Cap on every call after the sampling pass."),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="USD; a sampling pass whose worst case passes it is refused."),
    ] = None,
    max_tokens: MaxTokensOpt = None,
    system: Annotated[
        str | None, typer.Option(help="System prompt of every candidate (e.g. step by step).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help='TOML: [providers.NAME] tables as in a recipe, and [models."provider:model"] '
            "tables of a candidate's own keys (system, examples, stop, max_tokens, price…).",
        ),
    ] = None,
    cache: CacheOpt = None,
    concurrency: ConcurrencyOpt = 4,
    quiet: QuietOpt = False,
) -> None:
    """Sample every candidate once, score every picking configuration from those samples,
    try the writing aggregators on the leading panels, and check the winner against the best
    member on held-out prompts. Rerun the same command to resume."""

    async def main() -> None:
        import tomllib

        from moa.errors import ConfigError
        from moa.evaluation.tune import Settings, atune_to

        tables: dict[str, Any] = {}
        if config is not None:
            try:
                tables = tomllib.loads(config.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"--config {config}: {exc}") from None
        settings = Settings(
            data,
            tuple(models),
            tuple(aggregators or ()),
            samples=samples,
            temperature=temperature,
            holdout=holdout,
            seed=seed,
            max_tokens=max_tokens,
            system=system,
            max_calls=max_calls,
            budget=budget,
            concurrency=concurrency,
            providers=tables.get("providers", {}),
            specs=tables.get("models", {}),
        )
        tuned = await atune_to(
            settings,
            output,
            report_path=report_path,
            cache=Path(cache) if cache else None,
            console=console_for(quiet),
        )
        report(tuned.found.sampling, "sampling pass")
        for note in tuned.found.notes:
            if note.startswith(("only ", "no candidate")):
                warn(note)
        for model, why in tuned.found.skipped.items():
            warn(f"{model} gave no sample and was left out: {why}")
        if as_json:
            stdout().print_json(json.dumps(tuned.summary()))
        else:
            stdout().print(tuned.headline)
        where = f" and {tuned.report}" if tuned.report else ""
        stderr().print(f"wrote {tuned.recipe}{where}")

    run_guarded(main)
