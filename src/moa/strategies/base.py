"""An aggregation strategy: how the last stage turns the proposals it receives into the answer.

A strategy gets a `Stage` (the conversation, the last layer's answers, the aggregator and the
means to call it) and yields events as it works: `AggregatorStarted`, `Token`s of the answer.
It sets `stage.result.text` and `aggregator_model`, or raises `AggregatorFailedError`.
`stream_answer` is the shared last step: stream one answer, trying the fallbacks in order;
`consult` makes one whole (non-streamed) call to the aggregator, with the same fallbacks;
`call_once` is one non-streamed call of any agent, recorded; `replay` streams a finished text.

Under a budget, a strategy also says what it may spend: `worst_case` lists every call one
`aggregate` may make (as `Step`s), and moa.engine.budget prices them before the first is sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast, runtime_checkable

from moa.call.agent import Agent
from moa.call.caller import Caller
from moa.call.request import Call
from moa.errors import AggregatorFailedError, ProviderError
from moa.events import AggregatorStarted, Event, Token
from moa.strategies.answer import Answer
from moa.tokens import estimate_tokens, messages_tokens
from moa.tooluse import as_deltas
from moa.trace import CallRecord, CallRole, Choice, Result, asked_for
from moa.types import Answering, Message, ResponseFormat, Sampling, StreamChunk, Tally, Usage


class AggregatorView(Protocol):
    """What a strategy reads of the aggregator it answers for (`moa.engine.aggregator.Aggregator` is
    one): strategies sit below the engine that builds aggregators, and never import it."""

    @property
    def agent(self) -> Agent: ...

    @property
    def candidates(self) -> tuple[Agent, ...]:
        """The aggregator, then its fallbacks, in the order they are tried."""
        ...

    @property
    def prompt(self) -> str: ...

    @property
    def strategy(self) -> Strategy: ...

    @property
    def top_k(self) -> int: ...

    @property
    def window(self) -> int | None: ...

    @property
    def reply(self) -> str:
        """ "whole", or "final_line": a proposal answered with is cut to its final line."""
        ...


@dataclass(slots=True)
class Stage:
    number: int  # the aggregator's layer number (layers + 1)
    messages: list[Message]
    proposals: list[CallRecord]  # the last layer's answers, in proposer order
    aggregator: AggregatorView
    caller: Caller
    overrides: Sampling  # the run's settings for the aggregator
    result: Result
    # The agents of the last layer, by proposal index (`rank` asks them to rank each other).
    proposers: tuple[Agent, ...] = field(default_factory=tuple)
    answering: Answering = field(default_factory=Answering)  # tools, response format, …
    choice: int = 0  # which of the run's `n` answers this pass produces
    whole: bool = False  # nobody reads the answer as it comes: ask for it whole

    @property
    def references(self) -> list[str]:
        return [p.output for p in self.proposals]

    @property
    def asked(self) -> int | None:
        """How many proposals the layer read here was asked for, when members were lost (None:
        none was), for the prompt's count (`Call.asked`)."""
        return asked_for(self.result, self.proposals)

    def record(self, index: int, role: CallRole) -> CallRecord:
        """A record for a call to aggregator candidate `index` (0: the aggregator, then its
        fallbacks in the order they are tried), for the trace."""
        model = self.aggregator.candidates[index].model
        return CallRecord(layer=self.number, index=index, model=model, role=role)

    def answered(self, choice: Choice) -> None:
        """The aggregator's answer is in (one of the run's `n`): every way a strategy answers
        — streamed, replayed, a staircase's last step — ends here."""
        self.result.choices.append(choice)
        if self.choice == 0:
            self.result.text, self.result.aggregator_model = choice.text, choice.model

    @property
    def side_overrides(self) -> Sampling:
        """The run's settings for calls other than the final answer: a client's max_tokens and
        stop shape the answer it reads, not an analysis or a choice."""
        o = self.overrides
        return Sampling(temperature=o.temperature, seed=o.seed, top_p=o.top_p)


@dataclass(frozen=True, slots=True)
class Step:
    """One call a strategy may make, for a budget's worst case (moa.engine.budget): the request
    each aggregator candidate would be sent, in fallback order (a fallback answers only when
    the one before it failed, so the dearest counts), and the steps before it in the same
    list whose whole answers its prompt holds (an analysis, a carried synthesis), each counted
    as long as it may be."""

    calls: tuple[Call, ...]
    reads: tuple[Step, ...] = ()


