"""Start-up stays light: `import moa` and `moa --help` load none of the heavy dependencies,
each of which is imported where it is first used. (How long start-up takes is measured by the
benchmark suite's row 8, never asserted here.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import moa

# The SDK of remote providers, the server's stack, the embedded model, the chart, a shared
# cache's client, tracing (OpenTelemetry), and what a command loads once it runs: the recipe
# schema (pydantic) and the response cache (sqlite3).
HEAVY = (
    "openai",
    "httpx",
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "llama_cpp",
    "matplotlib",
    "redis",
    "mcp",
    "opentelemetry",
    "pydantic",
    "sqlite3",
)


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    report = "import json, sys; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_import_moa_loads_no_heavy_dependency() -> None:
    modules = modules_after("import moa")
    assert heavy_in(modules) == []
    assert "moa.engine.mixture" not in modules


def test_moa_help_loads_no_heavy_dependency() -> None:
    help_then_stay = (
        "from moa.cli.app import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    )
    modules = modules_after(help_then_stay)
    assert "typer" in modules  # the command line was built, the help printed
    assert heavy_in(modules) == []


def test_a_command_loads_what_it_uses() -> None:
    """The other side of laziness: running a command still finds everything it needs."""
    done = subprocess.run(
        [sys.executable, "-m", "moa", "recipes", "show", "local"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "[aggregator]" in done.stdout


@pytest.mark.parametrize("name", moa.__all__)
def test_every_public_name_resolves_to_its_definition(name: str) -> None:
    value = getattr(moa, name)
    assert value is not None
    assert name in dir(moa)
    defined_in = getattr(value, "__module__", None)
    if defined_in is not None and defined_in.startswith("moa."):
        assert getattr(sys.modules[defined_in], name, value) is value


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        moa.no_such_thing  # noqa: B018
    assert not hasattr(moa, "no_such_thing")
