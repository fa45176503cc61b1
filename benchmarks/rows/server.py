"""Row 4 — server: `moa serve` with a passthrough recipe vs the upstream called directly, and
LiteLLM's proxy on the same upstream as the peer, under 64 and 256 concurrent streaming clients.

Layout, one process each so that no two share an event loop:

* upstream: `benchmarks.rawserver` paced as a streaming model (TTFT_MS to the first token, then
  TOKENS word chunks TOKEN_MS apart);
* `moa serve` (`python -m moa.cli.app serve`) with a passthrough recipe: an aggregator only, no
  proposal layers, the provider's concurrency cap raised to 512 (a hosted provider's default is
  16, which would queue the clients in moa's limiter) and `--max-concurrent-runs 512` (so no run
  is refused with 429);
* LiteLLM's proxy (`litellm --config`, one uvicorn worker, a master key), when its executable is
  found: `$LITELLM_BIN`, else /tmp/litellm-venv/bin/litellm, else `litellm` on PATH; it is an
  optional peer, never a dependency of moa;
* the load generator: this process. Each of C clients sends streamed chat completions one after
  another through one shared `httpx.AsyncClient` (C connections) and reads the SSE lines; the
  same code against each target. It times the first content token (TTFT) and the last byte
  (`data: [DONE]`, TTLB).

The targets alternate round by round at each concurrency so that all see the same machine.
"Added" latency is a target's percentile minus the direct call's percentile at the same
concurrency. Server CPU per request is read from /proc for the server process (utime + stime).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import RowResult, median, percentile, raw_upstream

# A short but model-like stream: 0.5 s to the first token, then 20 tokens at 50/s (~0.9 s).
TTFT_MS = 500.0
TOKENS = 20
TOKEN_MS = 20.0
MASTER_KEY = "sk-bench-0123456789abcdef0123456789abcdef"
DEFAULT_LITELLM = "/tmp/litellm-venv/bin/litellm"
START_TIMEOUT_S = 120.0
PROMPT = "What is the capital of France?"

PASSTHROUGH_RECIPE = """\
name = "passthrough"
description = "Aggregator only: every request is one streamed upstream call (benchmark row 4)."
timeout_s = 60

[retry]
max_attempts = 1

[aggregator]
model = "fake:m"

[providers.fake]
base_url = "{base_url}"
max_concurrency = 512
"""

LITELLM_CONFIG = """\
model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      api_base: {base_url}
      api_key: dummy
general_settings:
  master_key: {master_key}
"""


def litellm_executable() -> str | None:
    """`$LITELLM_BIN` ("none" to skip the peer), else /tmp/litellm-venv, else PATH."""
    chosen = os.environ.get("LITELLM_BIN", "").strip()
    if chosen.lower() in ("none", "off", "0"):
        return None
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    if os.access(DEFAULT_LITELLM, os.X_OK):
        return DEFAULT_LITELLM
    return shutil.which("litellm")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _litellm_version(executable: str) -> str | None:
    """From the dist-info beside the executable's venv (importing litellm takes seconds)."""
    venv = Path(executable).resolve().parent.parent
    found = sorted(venv.glob("lib/python*/site-packages/litellm-*.dist-info"))
    return found[-1].name.removeprefix("litellm-").removesuffix(".dist-info") if found else None


@dataclass
class Target:
    name: str
    base_url: str  # ends in /v1
    model: str
    pid: int | None = None  # the server process, for its CPU time

    def cpu_s(self) -> float | None:
        return _cpu_s(self.pid) if self.pid is not None else None


@contextmanager
def _server(
    name: str, argv: list[str], health_url: str, log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server child, wait until `health_url` answers 200, stop it on the way out."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {process.returncode} on start:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {health_url} in {START_TIMEOUT_S} s")
            try:
                with urllib.request.urlopen(health_url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.25)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _moa_server(upstream_url: str, workdir: Path) -> Any:
    recipe = workdir / "passthrough.toml"
    recipe.write_text(PASSTHROUGH_RECIPE.format(base_url=upstream_url), encoding="utf-8")
    return moa_serve_child(recipe, workdir)


def moa_serve_child(recipe: Path, workdir: Path) -> Any:
    """(port, context manager running `moa serve -r recipe` as a child of this checkout)."""
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "moa.cli.app",
        "serve",
        "-r",
        str(recipe),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-concurrent-runs",
        "512",
    ]
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[2]  # this checkout's moa, not another install
    # A PYTHONPATH given wins: `benchmarks.compare` points it at the other version's src/.
    paths = [env.get("PYTHONPATH", ""), str(root / "src"), str(root)]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return port, _server(
        "moa serve", argv, f"http://127.0.0.1:{port}/healthz", workdir / "moa.log", env
    )


