"""Row 3 — engine overhead: CPU time per upstream call against a zero-latency upstream.

The upstream is `benchmarks.rawserver`, a bare asyncio HTTP server in its own process, so its
CPU is not counted here (`time.process_time()` is this process's CPU only). One MoA run is one
proposal layer of 4 plus a streamed aggregator: 5 calls. Beside it, the same 5 calls made
directly with the `openai` SDK (4 gathered `create`, 1 streamed), the floor that any engine
built on the SDK pays; the difference is what moa itself adds. And beneath that, the same 5
calls as bare `httpx` POSTs with JSON parsed by hand (the stream read line by line): the floor of
any Python client on this HTTP stack, SDK or not.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai

from benchmarks.common import RowResult, build_moa, fake_registry, median, raw_upstream

PROPOSERS = ["p0", "p1", "p2", "p3"]
CALLS_PER_RUN = len(PROPOSERS) + 1


async def _sdk_run(client: openai.AsyncOpenAI, prompt: str) -> str:
    async def one(model: str) -> str:
        r = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}]
        )
        return r.choices[0].message.content or ""

    answers = await asyncio.gather(*(one(m) for m in PROPOSERS))
    stream = await client.chat.completions.create(
        model="agg",
        messages=[
            {"role": "system", "content": "\n".join(answers)},
            {"role": "user", "content": prompt},
        ],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return "".join(parts)


async def _httpx_run(client: httpx.AsyncClient, prompt: str) -> str:
    async def one(model: str) -> str:
        r = await client.post(
            "/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": prompt}]},
        )
        return str(r.json()["choices"][0]["message"]["content"])

    answers = await asyncio.gather(*(one(m) for m in PROPOSERS))
    body = {
        "model": "agg",
        "messages": [
            {"role": "system", "content": "\n".join(answers)},
            {"role": "user", "content": prompt},
        ],
        "stream": True,
    }
    parts = []
    async with client.stream("POST", "/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:])["choices"]
                if choices:
                    parts.append(choices[0]["delta"].get("content") or "")
    return "".join(parts)


async def _measure(base_url: str, runs: int, batches: int) -> dict[str, list[float]]:
    moa = build_moa(fake_registry(base_url), [PROPOSERS], "agg")
    client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    bare = httpx.AsyncClient(base_url=base_url)
    prompt = "What is the capital of France?"

    async def moa_batch() -> None:
        for _ in range(runs):
            await moa.arun(prompt)

    async def sdk_batch() -> None:
        for _ in range(runs):
            await _sdk_run(client, prompt)

    async def httpx_batch() -> None:
        for _ in range(runs):
            await _httpx_run(bare, prompt)

    await moa_batch()  # warm-up: connections, imports, caches
    await sdk_batch()
    await httpx_batch()
    cpu: dict[str, list[float]] = {"moa": [], "sdk": [], "httpx": []}
    wall: dict[str, list[float]] = {"moa": [], "sdk": [], "httpx": []}
    batches_by_name = (("moa", moa_batch), ("sdk", sdk_batch), ("httpx", httpx_batch))
    for _ in range(batches):  # alternate, so all see the same machine load
        for name, batch in batches_by_name:
            c0, w0 = time.process_time(), time.perf_counter()
            await batch()
            cpu[name].append((time.process_time() - c0) / runs)
            wall[name].append((time.perf_counter() - w0) / runs)
    await moa.aclose()
    await client.close()
    await bare.aclose()
    return {
        "cpu_moa": cpu["moa"],
        "cpu_sdk": cpu["sdk"],
        "cpu_httpx": cpu["httpx"],
        "wall_moa": wall["moa"],
        "wall_sdk": wall["sdk"],
    }


def run(quick: bool = False) -> RowResult:
    runs, batches = (20, 2) if quick else (100, 7)
    row = RowResult("3", "engine overhead (CPU per call, zero-latency upstream)")
    row.params = {
        "runs_per_batch": runs,
        "batches": batches,
        "run_shape": "1 layer x 4 proposers + streamed aggregator = 5 calls",
        "upstream": "benchmarks.rawserver in a child process (its CPU not counted)",
    }
    with raw_upstream() as up:
        cpu0 = up.cpu_s()
        m = asyncio.run(_measure(up.base_url, runs, batches))
        upstream_cpu = up.cpu_s() - cpu0
    per_call = median(m["cpu_moa"]) / CALLS_PER_RUN
    sdk_call = median(m["cpu_sdk"]) / CALLS_PER_RUN
    row.raw = m
    row.add("moa CPU per call", 1000 * per_call, "ms", "<= 1")
    row.add("moa CPU per MoA run (5 calls)", 1000 * median(m["cpu_moa"]), "ms")
    row.add("openai SDK alone, CPU per call", 1000 * sdk_call, "ms")
    row.add("moa added over the SDK, per call", 1000 * (per_call - sdk_call), "ms")
    row.add("moa wall per run (zero latency)", 1000 * median(m["wall_moa"]), "ms")
    row.add("SDK wall per run (zero latency)", 1000 * median(m["wall_sdk"]), "ms")
    row.add(
        "bare httpx, CPU per call (the HTTP floor)",
        1000 * median(m["cpu_httpx"]) / CALLS_PER_RUN,
        "ms",
    )
    total_calls = 3 * CALLS_PER_RUN * runs * (batches + 1)
    row.add("upstream CPU per call (other process)", 1000 * upstream_cpu / total_calls, "ms")
    return row
