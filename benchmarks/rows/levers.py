"""Row 11 — the other latency levers of issue 12 on a 3-layer recipe: early stopping on
agreement (`stop_when = "agree"`), and staircase on the intermediate layers too (a layer > 1
starting on the partial answers of the layer before; a measurement prototype, not in the engine).

Simulated upstream: 3 layers of PROPOSERS proposers and an aggregator. Every call answers after
PREFILL_S (its time to first token) and then writes at TOKENS_PER_S: proposers PROPOSAL_TOKENS,
the aggregator ANSWER_TOKENS; every model continues a final assistant message. Calls and input
tokens are counted on the requests the upstream received (moa.tokens's estimate).

Part A (stop_when): with every proposer writing the same answer ("agree") or its own
("disagree"), strategies synthesize and vote, stop_when off and on (on every layer), and the
staircase aggregator with stop_when on. Part B (intermediate layers): wait-for-all, staircase on
the last layer (the engine), and staircase on every layer (`_staircase_layer` below: each
proposer of layers 2 and 3 is a staircase over the layer before, continuing its own answer).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from benchmarks.common import RowResult, median
from moa import Aggregator, MoA, ProposalLayer, ProviderConfig, Registry, RetryPolicy
from moa.call.agent import Agent
from moa.engine.layer import run_layer
from moa.engine.staircase import Partials, Staircase
from moa.engine.staircase_rules import Spacing
from moa.events import Done, Event, ProposalDelta, ProposalFailed, ProposalFinished, Token
from moa.providers.base import Capabilities
from moa.strategies import Stage
from moa.strategies.agreement import agreement
from moa.testing import FakeUpstream, Reply, continuing
from moa.tokens import messages_tokens
from moa.trace import AggregatorStep, CallRecord, Result
from moa.types import Message, Sampling

LAYERS = 3
PROPOSERS = 4
PROPOSAL_TOKENS = 400
ANSWER_TOKENS = 300
TOKENS_PER_S = 40.0
PREFILL_S = 0.3
CHUNK_TOKENS = 64
PROMPT = "Explain the staircase."


def _text(name: str, tokens: int) -> str:
    return " ".join(f"{name}{i}" for i in range(tokens))


def _names(layer: int) -> list[str]:
    return [f"l{layer}p{i}" for i in range(PROPOSERS)]


def _script(up: FakeUpstream, agree: bool, scale: float) -> None:
    pace = 1.0 / TOKENS_PER_S
    for layer in range(1, LAYERS + 1):
        for name in _names(layer):
            text = _text("same" if agree else name, int(PROPOSAL_TOKENS * scale))
            up.script(name, Reply(continuing(text), delay_s=PREFILL_S, token_delay_s=pace))
    answer = _text("a", int(ANSWER_TOKENS * scale))
    up.script("agg", Reply(continuing(answer), delay_s=PREFILL_S, token_delay_s=pace))


def _registry(up: FakeUpstream) -> Registry:
    continues = Capabilities(continuation="assistant")
    return Registry({"fake": ProviderConfig("fake", up.base_url, capabilities=continues)})


def _moa(
    registry: Registry, strategy: str, stop: bool, staircase: bool = False, layers: int = LAYERS
) -> MoA:
    return MoA(
        *(
            ProposalLayer(
                *(f"fake:{n}" for n in _names(layer)), stop_when="agree" if stop else None
            )
            for layer in range(1, layers + 1)
        ),
        Aggregator(
            "fake:agg",
            strategy=strategy,
            staircase=staircase,
            chunk_tokens=CHUNK_TOKENS if staircase else None,
        ),
        registry=registry,
        retry=RetryPolicy(max_attempts=1),
    )


@dataclass
class Timing:
    first: float = 0.0
    last: float = 0.0
    text: list[str] = field(default_factory=list)
    # By stage ("layer 2", …, "answer"): the share of its text written by calls that saw the
    # stage before it complete (1.0 when it waited for them).
    complete: dict[str, float] = field(default_factory=dict)

    def take(self, started: float, piece: str) -> None:
        self.first = self.first or time.perf_counter() - started
        self.text.append(piece)


def _complete_share(steps: list[AggregatorStep]) -> float:
    written = sum(s.tokens_added for s in steps)
    return sum(s.tokens_added for s in steps if s.final) / written if written else 1.0


async def _engine_run(mixture: MoA) -> Timing:
    started, timing = time.perf_counter(), Timing()
    async for event in mixture.stream(PROMPT):
        if isinstance(event, Token):
            timing.take(started, event.text)
        elif isinstance(event, Done):
            steps = [s for c in event.result.calls if c.role == "aggregator" for s in c.steps]
            timing.complete["answer"] = _complete_share(steps) if steps else 1.0
    timing.last = time.perf_counter() - started
    return timing


# -- part B's prototype: a proposal layer whose proposers are staircases over the layer before


async def _staircase_layer(
    mixture: MoA,
    number: int,
    agents: tuple[Agent, ...],
    previous: AsyncIterator[Event],
    size: int,
    stairs: list[Staircase],
) -> AsyncIterator[Event]:
    """Layer `number`'s events, each of its proposers a staircase over `previous` (`size`
    proposers): it starts on their first chunks and continues its own answer on longer ones."""
    messages = [Message(role="user", content=PROMPT)]
    out: asyncio.Queue[Event | None] = asyncio.Queue()
    for agent in agents:
        stage = Stage(
            number=number,
            messages=messages,
            proposals=[],
            aggregator=Aggregator(agent, staircase=True, chunk_tokens=CHUNK_TOKENS),
            caller=mixture.caller,
            overrides=Sampling(),
            result=Result(),
        )
        stairs.append(Staircase(stage, Spacing(CHUNK_TOKENS, 1.0), Partials.of([None] * size)))

    async def pump() -> None:
        async for event in previous:
            for stair in stairs:
                stair.inbox.put_nowait(event)
        for stair in stairs:
            stair.inbox.put_nowait(None)

    async def propose(index: int, stair: Staircase) -> None:
        model = agents[index].model
        async for event in stair.run():
            if isinstance(event, Token):
                out.put_nowait(ProposalDelta(number, index, model, event.text))
        record = CallRecord(layer=number, index=index, model=model, role="proposer")
        record.output = "".join(stair.written)
        out.put_nowait(ProposalFinished(record))

    tasks = [asyncio.create_task(pump())]
    tasks += [asyncio.create_task(propose(i, s)) for i, s in enumerate(stairs)]
    finished = 0
    try:
        while finished < len(agents):
            event = await out.get()
            assert event is not None
            finished += isinstance(event, ProposalFinished | ProposalFailed)
            yield event
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stair in stairs:
            await stair.close()


async def _every_layer_run(mixture: MoA) -> Timing:
    """Layer 1 as the engine runs it; layers 2..n and the aggregator each a staircase."""
    started, timing = time.perf_counter(), Timing()
    messages = [Message(role="user", content=PROMPT)]
    first = mixture.layers[0]
    events: AsyncIterator[Event] = run_layer(mixture.caller, 1, first, messages, [], Sampling(), [])
    stairs: dict[str, list[Staircase]] = {}
    for number, layer in enumerate(mixture.layers[1:], 2):
        stairs[f"layer {number}"] = []
        events = _staircase_layer(
            mixture, number, layer.agents, events, PROPOSERS, stairs[f"layer {number}"]
        )
    stairs["answer"] = []
    agent = (mixture.aggregator.agent,)
    answer = _staircase_layer(mixture, LAYERS + 1, agent, events, PROPOSERS, stairs["answer"])
    async with aclosing(answer):  # type: ignore[type-var]
        async for event in answer:
            if isinstance(event, ProposalDelta):
                timing.take(started, event.text)
    timing.last = time.perf_counter() - started
    for stage, staircases in stairs.items():
        shares = [_complete_share([s for r in st.records for s in r.steps]) for st in staircases]
        timing.complete[stage] = sum(shares) / len(shares)
    return timing


# -- measuring


def _counted(up: FakeUpstream, since: int) -> dict[str, int]:
    sent = up.requests[since:]
    counts = {"calls": len(sent), "input_tokens": sum(messages_tokens(b["messages"]) for b in sent)}
    for layer in range(1, LAYERS + 1):
        mine = [b for b in sent if str(b.get("model", "")).startswith(f"l{layer}")]
        counts[f"layer {layer} input_tokens"] = sum(messages_tokens(b["messages"]) for b in mine)
    agg = [b for b in sent if b.get("model") == "agg"]
    counts["aggregator input_tokens"] = sum(messages_tokens(b["messages"]) for b in agg)
    return counts


async def _measure(up: FakeUpstream, reps: int, scale: float) -> dict[str, dict[str, list]]:
    registry = _registry(up)
    mixtures = {
        (strategy, stop, stair): _moa(registry, strategy, stop, stair)
        for strategy in ("synthesize", "vote")
        for stop in (False, True)
        for stair in (False, True)
        if not (stair and strategy == "vote")
    }
    modes: dict[str, tuple[bool, MoA, bool]] = {}  # label: (agree, mixture, every layer)
    for strategy in ("synthesize", "vote"):
        for agree in (True, False):
            for stop in (False, True):
                words = f"{'agree' if agree else 'disagree'}, stop_when {'on' if stop else 'off'}"
                modes[f"A {strategy}, {words}"] = (agree, mixtures[(strategy, stop, False)], False)
    for agree in (True, False):
        words = "agree" if agree else "disagree"
        modes[f"A staircase, {words}, stop_when on"] = (
            agree,
            mixtures[("synthesize", True, True)],
            False,
        )
    modes["B wait-for-all"] = (False, mixtures[("synthesize", False, False)], False)
    modes["B staircase last layer"] = (False, mixtures[("synthesize", False, True)], False)
    modes["B staircase every layer"] = (False, mixtures[("synthesize", False, False)], True)
    one_layer = _moa(registry, "synthesize", False, staircase=True, layers=1)
    modes["B one layer, staircase"] = (False, one_layer, False)
    out: dict[str, dict[str, list]] = {label: {} for label in modes}
    for _ in range(reps):
        for label, (agree, mixture, every) in modes.items():
            _script(up, agree, scale)
            since = len(up.requests)
            timing = await (_every_layer_run(mixture) if every else _engine_run(mixture))
            assert "<the continuation" not in "".join(timing.text), label
            sample = {"first": timing.first, "last": timing.last, **_counted(up, since)}
            sample.update({f"complete {k}": v for k, v in timing.complete.items()})
            for key, value in sample.items():
                out[label].setdefault(key, []).append(value)
    for mixture in (*mixtures.values(), one_layer):
        await mixture.aclose()
    return out


def _agreement_cost(scale: float) -> float:
    """Seconds to check agreement over one layer's disagreeing answers (vote's normalization)."""
    answers = [_text(name, int(PROPOSAL_TOKENS * scale)) for name in _names(1)]
    times = []
    for _ in range(50):
        started = time.perf_counter()
        agreement(answers)
        times.append(time.perf_counter() - started)
    return median(times)


def run(quick: bool = False) -> RowResult:
    reps, scale = (1, 0.25) if quick else (2, 1.0)
    row = RowResult("11", "latency levers on 3 layers: stop_when, staircase on every layer")
    row.params = {
        "reps": reps,
        "layers": f"{LAYERS} x {PROPOSERS} proposers of {int(PROPOSAL_TOKENS * scale)} tokens",
        "every call": f"{PREFILL_S}s to first token, then {TOKENS_PER_S:g} tokens/s",
        "aggregator": f"{int(ANSWER_TOKENS * scale)} tokens",
        "chunk_tokens": CHUNK_TOKENS,
    }
    with FakeUpstream() as up:
        measured = asyncio.run(_measure(up, reps, scale))
    row.raw["modes"] = measured
    for label, m in measured.items():
        row.add(f"{label}: first token", median(m["first"]), "s")
        row.add(f"{label}: last token", median(m["last"]), "s")
        row.add(f"{label}: calls", int(median(m["calls"])))
        row.add(f"{label}: input tokens", int(median(m["input_tokens"])))
        for key in (k for k in m if k.startswith("complete ") and "staircase" in label):
            stage = key.removeprefix("complete ")
            row.add(f"{label}: {stage} written on complete inputs", median(m[key]) * 100, "%")
    row.add("agreement check over one layer's answers", _agreement_cost(scale) * 1e3, "ms")
    return row