def _litellm_server(executable: str, upstream_url: str, workdir: Path) -> Any:
    config = workdir / "litellm.yaml"
    config.write_text(
        LITELLM_CONFIG.format(base_url=upstream_url, master_key=MASTER_KEY), encoding="utf-8"
    )
    port = _free_port()
    argv = [executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1"]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # its own venv, not ours
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # offline: no fetch of the price list
    return port, _server(
        "litellm",
        argv,
        f"http://127.0.0.1:{port}/health/liveliness",
        workdir / "litellm.log",
        env,
    )


@dataclass
class Phase:
    """One target at one concurrency: every request's TTFT and TTLB (seconds)."""

    ttft: list[float] = field(default_factory=list)
    ttlb: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None

    @property
    def done(self) -> int:
        return len(self.ttlb)


async def _one(client: httpx.AsyncClient, target: Target, phase: Phase | None) -> None:
    body = {
        "model": target.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    started = time.perf_counter()
    first: float | None = None
    words = 0
    try:
        async with client.stream(
            "POST", f"{target.base_url}/chat/completions", json=body, headers=headers
        ) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break
                chunk = json.loads(line[6:])
                choices = chunk.get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    words += 1
                    if first is None:
                        first = time.perf_counter()
        ended = time.perf_counter()
    except Exception as error:  # recorded, not raised: one bad request must not end the row
        if phase is not None:
            phase.errors.append(f"{type(error).__name__}: {error}"[:300])
        return
    if phase is None:
        return
    if first is None or words != TOKENS:
        phase.errors.append(f"expected {TOKENS} content chunks, got {words}")
        return
    phase.ttft.append(first - started)
    phase.ttlb.append(ended - started)


async def _phase(
    client: httpx.AsyncClient, target: Target, clients: int, per_client: int, max_s: float
) -> Phase:
    """`clients` loops of `per_client` requests each, no new request after `max_s`."""
    phase = Phase()
    await asyncio.gather(*(_one(client, target, None) for _ in range(clients)))  # warm-up
    stop_at = time.monotonic() + max_s

    async def loop() -> None:
        for _ in range(per_client):
            if time.monotonic() > stop_at:
                return
            await _one(client, target, phase)

    cpu0, server0, t0 = time.process_time(), target.cpu_s(), time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(loop() for _ in range(clients))), max_s + 60)
    phase.wall_s = time.perf_counter() - t0
    phase.client_cpu_s = time.process_time() - cpu0
    server1 = target.cpu_s()
    if server0 is not None and server1 is not None:
        phase.server_cpu_s = server1 - server0
    return phase


async def _measure(
    targets: list[Target], levels: list[int], per_client: dict[int, int], rounds: int, max_s: float
) -> dict[int, dict[str, list[Phase]]]:
    results: dict[int, dict[str, list[Phase]]] = {}
    for clients in levels:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        timeout = httpx.Timeout(60.0, pool=60.0)
        results[clients] = {t.name: [] for t in targets}
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            for r in range(rounds):
                order = targets[r % len(targets) :] + targets[: r % len(targets)]
                for target in order:
                    print(
                        f"  row 4: {clients} clients, round {r + 1}, {target.name}", file=sys.stderr
                    )
                    phase = await _phase(client, target, clients, per_client[clients], max_s)
                    results[clients][target.name].append(phase)
    return results


