"""`moa` — ask (the default verb), chat, recipes, providers, serve, web, mcp, batch, eval.

Errors become exit codes here and nowhere else: 2 for usage or configuration (ConfigError),
1 for a run that failed (RunError), 3 for a degraded run refused (on_degraded = "fail"),
130 for Ctrl-C.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from moa.cli.batch import batch, batch_cancel, batch_merge
from moa.cli.common import (
    MaxTokensOpt,
    ProposerOpt,
    RedisOpt,
    RedisOptionalOpt,
    TemperatureOpt,
    TopPOpt,
)
from moa.cli.evaluate import eval_app
from moa.cli.exposure import NoAuthOpt
from moa.cli.guard import fail as _fail
from moa.cli.guard import run_guarded, warn
from moa.cli.mcp import mcp
from moa.cli.providers import providers
from moa.cli.queue import queue_app, worker
from moa.cli.tune import tune
from moa.cli.web import web

if TYPE_CHECKING:
    from rich.console import Console

    from moa.cli.render import Progress
    from moa.engine.mixture import MoA
    from moa.errors import RunError
    from moa.recipes.schema import Recipe
    from moa.types import Answering, Sampling

# Only typer is imported up front: `moa --help` must start in a blink, so each command imports
# what it needs (recipes and pydantic, the engine, rich, the server) when it runs.

app = typer.Typer(
    help="Mixture-of-Agents: several LLMs propose, an aggregator answers. Offline by default. "
    "Every command is traced (OpenTelemetry) when OTEL_EXPORTER_OTLP_ENDPOINT or "
    "OTEL_TRACES_EXPORTER is set, or with --otel; --no-otel turns it off.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
recipes_app = typer.Typer(
    help="List the built-in recipes, or show one as TOML.", invoke_without_command=True
)
app.add_typer(recipes_app, name="recipes")


@cache
def _consoles() -> tuple[Console, Console]:
    """stdout (the answer) and stderr (progress, errors)."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True), Console(stderr=True, highlight=False)


RecipeOpt = Annotated[
    str, typer.Option("--recipe", "-r", help="Built-in recipe name or path to a .toml file.")
]
AggregatorOpt = Annotated[str | None, typer.Option("--aggregator", "-a", help="Aggregator MODEL.")]
LayersOpt = Annotated[
    int | None,
    typer.Option(help="Layers as the reference counts them: N-1 proposal layers + aggregator."),
]
TimeoutOpt = Annotated[float | None, typer.Option(help="Per-call timeout in seconds.")]
MaxCostOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        help="Refuse a run (in chat: a turn) that could cost more than USD (worst case: every "
        "call writes max_tokens); overrides the recipe's max_cost_usd.",
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Each call's line also says what computed it (threads)."),
]
SchemaOpt = Annotated[
    str | None, typer.Option(help="A JSON schema (inline, or a file) the answer must follow.")
]
ToolsOpt = Annotated[
    Path | None, typer.Option(help="A JSON file of OpenAI tool specs; the calls print as JSON.")
]


def load_recipe(
    recipe: str,
    *,
    proposers: list[str] | None,
    aggregator: str | None,
    layers: int | None,
    timeout: float | None,
    max_cost: float | None = None,
) -> Recipe:
    from moa import recipes
    from moa.cli.options import apply_overrides
    from moa.errors import ConfigError

    loaded = apply_overrides(
        recipes.load(recipe), proposers=proposers, aggregator=aggregator, layers=layers
    )
    if timeout is not None:
        if timeout <= 0:
            raise ConfigError("--timeout must be positive")
        loaded = loaded.model_copy(update={"timeout_s": timeout})
    if max_cost is not None:
        if max_cost <= 0:
            raise ConfigError("--max-cost must be a positive amount of USD")
        loaded = loaded.model_copy(update={"max_cost_usd": max_cost})
    return loaded


def _read_prompt(prompt: str) -> str:
    return sys.stdin.read() if prompt == "-" else prompt


