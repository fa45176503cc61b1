"""An aggregation strategy: how the last stage turns the proposals it receives into the answer.

A strategy gets a `Stage` (the conversation, the last layer's answers, the aggregator and the
means to call it) and yields events as it works: `AggregatorStarted`, `Token`s of the answer.
It sets `stage.result.text` and `aggregator_model`, or raises `AggregatorFailedError`.
`stream_answer` is the shared last step: stream one answer, trying the fallbacks in order.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from moa.agents import Aggregator
from moa.caller import Caller
from moa.errors import AggregatorFailedError, ProviderError
from moa.events import AggregatorStarted, Event, Token
from moa.request import Call
from moa.trace import CallRecord, Result
from moa.types import Message, Sampling


@dataclass(slots=True)
class Stage:
    number: int  # the aggregator's layer number (layers + 1)
    messages: list[Message]
    proposals: list[CallRecord]  # the last layer's answers, in proposer order
    aggregator: Aggregator
    caller: Caller
    overrides: Sampling  # the run's settings for the aggregator
    result: Result

    @property
    def references(self) -> list[str]:
        return [p.output for p in self.proposals]


@runtime_checkable
class Strategy(Protocol):
    name: str

    def aggregate(self, stage: Stage) -> AsyncIterator[Event]: ...


async def stream_answer(
    stage: Stage, references: Sequence[str], prompt: str
) -> AsyncIterator[Event]:
    """Stream the final answer from the aggregator over `references`; on a failure before the
    first token, the next fallback tries. After a token the user has seen, no fallback
    contradicts it: the partial answer and the error are kept."""
    failures: list[CallRecord] = []
    for index, agent in enumerate(stage.aggregator.candidates):
        record = CallRecord(layer=stage.number, index=index, model=agent.model, role="aggregator")
        stage.result.calls.append(record)
        yield AggregatorStarted(stage.number, agent.model)
        started = time.perf_counter()
        parts: list[str] = []
        call = Call(agent, stage.messages, references, prompt, stage.overrides)
        try:
            async with aclosing(stage.caller.stream(call, record)) as chunks:
                async for chunk in chunks:
                    if chunk.attempts is not None:
                        record.attempts = chunk.attempts
                    if chunk.text:
                        parts.append(chunk.text)
                        yield Token(chunk.text)
                    record.usage = chunk.usage or record.usage
                    record.finish_reason = chunk.finish_reason or record.finish_reason
        except ProviderError as error:
            record.fail(error)
            if parts:
                record.error = f"{record.error} (after streaming part of the answer)"
        finally:
            record.output = "".join(parts)
            record.latency_s = time.perf_counter() - started
        if record.ok:
            stage.result.text, stage.result.aggregator_model = record.output, agent.model
            return
        failures.append(record)
        if parts:
            break
    raise AggregatorFailedError(failures, stage.result)