def _summarise(row: RowResult, results: dict[int, dict[str, list[Phase]]]) -> None:
    for clients, by_target in results.items():
        stats: dict[str, dict[str, float]] = {}
        for name, phases in by_target.items():
            ttft = [x for p in phases for x in p.ttft]
            ttlb = [x for p in phases for x in p.ttlb]
            errors = [e for p in phases for e in p.errors]
            done = sum(p.done for p in phases)
            row.raw[f"{clients}:{name}"] = {
                "ttft_s": ttft,
                "ttlb_s": ttlb,
                "errors": errors[:20],
                "error_count": len(errors),
                "rps_per_round": [p.done / p.wall_s for p in phases if p.wall_s > 0],
                "client_cpu_s": [p.client_cpu_s for p in phases],
                "server_cpu_s": [p.server_cpu_s for p in phases],
                "done_per_round": [p.done for p in phases],
            }
            if not ttlb:
                row.notes.append(f"{clients} clients, {name}: no request succeeded: {errors[:3]}")
                continue
            server_cpu = [p.server_cpu_s / p.done for p in phases if p.server_cpu_s and p.done]
            stats[name] = {
                "rps": median([p.done / p.wall_s for p in phases if p.wall_s > 0]),
                "ttlb50": percentile(ttlb, 50),
                "ttlb99": percentile(ttlb, 99),
                "ttft50": percentile(ttft, 50),
                "ttft99": percentile(ttft, 99),
                "errors": len(errors),
                "done": done,
                "cpu": median(server_cpu) if server_cpu else float("nan"),
            }
        direct = stats.get("direct")
        for name, s in stats.items():
            prefix = f"{clients} clients, {name}"
            row.add(f"{prefix}: requests/s", s["rps"], "/s")
            row.add(f"{prefix}: TTLB p50", 1000 * s["ttlb50"], "ms")
            row.add(f"{prefix}: TTLB p99", 1000 * s["ttlb99"], "ms")
            if direct is not None and name != "direct":
                goal = "<= 5" if name == "moa" and clients >= 64 else None
                row.add(
                    f"{prefix}: added TTLB p50", 1000 * (s["ttlb50"] - direct["ttlb50"]), "ms", goal
                )
                row.add(f"{prefix}: added TTLB p99", 1000 * (s["ttlb99"] - direct["ttlb99"]), "ms")
                row.add(f"{prefix}: added TTFT p50", 1000 * (s["ttft50"] - direct["ttft50"]), "ms")
                row.add(f"{prefix}: added TTFT p99", 1000 * (s["ttft99"] - direct["ttft99"]), "ms")
                row.add(f"{prefix}: server CPU per request", 1000 * s["cpu"], "ms")
            row.add(f"{prefix}: failed requests", int(s["errors"]))
        moa, peer = stats.get("moa"), stats.get("litellm")
        if moa is not None and peer is not None:
            row.add(
                f"{clients} clients: moa / LiteLLM requests/s", moa["rps"] / peer["rps"], "", ">= 1"
            )
            row.add(
                f"{clients} clients: LiteLLM / moa TTLB p50",
                peer["ttlb50"] / moa["ttlb50"],
                "",
                ">= 1",
            )


def run(quick: bool = False) -> RowResult:
    # 1 client: the unloaded cost of one request; 64 and 256: the loads.
    levels = [4] if quick else [1, 64, 256]
    per_client = {1: 5, 4: 2, 64: 4, 256: 3}
    rounds = 1 if quick else 3
    max_s = 20.0 if quick else 60.0
    row = RowResult("4", "server: moa serve (passthrough) vs direct vs LiteLLM, streaming")
    litellm = litellm_executable()
    row.params = {
        "clients": levels,
        "requests_per_client": {c: per_client[c] for c in levels},
        "rounds": rounds,
        "max_seconds_per_phase": max_s,
        "upstream": f"benchmarks.rawserver child: TTFT {TTFT_MS:g} ms, {TOKENS} tokens "
        f"{TOKEN_MS:g} ms apart",
        "moa": "python -m moa.cli.app serve, passthrough recipe (aggregator only), "
        "[providers.fake] max_concurrency = 512, --max-concurrent-runs 512",
        "litellm": litellm or "not found (skipped)",
        "client": "httpx.AsyncClient streaming in the benchmark process, one per concurrency",
    }
    if litellm is None:
        row.notes.append(
            "LiteLLM not measured: no executable ($LITELLM_BIN, /tmp/litellm-venv/bin/litellm, "
            "or `litellm` on PATH)"
        )
    shape = ["--ttft-ms", str(TTFT_MS), "--tokens", str(TOKENS), "--token-ms", str(TOKEN_MS)]
    with ExitStack() as stack, raw_upstream(*shape) as up:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moa-row4-")))
        targets = [Target("direct", up.base_url, "m")]
        port, moa_server = _moa_server(up.base_url, workdir)
        moa_process = stack.enter_context(moa_server)
        targets.append(Target("moa", f"http://127.0.0.1:{port}/v1", "passthrough", moa_process.pid))
        if litellm is not None:
            try:
                port, peer_server = _litellm_server(litellm, up.base_url, workdir)
                peer_process = stack.enter_context(peer_server)
                targets.append(
                    Target("litellm", f"http://127.0.0.1:{port}/v1", "m", peer_process.pid)
                )
                row.params["litellm_version"] = _litellm_version(litellm)
            except (RuntimeError, OSError, subprocess.SubprocessError) as error:
                row.notes.append(f"LiteLLM not measured: {error}"[:2000])
        results = asyncio.run(_measure(targets, levels, per_client, rounds, max_s))
    _summarise(row, results)
    return row