@runtime_checkable
class Strategy(Protocol):
    """How the aggregator turns proposals into the answer. Besides `aggregate` (and, to run
    under a budget, `worst_case`), a strategy declares the traits the engine reads, so that
    the engine never names a strategy: subclass `Traits` for the defaults (all False). A
    plugin's strategy that leaves a trait out gets False (`declared`)."""

    name: str
    # Its answer may be a proposal as written: tools, a response format or logprobs asked of
    # the final answer are refused up front, and tools it may leave uncalled are dropped.
    answers_verbatim: bool
    # When a layer's answers agree enough to stop the run (`stop_when = "agree"`), the agreed
    # answer is this strategy's answer too: the aggregator is skipped with the layers.
    answers_agreement: bool
    # Its answer is one synthesis of the proposals, which a staircase may ask for again, as
    # a continuation, while the proposals stream (`staircase = true`).
    staircase: bool
    # It passes on the `top_k` best proposals (the aggregator's `top_k` is for it).
    uses_top_k: bool

    def aggregate(self, stage: Stage) -> AsyncIterator[Event]: ...

    async def worst_case(self, stage: Stage) -> list[Step]:
        """Every call one `aggregate(stage)` may make, on its most expensive path (fallbacks
        included): a budget refuses the stage unless it can pay for all of them."""
        ...


TRAITS = ("answers_verbatim", "answers_agreement", "staircase", "uses_top_k")


class Traits:
    """The traits' defaults, for a strategy to subclass and override the ones that hold."""

    answers_verbatim = False
    answers_agreement = False
    staircase = False
    uses_top_k = False


class _Declared:
    """A strategy (a plugin's, written before the traits) with the traits it leaves out as
    False; everything else is the strategy's own."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        for trait in TRAITS:
            setattr(self, trait, getattr(inner, trait, False))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def declared(strategy: object) -> Strategy:
    """`strategy` with every trait the engine reads (see `Strategy`)."""
    if all(hasattr(strategy, trait) for trait in TRAITS):
        return cast(Strategy, strategy)
    return cast(Strategy, _Declared(strategy))


def aggregator_step(
    stage: Stage,
    references: Sequence[str],
    prompt: str,
    *,
    messages: Sequence[Message] | None = None,
    overrides: Sampling | None = None,
    response_format: ResponseFormat | None = None,
    answering: Answering | None = None,
    reads: tuple[Step, ...] = (),
) -> Step:
    """A call to the aggregator (any of its candidates), as `consult` and `stream_answer`
    make it: `overrides` default to the side calls' (`Stage.side_overrides`). Over all the
    stage's proposals, the prompt says how many of how many arrived when some were lost."""
    asked = stage.asked if len(references) == len(stage.proposals) else None
    calls = tuple(
        Call(
            agent,
            stage.messages if messages is None else messages,
            references,
            prompt,
            stage.side_overrides if overrides is None else overrides,
            response_format,
            answering=answering,
            asked=asked,
        )
        for agent in stage.aggregator.candidates
    )
    return Step(calls, reads)


def answer_step(
    stage: Stage, references: Sequence[str], prompt: str, reads: tuple[Step, ...] = ()
) -> Step:
    """The final answer's call, as `stream_answer` makes it: the run's settings for the
    aggregator and what the client asks of the answer (tools, response format, …)."""
    return aggregator_step(
        stage,
        references,
        prompt,
        overrides=stage.overrides,
        answering=stage.answering,
        reads=reads,
    )


async def stream_answer(
    stage: Stage, references: Sequence[str], prompt: str
) -> AsyncIterator[Event]:
    """Stream the final answer from the aggregator over `references`; on a failure before the
    first token, the next fallback tries. After a token the user has seen, no fallback
    contradicts it: the partial answer and the error are kept. The run's stop sequences are
    applied here, so that the one the answer ended at is known (`Choice.stop_sequence`)."""
    failures: list[CallRecord] = []
    for index, call in enumerate(answer_step(stage, references, prompt).calls):
        record = stage.record(index, "aggregator")
        stage.result.calls.append(record)
        yield AggregatorStarted(stage.number, record.model)
        started = time.perf_counter()
        answer, tally = Answer(call.overrides.stop or ()), Tally()
        call = replace(call, overrides=replace(call.overrides, stop=())) if answer.stops else call
        next_may_try = True
        try:
            # Stops need the stream: the upstream, not told them, is closed at the first one.
            whole = stage.whole and not answer.stops
            async with aclosing(_answer_chunks(stage, call, record, whole)) as chunks:
                async for chunk in chunks:
                    tally.add(chunk)
                    for event in answer.add(chunk, stage.choice):
                        yield event
                    if answer.stopped is not None:
                        break
            for event in answer.flush(stage.choice):
                yield event
            if answer.stopped is not None and tally.usage is None:  # closed before its usage
                tally.usage = await _stopped_usage(stage.caller, call, answer.text)
        except ProviderError as error:
            next_may_try = fall_back(record, error, shown=answer.seen)
        finally:
            record.take(tally)
            record.output = answer.output()
            record.latency_s = time.perf_counter() - started
        if record.ok:
            stage.answered(answer.choice(record.finish_reason, record.model))
            return
        failures.append(record)
        if not next_may_try:
            break
    raise AggregatorFailedError(failures, stage.result)


