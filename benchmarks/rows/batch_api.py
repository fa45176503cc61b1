"""Row 13 — real-time vs Batch API: a 4 + 1 MoA over PROMPTS prompts on the fake upstream, the
same recipe and prices both ways, the provider declaring a 50 % batch discount.

Both runs are `moa batch` as a user types it, a child process of this checkout, against
`moa.testing.FakeUpstream` in this process:

* real-time: `moa batch IN -o OUT -r RECIPE -c 32 --no-cache`, every model answering after a
  fixed LATENCY_S (the answer whole, no token pacing);
* Batch API: the same command with `--batch-api --poll-every 0.05`, the fake's jobs ending at
  their first look (`delay_s = 0`): what is left of the wall time is moa's own (writing and
  uploading the files, creating, polling and reading the jobs, the engine), not a provider's
  turnaround, which is hours on a real one; the rounds of jobs are what multiply that.

Cost is summed from the output's traces (`cost_usd` of every call), so it is the price moa
reports, real-time at the recipe's price, Batch API at the discounted one. Token counts are
compared too: the ratio means something only if both runs sent and got the same tokens.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RowResult
from moa.testing import FakeUpstream, Reply
from moa.testing.latency import Fixed, Profile

PROPOSERS = ["p0", "p1", "p2", "p3"]
LATENCY_S = 0.2
CONCURRENCY = 32
PRICE = "price = { input = 2.50, output = 10.00 }"
PROPOSAL = " ".join(["proposal"] * 60)
ANSWER = " ".join(["answer"] * 80)

RECIPE = """\
name = "batch-bench"
[retry]
max_attempts = 1
[[layers]]
models = [{models}]
[aggregator]
model = "fake:agg"
{price}
[providers.fake]
base_url = "{base_url}"
max_concurrency = 256
batch_api = {{ discount = 0.5 }}
"""


def moa_child_env() -> dict[str, str]:
    """This checkout's moa for a child process, with no provider key of the caller's."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["PYTHONPATH"] = os.pathsep.join((str(root / "src"), str(root)))
    return env


def _moa(*args: str) -> dict[str, float]:
    """Run `moa ARGS` to its end: wall and CPU (user + system) seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "moa.cli.app", *args],
        env=moa_child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"moa {' '.join(args)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def _totals(out: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    calls = [c for r in rows for c in r["trace"]["calls"]]
    return {
        "answered": len({r["id"] for r in rows}),
        "lines": len(rows),
        "cost_usd": sum(c["cost_usd"] for c in calls),
        "input_tokens": sum(c["input_tokens"] for c in calls),
        "output_tokens": sum(c["output_tokens"] for c in calls),
        "calls_failed": sum(c["status"] != "ok" for c in calls),
        "jobs_in_output": len({j for r in rows for j in r.get("batch_api", {}).get("jobs", [])}),
    }


def _script(up: FakeUpstream, latency: bool) -> None:
    up.reset()
    for model in PROPOSERS:
        up.script(model, Reply(PROPOSAL))
    up.script("agg", Reply(ANSWER))
    if latency:
        up.latency(None, Profile(ttft=Fixed(LATENCY_S)))


def run(quick: bool = False) -> RowResult:
    prompts = 40 if quick else 1000
    row = RowResult("13", f"real-time vs Batch API: 4 + 1 MoA, {prompts} prompts, 50 % discount")
    row.params.update(
        prompts=prompts,
        latency_s=LATENCY_S,
        concurrency=CONCURRENCY,
        price="2.50 in / 10.00 out USD per M tokens, every model",
    )
    with tempfile.TemporaryDirectory() as tmp, FakeUpstream() as up:
        work = Path(tmp)
        source = work / "in.jsonl"
        source.write_text(
            "".join(json.dumps({"id": i, "prompt": f"question {i}"}) + "\n" for i in range(prompts))
        )
        models = ", ".join(f'{{ model = "fake:{m}", {PRICE} }}' for m in PROPOSERS)
        recipe = work / "recipe.toml"
        recipe.write_text(RECIPE.format(models=models, price=PRICE, base_url=up.base_url))
        common = ("batch", str(source), "-r", str(recipe), "-q")

        _script(up, latency=True)
        realtime = _moa(*common, "-o", str(work / "rt.jsonl"), "-c", str(CONCURRENCY), "--no-cache")
        realtime |= _totals(work / "rt.jsonl")
        realtime["upstream_calls"] = len(up.calls)

        _script(up, latency=False)
        batch = _moa(*common, "-o", str(work / "ba.jsonl"), "--batch-api", "--poll-every", "0.05")
        batch |= _totals(work / "ba.jsonl")
        batch["realtime_calls"] = len(up.calls)
        batch["jobs"] = len(up.batches.jobs)
        batch["requests_in_jobs"] = sum(len(j.lines) for j in up.batches.jobs.values())
        state = json.loads((work / "ba.jsonl.batch.json").read_text())
        batch["rounds"] = len({j["layer"] for j in state["jobs"]})
    row.raw.update(realtime=realtime, batch_api=batch)

    row.add("Batch API / real-time cost", batch["cost_usd"] / realtime["cost_usd"], goal="<= 0.5")
    row.add("real-time cost", realtime["cost_usd"], "USD")
    row.add("Batch API cost", batch["cost_usd"], "USD")
    same = (batch["input_tokens"], batch["output_tokens"]) == (
        realtime["input_tokens"],
        realtime["output_tokens"],
    )
    row.add("same tokens both ways (1 = yes)", int(same))
    row.add("Batch API jobs", batch["jobs"])
    row.add("Batch API rounds of jobs", batch["rounds"])
    row.add("Batch API requests in jobs", batch["requests_in_jobs"])
    row.add("Batch API real-time calls", batch["realtime_calls"], goal="<= 0")
    row.add("real-time upstream calls", realtime["upstream_calls"])
    row.add(f"real-time wall (-c {CONCURRENCY}, {LATENCY_S:g} s a call)", realtime["wall_s"], "s")
    ideal = prompts / CONCURRENCY * 2 * LATENCY_S
    row.add("real-time wall / latency floor", realtime["wall_s"] / ideal)
    row.add("Batch API wall, jobs ending at once (moa's own)", batch["wall_s"], "s")
    row.add("moa CPU, real-time", realtime["cpu_s"], "s")
    row.add("moa CPU, Batch API", batch["cpu_s"], "s")
    row.add("prompts answered, real-time", realtime["answered"], goal=f">= {prompts}")
    row.add("prompts answered, Batch API", batch["answered"], goal=f">= {prompts}")
    row.notes.append(
        f"answered {realtime['answered']} / {batch['answered']} of {prompts}; output lines "
        f"{realtime['lines']} / {batch['lines']}; failed calls "
        f"{realtime['calls_failed']} / {batch['calls_failed']}"
    )
    row.notes.append(f"latency floor = prompts / concurrency x 2 x latency = {ideal:.1f} s")
    return row
