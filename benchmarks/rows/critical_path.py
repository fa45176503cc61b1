"""Row 1 — critical-path efficiency: MoA wall time / the ideal critical path.

Every proposer has a known, fixed latency; the aggregator a known time to first token and a
token rate. The ideal run is the slowest proposer of each layer, then the aggregator. The same
workload is run three ways, alternating, against one fake upstream: our engine, the reference
notebook/`advanced-moa.py` style (gathered proposers, synchronous streaming aggregator), and the
reference eval-script style (proposers one after another). The gap between a layer's last
answer and the next layer's first request comes from the upstream's call log.

Layers are counted as the reference does: "4 x 3" is two proposal layers of 4, then the
aggregator; "8 x 2" is one proposal layer of 8, then the aggregator. Each layer's proposers have
their own model names (L1p0, L2p0, ...) only so the upstream can tell the layers apart.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import openai

from benchmarks.common import RowResult, build_moa, fake_registry, median
from benchmarks.reference import eval_script_moa, notebook_moa
from moa.testing import FakeUpstream, Fixed, Profile, Reply

AGG_TTFT_S = 0.10
AGG_TOKENS = 20
AGG_TOKENS_PER_S = 400.0
AGG_TEXT = " ".join(f"tok{i}" for i in range(AGG_TOKENS))


def _proposer_latency(index: int) -> float:
    return 0.12 + 0.03 * index  # 120 ms, 150 ms, 180 ms, ...


def _shape(n: int, layers: int) -> tuple[list[list[str]], float]:
    """Model names per proposal layer and the ideal critical path in seconds."""
    names = [[f"L{layer}p{i}" for i in range(n)] for layer in range(1, layers)]
    ideal = (layers - 1) * _proposer_latency(n - 1) + AGG_TTFT_S + AGG_TOKENS / AGG_TOKENS_PER_S
    return names, ideal


def _gaps(up: FakeUpstream, names: list[list[str]], since: float) -> list[float]:
    """Per layer boundary: next stage's first request minus this layer's last answer."""
    calls = [c for c in up.calls if c.arrived >= since]
    stages = [set(layer) for layer in names] + [{"agg"}]
    gaps = []
    for here, after in itertools.pairwise(stages):
        last = max(c.finished or c.arrived for c in calls if c.model in here)
        first = min(c.arrived for c in calls if c.model in after)
        gaps.append(first - last)
    return gaps


async def _timed(up: FakeUpstream, names: list[list[str]], run: Callable[[], Awaitable[object]]):
    await asyncio.sleep(0.05)  # let the previous run's connections settle
    started = time.monotonic()
    await run()
    wall = time.monotonic() - started
    return wall, _gaps(up, names, started)


async def _measure(up: FakeUpstream, n: int, layers: int, reps: int) -> dict[str, object]:
    names, ideal = _shape(n, layers)
    up.reset()
    for layer in names:
        for i, model in enumerate(layer):
            up.latency(model, Profile(ttft=Fixed(_proposer_latency(i))))
    up.latency("agg", Profile(ttft=Fixed(AGG_TTFT_S), tokens_per_s=AGG_TOKENS_PER_S))
    up.script("agg", Reply(AGG_TEXT))
    registry = fake_registry(up.base_url)
    moa = build_moa(registry, names, "agg")
    client = openai.AsyncOpenAI(base_url=up.base_url, api_key="x", max_retries=0)
    sync_client = openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0)
    prompt = "What is the meaning of life?"

    async def ours() -> object:
        return await moa.arun(prompt)

    async def notebook() -> object:
        return await notebook_moa(client, sync_client, names, "agg", prompt)

    async def evalscript() -> object:
        return await asyncio.to_thread(eval_script_moa, sync_client, names, "agg", prompt)

    styles = {"moa": ours, "reference notebook": notebook, "reference eval script": evalscript}
    walls: dict[str, list[float]] = {k: [] for k in styles}
    gaps: dict[str, list[float]] = {k: [] for k in styles}
    for _ in range(1):  # warm-up: connections, imports, first-call costs
        for run in styles.values():
            await _timed(up, names, run)
    for _ in range(reps):
        for style, run in styles.items():
            wall, g = await _timed(up, names, run)
            walls[style].append(wall)
            gaps[style].extend(g)
    await moa.aclose()
    await client.close()
    sync_client.close()
    return {
        "ideal_s": ideal,
        "wall_s": walls,
        "gaps_s": gaps,
        "ratio": {k: median(v) / ideal for k, v in walls.items()},
        "gap_median_ms": {k: 1000 * median(v) for k, v in gaps.items()},
        "gap_max_ms": {k: 1000 * max(v) for k, v in gaps.items()},
    }


def run(quick: bool = False) -> RowResult:
    reps = 2 if quick else 7
    row = RowResult("1", "critical-path efficiency (wall / ideal; gap between layers)")
    row.params = {
        "reps": reps,
        "proposer_latency_s": "0.12 + 0.03 x index (fixed)",
        "aggregator": f"TTFT {AGG_TTFT_S}s + {AGG_TOKENS} tokens at {AGG_TOKENS_PER_S:g}/s",
        "upstream": "FakeUpstream (uvicorn in a thread of this process)",
    }
    with FakeUpstream() as up:
        for n, layers in ((4, 3), (8, 2)):
            m = asyncio.run(_measure(up, n, layers, reps))
            shape = f"{n}x{layers}"
            row.raw[shape] = m
            ratio, gap_med, gap_max = m["ratio"], m["gap_median_ms"], m["gap_max_ms"]
            assert isinstance(ratio, dict) and isinstance(gap_med, dict)
            assert isinstance(gap_max, dict)
            row.add(f"{shape} ideal", m["ideal_s"], "s")  # type: ignore[arg-type]
            row.add(f"{shape} moa ratio", ratio["moa"], "", "<= 1.02")
            row.add(f"{shape} moa gap p50", gap_med["moa"], "ms", "<= 10")
            row.add(f"{shape} moa gap max", gap_max["moa"], "ms")
            row.add(f"{shape} reference notebook ratio", ratio["reference notebook"])
            row.add(f"{shape} reference notebook gap p50", gap_med["reference notebook"], "ms")
            row.add(f"{shape} reference eval-script ratio", ratio["reference eval script"])
    row.notes.append(
        "ratio = median wall time / ideal critical path; gap = next stage's first request "
        "arrival - previous layer's last answer, from the upstream's call log (same clock)."
    )
    return row