def failed_run(exc: RunError) -> dict[str, Any]:
    """A failed run as `--json` prints it: the calls made so far (none for `run_failed`), and
    the error, typed as moa.failures' table says."""
    from moa.failures import classify
    from moa.trace import Result

    kind = classify(exc).json or "run_failed"
    partial: Result = getattr(exc, "result", Result()) if kind != "run_failed" else Result()
    return {**partial.to_dict(), "error": {"type": kind, "message": str(exc)}}


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="The prompt, or - to read it from stdin.")],
    recipe: RecipeOpt = "local",
    proposer: ProposerOpt = None,
    aggregator: AggregatorOpt = None,
    layers: LayersOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokensOpt = None,
    timeout: TimeoutOpt = None,
    max_cost: MaxCostOpt = None,
    show_proposals: Annotated[
        bool, typer.Option("--show-proposals", help="Print each proposal on stderr.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result and its trace as JSON instead.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    verbose: VerboseOpt = False,
    schema: SchemaOpt = None,
    tools: ToolsOpt = None,
) -> None:
    """Answer PROMPT with a Mixture-of-Agents; the answer streams to stdout."""

    async def main() -> None:
        from moa import recipes
        from moa.cli.options import answering_options
        from moa.cli.render import Progress
        from moa.errors import InputError
        from moa.types import Sampling

        out, err = _consoles()
        text = _read_prompt(prompt)
        if not text.strip():  # a usage error before anything is loaded
            raise InputError("the prompt is empty — pass some text, or '-' to read it from stdin")
        loaded = load_recipe(
            recipe,
            proposers=proposer,
            aggregator=aggregator,
            layers=layers,
            timeout=timeout,
            max_cost=max_cost,
        )
        sampling = Sampling(temperature=temperature, max_tokens=max_tokens, top_p=top_p)
        answering = answering_options(schema, tools)
        mixture = recipes.build(loaded)
        try:
            if as_json:
                await _ask_json(mixture, loaded.name, text, sampling, answering)
            else:
                show = Progress(
                    out, err, show_proposals=show_proposals, quiet=quiet, verbose=verbose
                )
                await _ask_streaming(mixture, show, text, sampling, answering)
        finally:
            await mixture.aclose()

    run_guarded(main)


async def _ask_json(
    mixture: MoA, name: str, text: str, sampling: Sampling, answering: Answering
) -> None:
    from moa.errors import RunError

    out, _ = _consoles()
    try:
        result = await mixture.arun(text, sampling=sampling, answering=answering)
    except RunError as exc:
        # What the run did before failing is the evidence: print it, then fail.
        out.print_json(data={"recipe": name, **failed_run(exc)})
        raise
    out.print_json(data={"recipe": name, **result.to_dict()})


async def _ask_streaming(
    mixture: MoA, show: Progress, text: str, sampling: Sampling, answering: Answering
) -> None:
    from moa.events import Done

    out, _ = _consoles()
    # Progress shows proposals once they have finished: their words as they come are not needed.
    events = mixture.stream(text, sampling=sampling, answering=answering, proposal_deltas=False)
    async for event in events:
        show(event)
        if isinstance(event, Done) and event.result.tool_calls:
            out.print_json(data=event.result.tool_calls)


@app.command()
def chat(
    recipe: RecipeOpt = "local",
    proposer: ProposerOpt = None,
    aggregator: AggregatorOpt = None,
    layers: LayersOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    max_tokens: MaxTokensOpt = None,
    timeout: TimeoutOpt = None,
    max_cost: MaxCostOpt = None,
    system: Annotated[
        str | None, typer.Option(help="A system prompt for the conversation.")
    ] = None,
    show_proposals: Annotated[bool, typer.Option("--show-proposals")] = False,
) -> None:
    """Multi-turn conversation; every turn is a full MoA run over the history."""
    import asyncio

    from moa import recipes
    from moa.cli.chat import chat_loop
    from moa.cli.render import Progress
    from moa.errors import ConfigError
    from moa.types import Sampling

    out, err = _consoles()

    def build() -> MoA:
        loaded = load_recipe(
            recipe,
            proposers=proposer,
            aggregator=aggregator,
            layers=layers,
            timeout=timeout,
            max_cost=max_cost,
        )
        return recipes.build(loaded)

    try:
        mixture = build()
    except ConfigError as exc:
        raise _fail(2, str(exc)) from None
    # One event loop for the whole session: its connections are reused from turn to turn.
    with asyncio.Runner() as runner:
        try:
            chat_loop(
                mixture,
                sampling=Sampling(temperature=temperature, max_tokens=max_tokens, top_p=top_p),
                system=system,
                progress=Progress(out, err, show_proposals=show_proposals, quiet=False),
                console=err,
                run_guarded=functools.partial(run_guarded, runner=runner),
            )
        finally:
            runner.run(mixture.aclose())


_ServeRecipeOpt = Annotated[
    list[str] | None,
    typer.Option("--recipe", "-r", help="Recipe to serve as a model (repeatable; default: local)."),
]
_ApiKeyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--api-key",
        help="Accept this bearer key (repeatable); also MOA_API_KEYS, comma-separated. "
        "Needed to listen beyond loopback (or --no-auth).",
    ),
]
_CorsOriginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cors-origin",
        help="Let browser apps on this origin call the API (repeatable; * for any).",
    ),
]


