"""Row 8 — start-up: how long `moa` takes before it does anything, beside a bare `python`.

Each command runs in a fresh process, `runs` times, the commands taking turns so that all see
the same machine load; medians. Wall time is from just before the process is spawned to its
exit. `moa ask` is timed to the arrival of its first request at `moa.testing.FakeUpstream`
(in this process; both ends read `time.monotonic()`), on a recipe whose provider is that
upstream: the time a remote recipe costs before the network; `import openai` alone is timed
beside it, since the OpenAI-compatible adapter imports the SDK before that request. CPU (user + system, from the
children's rusage) is reported beside the wall medians: on a shared machine it moves less.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import RowResult, median
from moa.testing import FakeUpstream

MOA = [sys.executable, "-c", "from moa.cli.app import main; main()"]  # what the `moa` script runs
COMMANDS: dict[str, list[str]] = {
    "bare python": [sys.executable, "-c", "pass"],
    "import moa": [sys.executable, "-c", "import moa"],
    "moa --help": [*MOA, "--help"],
    "moa recipes": [*MOA, "recipes"],
    # Not moa: the SDK that the remote adapter imports before its first request, for scale.
    "import openai": [sys.executable, "-c", "import openai"],
}
ASK = "moa ask"
GOAL_S = {"moa --help": 0.3, "moa recipes": 0.3, ASK: 0.5}  # added over bare python / from spawn

RECIPE = """\
name = "startup-bench"
[retry]
max_attempts = 1
[[layers]]
models = ["fake:a", "fake:b"]
[aggregator]
model = "fake:agg"
[providers.fake]
base_url = "{base_url}"
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], first_request: Callable[[], float | None] | None = None) -> dict:
    cpu0, started = _children_cpu(), time.monotonic()
    done = subprocess.run(command, capture_output=True, timeout=60)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    sample = {"wall": wall, "cpu": _children_cpu() - cpu0}
    if first_request is not None:
        arrived = first_request()
        sample["first_request"] = None if arrived is None else arrived - started
    return sample


def _measure(runs: int, recipe: Path, up: FakeUpstream) -> dict[str, list[dict]]:
    ask = [*MOA, "ask", "-q", "-r", str(recipe), "What is the capital of France?"]

    def first_arrival() -> float | None:
        return min((c.arrived for c in up.calls), default=None)

    samples: dict[str, list[dict]] = {name: [] for name in [*COMMANDS, ASK]}
    for command in COMMANDS.values():  # warm-up: the OS file cache, .pyc files
        _timed(command)
    for _ in range(runs):
        for name, command in COMMANDS.items():
            samples[name].append(_timed(command))
        up.reset()
        samples[ASK].append(_timed(ask, first_arrival))
    return samples


def run(quick: bool = False) -> RowResult:
    runs = 2 if quick else 10
    row = RowResult("8", "start-up: fresh processes beside a bare python (median of runs)")
    row.params = {"runs": runs, "python": sys.executable, "commands": {**COMMANDS}}
    with FakeUpstream() as up, tempfile.TemporaryDirectory() as scratch:
        recipe = Path(scratch) / "recipe.toml"
        recipe.write_text(RECIPE.format(base_url=up.base_url), encoding="utf-8")
        row.params["ask"] = f"moa ask -q -r RECIPE 'What is …' ({RECIPE.count('fake:')} models)"
        samples = _measure(runs, recipe, up)
    row.raw = samples
    bare = {k: median([s[k] for s in samples["bare python"]]) for k in ("wall", "cpu")}
    for name in COMMANDS:
        wall = median([s["wall"] for s in samples[name]])
        cpu = median([s["cpu"] for s in samples[name]])
        row.add(f"{name}: wall", wall, "s")
        row.add(f"{name}: CPU", cpu, "s")
        if name != "bare python":
            goal = GOAL_S.get(name)
            added = wall - bare["wall"]
            row.add(f"{name}: added over bare python", added, "s", goal and f"<= {goal}")
            row.add(f"{name}: CPU added over bare python", cpu - bare["cpu"], "s")
    firsts = [s["first_request"] for s in samples[ASK] if s["first_request"] is not None]
    first = median(firsts) if firsts else None
    row.add("moa ask: first upstream request after spawn", first, "s", f"<= {GOAL_S[ASK]}")
    row.add("moa ask: wall (zero-latency upstream)", median([s["wall"] for s in samples[ASK]]), "s")
    row.add("moa ask: CPU", median([s["cpu"] for s in samples[ASK]]), "s")
    row.notes.append(
        "`moa …` runs `from moa.cli.app import main; main()`, as the installed `moa` script "
        "does; every process is fresh, with warm OS file caches and compiled .pyc files."
    )
    return row
