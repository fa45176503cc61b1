"""Row 7 — `moa serve` with the layers streamed as `reasoning_content` vs without (issue 11).

One `moa serve` child with a MoA recipe (one layer of three proposers, then the aggregator), on
`benchmarks.rawserver` paced like row 4 (TTFT_MS, then TOKENS word chunks TOKEN_MS apart). The
same clients send the same streamed requests with `"moa_layers": "reasoning"` and without, the
two alternating round by round so both see the same machine; requests/s is completed requests
over the phase's wall time, the median over rounds. Goal (issue 11): within 10% of requests/s.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.common import RowResult, median, percentile, raw_upstream
from benchmarks.rows import server as row4

TTFT_MS, TOKENS, TOKEN_MS = row4.TTFT_MS, row4.TOKENS, row4.TOKEN_MS
RECIPE = """\
name = "layered"
timeout_s = 60
[retry]
max_attempts = 1
[[layers]]
models = ["fake:p1", "fake:p2", "fake:p3"]
[aggregator]
model = "fake:agg"
[providers.fake]
base_url = "{base_url}"
max_concurrency = 1024
"""
MODES = {"off": {}, "reasoning": {"moa_layers": "reasoning"}}


@dataclass
class Phase:
    ttlb: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)  # first chunk of any kind after the role
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0


async def _one(client: httpx.AsyncClient, url: str, mode: str, phase: Phase | None) -> None:
    body = {
        "model": "layered",
        "messages": [{"role": "user", "content": row4.PROMPT}],
        "stream": True,
        **MODES[mode],
    }
    started, first, words, thoughts = time.perf_counter(), None, 0, 0
    try:
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                delta = (json.loads(line[6:]).get("choices") or [{}])[0].get("delta") or {}
                words += bool(delta.get("content"))
                thoughts += bool(delta.get("reasoning_content"))
                if first is None and (delta.get("content") or delta.get("reasoning_content")):
                    first = time.perf_counter()
    except Exception as error:  # recorded: one bad request must not end the row
        if phase is not None:
            phase.errors.append(f"{type(error).__name__}: {error}"[:300])
        return
    if phase is None:
        return
    if words != TOKENS or (mode == "reasoning") != (thoughts > 0) or first is None:
        phase.errors.append(f"{mode}: {words} content and {thoughts} reasoning chunks")
        return
    phase.ttfb.append(first - started)
    phase.ttlb.append(time.perf_counter() - started)


async def _phase(
    client: httpx.AsyncClient, url: str, mode: str, clients: int, per: int, pid: int
) -> Phase:
    phase = Phase()
    await asyncio.gather(*(_one(client, url, mode, None) for _ in range(clients)))  # warm-up

    async def loop() -> None:
        for _ in range(per):
            await _one(client, url, mode, phase)

    cpu0, t0 = row4._cpu_s(pid), time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(loop() for _ in range(clients))), 600)
    phase.wall_s = time.perf_counter() - t0
    phase.server_cpu_s = row4._cpu_s(pid) - cpu0
    return phase


async def _measure(
    url: str, pid: int, levels: list[int], per: int, rounds: int
) -> dict[str, list[Phase]]:
    results: dict[str, list[Phase]] = {}
    for clients in levels:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:
            for r in range(rounds):
                for mode in list(MODES)[r % 2 :] + list(MODES)[: r % 2]:
                    print(f"  row 7: {clients} clients, round {r + 1}, {mode}", file=sys.stderr)
                    phase = await _phase(client, url, mode, clients, per, pid)
                    results.setdefault(f"{clients}:{mode}", []).append(phase)
    return results


def run(quick: bool = False) -> RowResult:
    levels = [4] if quick else [16, 64]
    per, rounds = (2, 2) if quick else (4, 6)
    row = RowResult("7", "server: moa serve with the layers as reasoning_content vs without")
    row.params = {
        "clients": levels,
        "requests_per_client": per,
        "rounds_per_mode": rounds,
        "recipe": "1 layer x 3 proposers + aggregator, all on the paced rawserver",
        "upstream": f"TTFT {TTFT_MS:g} ms, {TOKENS} tokens {TOKEN_MS:g} ms apart",
    }
    with (
        ExitStack() as stack,
        raw_upstream(
            "--ttft-ms", str(TTFT_MS), "--tokens", str(TOKENS), "--token-ms", str(TOKEN_MS)
        ) as up,
    ):
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moa-row7-")))
        recipe = workdir / "layered.toml"
        recipe.write_text(RECIPE.format(base_url=up.base_url), encoding="utf-8")
        port, server = row4.moa_serve_child(recipe, workdir)
        process = stack.enter_context(server)
        url = f"http://127.0.0.1:{port}"
        results = asyncio.run(_measure(url, process.pid, levels, per, rounds))
    for clients in levels:
        rps, cpu = {}, {}
        for mode in MODES:
            phases = results[f"{clients}:{mode}"]
            errors = [e for p in phases for e in p.errors]
            ttlb = [x for p in phases for x in p.ttlb]
            ttfb = [x for p in phases for x in p.ttfb]
            row.raw[f"{clients}:{mode}"] = {
                "rps_per_round": [len(p.ttlb) / p.wall_s for p in phases],
                "ttlb_s": ttlb,
                "ttfb_s": ttfb,
                "errors": errors[:20],
            }
            rps[mode] = median([len(p.ttlb) / p.wall_s for p in phases])
            cpu[mode] = median([p.server_cpu_s / len(p.ttlb) for p in phases if p.ttlb])
            row.raw[f"{clients}:{mode}"]["server_cpu_s"] = [p.server_cpu_s for p in phases]
            row.add(f"{clients} clients, layers {mode}: requests/s", rps[mode], "/s")
            row.add(
                f"{clients} clients, layers {mode}: server CPU per request", 1000 * cpu[mode], "ms"
            )
            if ttlb:
                row.add(
                    f"{clients} clients, layers {mode}: TTLB p50", 1000 * percentile(ttlb, 50), "ms"
                )
                row.add(
                    f"{clients} clients, layers {mode}: first text p50",
                    1000 * percentile(ttfb, 50),
                    "ms",
                )
            row.add(f"{clients} clients, layers {mode}: failed requests", len(errors))
        row.add(
            f"{clients} clients: requests/s on / off", rps["reasoning"] / rps["off"], "", ">= 0.9"
        )
    return row