@app.command()
def serve(
    recipe: _ServeRecipeOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: _ApiKeyOpt = None,
    max_concurrent_runs: Annotated[
        int, typer.Option(help="MoA runs at once per process; more are refused with 429.")
    ] = 16,
    max_body_bytes: Annotated[
        int, typer.Option(help="Largest request body accepted (413 beyond).")
    ] = 2 * 1024 * 1024,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    graceful_timeout: Annotated[
        int, typer.Option(help="Seconds in-flight runs get to finish on shutdown.")
    ] = 30,
    cors_origin: _CorsOriginOpt = None,
    no_ui: Annotated[
        bool, typer.Option("--no-ui", help="Do not serve the web playground at /.")
    ] = False,
    redis: RedisOpt = None,
    redis_optional: RedisOptionalOpt = False,
    no_auth: NoAuthOpt = False,
) -> None:
    """Serve recipes as models on an OpenAI-compatible API (POST /v1/chat/completions)."""
    from moa.cli.exposure import check_exposure
    from moa.errors import ConfigError, MissingExtraError

    try:
        from moa.server import serve as run_server
        from moa.server.security import parse_keys
    except ModuleNotFoundError as exc:
        if exc.name not in ("fastapi", "starlette", "uvicorn", "prometheus_client"):
            raise
        raise _fail(2, str(MissingExtraError("the server", "server"))) from None
    keys = [*(api_key or []), *parse_keys(os.environ.get("MOA_API_KEYS"))]
    try:
        if (warning := check_exposure("moa serve", host, keys, no_auth=no_auth)) is not None:
            warn(warning)
        run_server(
            recipe or ["local"],
            host=host,
            port=port,
            api_keys=keys,
            max_concurrent_runs=max_concurrent_runs,
            max_body_bytes=max_body_bytes,
            workers=workers,
            graceful_timeout_s=graceful_timeout,
            cors_origins=cors_origin or [],
            ui=not no_ui,
            redis_url=redis,
            redis_optional=redis_optional,
        )
    except ConfigError as exc:
        raise _fail(2, str(exc)) from None


@recipes_app.callback()
def recipes_list(ctx: typer.Context) -> None:
    """List the built-in recipes."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from moa import recipes

    table = Table("recipe", "layers", "aggregator", "description", box=None)
    for name in recipes.builtin_names():
        recipe = recipes.load(name)
        proposal_layers = sum(layer.repeat for layer in recipe.layers)
        table.add_row(
            name,
            str(proposal_layers + 1),
            recipe.aggregator.model,
            recipe.description.split(". ")[0].rstrip(".") + ".",
        )
    Console().print(table)


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="A built-in recipe name.")]) -> None:
    """Print a built-in recipe as TOML (copy it to start your own)."""
    from moa import recipes
    from moa.errors import ConfigError

    try:
        sys.stdout.write(recipes.builtin_text(name))
    except ConfigError as exc:
        raise _fail(2, str(exc)) from None


app.command()(providers)
app.command()(batch)
app.command()(tune)
app.command()(web)
app.command()(mcp)
app.command("batch-merge", hidden=True)(batch_merge)  # `moa batch merge`, see main()
app.command("batch-cancel", hidden=True)(batch_cancel)  # `moa batch cancel`
app.add_typer(eval_app, name="eval")
app.command()(worker)
app.add_typer(queue_app, name="queue")


def _commands() -> set[str]:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return names | {g.name or "" for g in app.registered_groups}


def _tracing_choice(args: list[str]) -> bool | None:
    """`--otel` / `--no-otel`, wherever they stand before `--` (taken out of `args`): they
    belong to every verb. The last one wins; None when neither is given."""
    choice = None
    end = args.index("--") if "--" in args else len(args)
    for flag in [a for a in args[:end] if a in ("--otel", "--no-otel")]:
        choice = flag == "--otel"
        args.remove(flag)
    return choice


def _start_tracing(choice: bool | None, args: list[str]) -> Callable[[], None] | None:
    """Tracing for this command (moa.telemetry.setup), when OTEL_* asks or `--otel` does;
    help never loads it. Returns what ends it."""
    if choice is not None:
        from moa.telemetry.setup import CHOICE

        os.environ[CHOICE] = "1" if choice else "0"  # the processes a command starts too
    if not (choice or any(k.startswith("OTEL_") for k in os.environ)):
        return None
    if not args or {"--help", "-h"} & set(args):
        return None
    from moa.telemetry.setup import start

    tracing = start(choice)
    return None if tracing is None else tracing.shutdown


def main(argv: list[str] | None = None) -> None:
    """Entry point; `moa "PROMPT"` is short for `moa ask "PROMPT"`."""
    args = list(sys.argv[1:] if argv is None else argv)
    stop_tracing = _start_tracing(_tracing_choice(args), args)
    try:
        _main(args)
    finally:
        if stop_tracing is not None:
            stop_tracing()


def _main(args: list[str]) -> None:
    if args[:2] in (["batch", "merge"], ["batch", "cancel"]):
        args[:2] = [f"batch-{args[1]}"]  # a subcommand of a command that takes an argument
    # Only the first word can name a verb: `moa` has no options of its own, so in
    # `moa -q -r serve "hi"` everything, `serve` (a recipe) included, belongs to `ask`.
    if args and args[0] not in _commands() and args[0] not in ("--help", "-h"):
        args.insert(0, "ask")
    app(args=args, prog_name="moa")


if __name__ == "__main__":  # pragma: no cover
    main()