def fall_back(record: CallRecord, error: ProviderError, *, shown: bool) -> bool:
    """The aggregator's one fallback rule (a streamed answer's, and a staircase's): a
    candidate that failed is recorded so, and the next one may answer only if nothing of this
    one's answer was `shown` — after a token the user has seen, no fallback contradicts it:
    the partial answer and the error are kept. True: the next candidate may try."""
    record.fail(error)
    if shown:
        record.error = f"{record.error} (after streaming part of the answer)"
    return not shown


def _answer_chunks(
    stage: Stage, call: Call, record: CallRecord, whole: bool
) -> AsyncGenerator[StreamChunk, None]:
    """The answer as it streams, or — when nobody reads it as it comes (`Stage.whole`) — asked
    for whole and given as one chunk."""
    if whole:
        return _whole(stage.caller, call, record)
    return stage.caller.stream(call, record)


async def _stopped_usage(caller: Caller, call: Call, text: str) -> Usage:
    _, built = await caller.build(call)
    return Usage(messages_tokens(built.request.messages), estimate_tokens(text), estimated=True)


async def _whole(
    caller: Caller, call: Call, record: CallRecord
) -> AsyncGenerator[StreamChunk, None]:
    completion = await caller.complete(call, record)
    yield StreamChunk(
        completion.text,
        completion.usage,
        completion.finish_reason,
        completion.attempts,
        as_deltas(completion.tool_calls),
        completion.logprobs,
        completion.runtime,
    )


async def call_once(stage: Stage, agent: Agent, record: CallRecord, call: Call) -> CallRecord:
    """One whole answer from `agent` to `call`, recorded on `record` (appended to the trace)."""
    stage.result.calls.append(record)
    started = time.perf_counter()
    try:
        completion = await stage.caller.complete(call, record)
    except ProviderError as error:
        record.fail(error)
    else:
        record.output = completion.text
        record.take(completion)
    record.latency_s = time.perf_counter() - started
    return record


async def consult(
    stage: Stage,
    role: CallRole,
    references: Sequence[str],
    prompt: str,
    *,
    messages: Sequence[Message] | None = None,
    overrides: Sampling | None = None,
    response_format: ResponseFormat | None = None,
) -> tuple[CallRecord | None, list[CallRecord]]:
    """A whole answer from the aggregator (its fallbacks in order): the answering record, or
    None, and every record tried."""
    tried: list[CallRecord] = []
    step = aggregator_step(
        stage,
        references,
        prompt,
        messages=messages,
        overrides=overrides,
        response_format=response_format,
    )
    for index, call in enumerate(step.calls):
        record = await call_once(stage, call.agent, stage.record(index, role), call)
        tried.append(record)
        if record.ok:
            return record, tried
    return None, tried


def ask(messages: Sequence[Message], instruction: str) -> list[Message]:
    """The conversation with `instruction` added to its last (user) turn, before any system
    turns that follow it: what the model must do with the question, rather than answer it."""
    out = [Message(role=m["role"], content=m["content"]) for m in messages]
    last = max(i for i, m in enumerate(out) if m["role"] != "system")
    out[last] = Message(role="user", content=f"{out[last]['content']}\n\n{instruction}")
    return out


def replay(stage: Stage, text: str, model: str | None) -> Iterator[Event]:
    """A finished text as the answer, streamed as word-sized tokens (so clients see it as they
    see any other answer)."""
    stage.answered(Choice(text, model=model))
    for piece in re.findall(r"\s*\S+|\s+", text):
        yield Token(piece, stage.choice)


def choose(stage: Stage, proposal: CallRecord, why: str, what: str = "") -> None:
    """`proposal` is the answer (`what` of it: "" whole), for `why`: on its record and in the
    notes."""
    proposal.chosen = why
    stage.result.notes.append(
        f"{why}: answered with {what}layer {proposal.layer}'s proposal {proposal.index + 1} "
        f"({proposal.model}){'' if what else ', verbatim'}"
    )


async def answer_with(stage: Stage, proposal: CallRecord, why: str) -> AsyncIterator[Event]:
    """A proposal as the answer, verbatim, with no further call."""
    choose(stage, proposal, why)
    for event in replay(stage, proposal.output, proposal.model):
        yield event
