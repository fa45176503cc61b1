"""The MoA engine: proposal layers run concurrently, then the aggregator streams the answer.

    messages ─▶ layer 1 ─▶ layer 2 ─▶ … ─▶ aggregator ─▶ tokens
               (n calls)  (n calls,      (sees the last
                           sees layer 1)  layer's answers)

`MoA.stream()` is the one implementation; `arun()` and `run()` drain it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from moa.agents import Agent, Aggregator, ProposalLayer
from moa.cache import ResponseCache
from moa.caller import Caller
from moa.errors import (
    AggregatorFailedError,
    ConfigError,
    InputError,
    LayerFailedError,
    ProviderError,
)
from moa.events import (
    AggregatorStarted,
    Done,
    Event,
    ProposalFailed,
    ProposalFinished,
    ProposalStarted,
    Token,
)
from moa.providers.registry import Registry
from moa.retry import RetryPolicy
from moa.trace import CallRecord, Result
from moa.types import Message, Sampling, Usage

Prompt = str | Sequence[Message]


def as_messages(prompt: Prompt) -> list[Message]:
    """A prompt string or a chat history, checked: the last turn must be a non-empty user turn."""
    if isinstance(prompt, str):
        prompt = [Message(role="user", content=prompt)]
    messages = [Message(role=m["role"], content=m["content"]) for m in prompt]
    if not messages or messages[-1]["role"] != "user":
        raise InputError("the conversation must end with a user message")
    if not messages[-1]["content"].strip():
        raise InputError("the prompt is empty — pass some text, or '-' to read it from stdin")
    return messages


class MoA:
    """A Mixture-of-Agents, composed like `torch.nn.Sequential`:

    MoA(ProposalLayer("local:smollm2", "local:smollm2"), Aggregator("local:smollm2"))
    """

    def __init__(
        self,
        *stages: ProposalLayer | Aggregator,
        registry: Registry | None = None,
        defaults: Sampling | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        if not stages or not isinstance(stages[-1], Aggregator):
            raise ConfigError("a MoA ends with exactly one Aggregator")
        layers = stages[:-1]
        if any(not isinstance(s, ProposalLayer) for s in layers):
            raise ConfigError("only the last stage of a MoA may be an Aggregator")
        self.layers: tuple[ProposalLayer, ...] = layers  # type: ignore[assignment]
        self.aggregator: Aggregator = stages[-1]
        self.registry = registry or Registry()
        self._caller = Caller(
            registry=self.registry,
            retry=retry or RetryPolicy(),
            timeout_s=timeout_s,
            defaults=defaults or Sampling(),
            cache=cache,
        )
        for agent in self.agents:
            self._caller.check(agent)

    @property
    def agents(self) -> list[Agent]:
        return [a for layer in self.layers for a in layer.agents] + list(self.aggregator.candidates)

    def __repr__(self) -> str:
        return f"MoA({', '.join(map(repr, (*self.layers, self.aggregator)))})"

    async def stream(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
    ) -> AsyncIterator[Event]:
        """Run once, yielding what happens as it happens; the last event is `Done`.

        `sampling` overrides every call of the run; `aggregator_sampling` only the aggregator's
        (over `sampling`), e.g. a client's max_tokens for the final answer.
        """
        messages = as_messages(prompt)
        overrides = sampling or Sampling()
        final = (aggregator_sampling or Sampling()).merged_over(overrides)
        result = Result()
        started = time.perf_counter()
        references: list[str] = []
        for number, layer in enumerate(self.layers, 1):
            records: list[CallRecord] = []
            async for event in self._run_layer(
                number, layer, messages, references, overrides, records
            ):
                yield event
            result.calls.extend(records)
            answers = [r for r in records if r.ok]
            if not answers:
                result.latency_s = time.perf_counter() - started
                raise LayerFailedError(number, records, result)
            references = [r.output for r in answers]

        async for event in self._aggregate(messages, references, final, result):
            yield event
        result.latency_s = time.perf_counter() - started
        yield Done(result)

    async def arun(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
    ) -> Result:
        async for event in self.stream(
            prompt, sampling=sampling, aggregator_sampling=aggregator_sampling
        ):
            if isinstance(event, Done):
                return event.result
        raise AssertionError("stream() always ends with Done or an exception")

    def run(
        self,
        prompt: Prompt,
        *,
        sampling: Sampling | None = None,
        aggregator_sampling: Sampling | None = None,
    ) -> Result:
        """Blocking form of `arun`, for scripts and notebooks without an event loop."""

        async def once() -> Result:
            try:
                return await self.arun(
                    prompt, sampling=sampling, aggregator_sampling=aggregator_sampling
                )
            finally:
                # Clients are bound to this loop, which ends with asyncio.run().
                await self.registry.aclose()

        return asyncio.run(once())

    async def aclose(self) -> None:
        await self.registry.aclose()

    async def __aenter__(self) -> MoA:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run_layer(
        self,
        number: int,
        layer: ProposalLayer,
        messages: list[Message],
        references: list[str],
        overrides: Sampling,
        records: list[CallRecord],
    ) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        finished: asyncio.Queue[CallRecord] = asyncio.Queue()
        slots = [
            CallRecord(layer=number, index=i, model=agent.model, role="proposer")
            for i, agent in enumerate(layer.agents)
        ]
        records.extend(slots)
        tasks = [
            asyncio.create_task(
                self._propose(agent, slot, messages, references, layer.prompt, overrides, finished)
            )
            for agent, slot in zip(layer.agents, slots, strict=True)
        ]
        for slot in slots:
            yield ProposalStarted(number, slot.index, slot.model)
        deadline = None if layer.deadline_s is None else loop.time() + layer.deadline_s
        arrived: set[int] = set()
        answered = 0
        try:
            while len(arrived) < len(tasks):
                quorum = answered >= layer.min_proposals
                if quorum and finished.empty() and (deadline is None or loop.time() >= deadline):
                    break
                wait = deadline - loop.time() if quorum and deadline is not None else None
                try:
                    async with asyncio.timeout(wait):
                        record = await finished.get()
                except TimeoutError:
                    continue
                arrived.add(record.index)
                answered += record.ok
                yield ProposalFinished(record) if record.ok else ProposalFailed(record)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for slot in slots:
            if slot.index not in arrived:
                slot.status = "cancelled"
                slot.error = f"cancelled: layer {number} moved on with {answered} answers"
                yield ProposalFailed(slot)

    async def _propose(
        self,
        agent: Agent,
        record: CallRecord,
        messages: list[Message],
        references: list[str],
        prompt: str,
        overrides: Sampling,
        finished: asyncio.Queue[CallRecord],
    ) -> None:
        started = time.perf_counter()
        try:
            completion, record.attempts = await self._caller.propose(
                agent, messages, references, prompt, overrides
            )
            record.output, record.usage = completion.text, completion.usage
            record.finish_reason = completion.finish_reason
        except ProviderError as error:
            record.status, record.error, record.attempts = "failed", str(error), error.attempts
        except asyncio.CancelledError:
            record.latency_s = time.perf_counter() - started
            raise
        except Exception as error:  # a provider bug must not take the whole run down
            record.status, record.error = "failed", f"{type(error).__name__}: {error}"
        record.latency_s = time.perf_counter() - started
        finished.put_nowait(record)

    async def _aggregate(
        self,
        messages: list[Message],
        references: list[str],
        overrides: Sampling,
        result: Result,
    ) -> AsyncIterator[Event]:
        number = len(self.layers) + 1
        failures: list[CallRecord] = []
        for index, agent in enumerate(self.aggregator.candidates):
            record = CallRecord(layer=number, index=index, model=agent.model, role="aggregator")
            result.calls.append(record)
            yield AggregatorStarted(number, agent.model)
            started = time.perf_counter()
            parts: list[str] = []
            try:
                chunks, record.attempts = await self._caller.open_stream(
                    agent, messages, references, self.aggregator.prompt, overrides
                )
                usage: Usage | None = None
                async for chunk in chunks:
                    if chunk.text:
                        parts.append(chunk.text)
                        yield Token(chunk.text)
                    usage = chunk.usage or usage
                    record.finish_reason = chunk.finish_reason or record.finish_reason
                record.usage = usage or Usage()
            except ProviderError as error:
                record.status, record.error, record.attempts = "failed", str(error), error.attempts
                if parts:
                    record.error += " (after streaming part of the answer)"
            finally:
                record.output = "".join(parts)
                record.latency_s = time.perf_counter() - started
            if record.ok:
                result.text, result.aggregator_model = record.output, agent.model
                return
            failures.append(record)
            if parts:
                break  # the user has seen tokens: a fallback would contradict them
        raise AggregatorFailedError(failures, result)
