"""The embedded model's proposals interleaved: one llama.cpp batch, one sequence per request.

A layer starts all its proposers at once, but one llama.cpp context generates one sequence at a
time, so the first chunk of the last proposer used to arrive only after all the others had
finished — and a staircase aggregator (moa.engine.staircase) waits for every proposer's first chunk.
Here the requests waiting for a model share one decode per token: each step feeds every live
sequence its last token (and the next piece of any prompt still being read) in one
`llama_batch`, each entry with its own `seq_id`, then each sequence samples with its own chain.
A prompt that starts like one already read copies that prefix's cells (`llama_memory_seq_cp`)
instead of decoding it again. On a CPU the total tokens/s stays about the same; what changes is
that every caller gets its first tokens early (benchmarks row 12).

Why a second llama.cpp context rather than the `Llama`'s own: that one is made with one
sequence (`n_seq_max = 1`), and llama-cpp-python keeps its own record of what its cache holds
(`input_ids`, `n_tokens`) to reuse a prompt's prefix on the next call — which the calls that
run solo, and every call with batching off, rely on. A separate context for batches, on the
same weights, leaves that cache as it was.

Why each sequence has its own cells (`kv_unified = False`) although a unified cache would store
a shared prefix once: in a unified cache a sequence's cells are scattered among the others', the
attention sums run in another order, and at temperature 0 some answers changed (2 of 5 prompts
on SmolLM2, measured); with a stream per sequence every one was the sequential path's answer,
token for token, so the recipes' measured quality holds. A shared prefix is decoded once all
the same: the sequence that read it is copied whole (`llama_memory_seq_cp`; across streams
llama.cpp copies only whole ones) and the copy cut back to the prefix. The cost is memory:
MAX_SEQUENCES x SEQUENCE_WINDOW cells, twice the `Llama`'s own 4096 (~190 MB for SmolLM2).

A sequence that ends leaves its cells where they are, kept for a later prompt that starts the
same way: a staircase aggregator's next step (moa.engine.staircase) re-sends the answer so far as a
continuation, and takes up the cells of the step it replaces, reading only what changed —
from the first proposal that grew — instead of the whole prompt; the next run's aggregator
finds its instructions already read. Kept cells give way, oldest first, when a new sequence
needs a place. A continuation runs in the batch like any request, so the aggregator's tokens
share the proposers' decodes rather than taking turns with them.

Everything runs on the one llama thread (see moa.providers.local.provider). A model's scheduler
is one step at a time: each step is a job on that thread and queues the next, so other jobs —
another model's steps, a load — run in between. Requests the batch cannot serve (a grammar,
logprobs) are "solo": they run on the `Llama` as before, one chunk per step, between the
batch's steps.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from typing import TYPE_CHECKING, TypeVar

from moa.providers.local.sequence import (
    BatchSequence,
    Job,
    Prepared,
    prepare,
    sampler,
    window,
)
from moa.types import StreamChunk, Usage

if TYPE_CHECKING:
    from moa.providers.local.model import LoadedModel

MAX_SEQUENCES = 8  # sequences per batch; more requests wait for a place
MIN_SHARED = 8  # a shorter common prefix is decoded again rather than waited for

_Key = TypeVar("_Key")


def batching_enabled() -> bool:
    """On unless MOA_LOCAL_BATCH is 0/false/no/off."""
    return os.environ.get("MOA_LOCAL_BATCH", "1").strip().lower() not in {"0", "false", "no", "off"}


class Scheduler:
    """One model's batch and its solo queue, stepped on the llama thread."""

    def __init__(self, load: Callable[[], LoadedModel], executor: Executor) -> None:
        self._load = load
        self._executor = executor
        self._lock = threading.Lock()  # guards the two queues and `_scheduled`
        self._waiting: deque[Job] = deque()
        self._solo_waiting: deque[Job] = deque()
        self._scheduled = False
        # Below: the llama thread's only.
        self._batch: _Batch | None = None  # opened with the first sequence
        self._solo: tuple[Job, Iterator[StreamChunk]] | None = None

    def submit(self, job: Job) -> None:
        with self._lock:
            (self._waiting if job.batchable else self._solo_waiting).append(job)
            if not self._scheduled:
                self._scheduled = True
                self._executor.submit(self._step)

    def forget_kept(self) -> None:
        """Drop the cells ended sequences left (on the llama thread)."""
        if self._batch is not None:
            self._batch.forget_kept()

    def _active(self) -> list[BatchSequence]:
        return self._batch.active if self._batch is not None else []

    def _step(self) -> None:
        try:
            loaded = self._load()
            if self._batch is not None:  # first, so that a replacement finds the cells they left
                self._batch.drop_stopped(loaded)
            self._admit(loaded)
            if self._batch is not None:
                self._batch.step(loaded)
            self._advance_solo(loaded)
        except BaseException as exc:  # every caller hears of it; none waits forever
            self._fail_all(exc)
        finally:
            # Always: a step that raised and left `_scheduled` set would strand every later
            # request (seen: a request waited forever once an earlier caller's loop had closed).
            with self._lock:
                busy = self._active() or self._solo or self._waiting or self._solo_waiting
                if busy:
                    self._executor.submit(self._step)
                self._scheduled = bool(busy)

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            jobs = [*self._waiting, *self._solo_waiting]
            self._waiting.clear()
            self._solo_waiting.clear()
        jobs += [s.job for s in self._active()]
        if self._solo is not None:
            jobs.append(self._solo[0])
        self._solo = None
        if self._batch is not None:
            self._batch.clear()
        for job in jobs:
            job.emit(exc)
            job.emit(None)

    def _advance_solo(self, loaded: LoadedModel) -> None:
        """A request the batch cannot serve, one chunk per step."""
        if self._solo is None:
            with self._lock:
                if not self._solo_waiting:
                    return
                job = self._solo_waiting[0]
            self._solo = (job, job.solo(loaded))
            with self._lock:
                self._solo_waiting.popleft()
        job, chunks = self._solo
        try:
            if job.stop.is_set():
                raise StopIteration
            job.emit(next(chunks))
            return
        except StopIteration:
            pass
        except BaseException as exc:  # handed to the event loop, re-raised there
            job.emit(exc)
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        self._solo = None
        job.emit(None)

    def _admit(self, loaded: LoadedModel) -> None:
        """Waiting requests become sequences, in order, while there are places."""
        while len(self._active()) < MAX_SEQUENCES:
            with self._lock:  # only this thread takes from the queue: the head stays put
                job = self._waiting[0] if self._waiting else None
            if job is None:
                return
            stopped = job.stop.is_set()
            prepared = None if stopped else prepare(loaded, job)
            with self._lock:
                self._waiting.popleft()
                if prepared is None and not stopped:
                    self._solo_waiting.append(job)  # not the batch's to serve
            if isinstance(prepared, Prepared):
                self._batch = self._batch or _Batch(loaded)
                self._batch.start(loaded, job, prepared)
            elif prepared is not None or stopped:
                if prepared is not None:
                    job.emit(prepared)
                job.emit(None)


class _Batch:
    """The batch's own llama.cpp context and its live sequences (the llama thread's only)."""

    def __init__(self, loaded: LoadedModel) -> None:
        import llama_cpp
        from llama_cpp import _internals

        llama = loaded.llama
        params = type(llama.context_params).from_buffer_copy(llama.context_params)
        params.n_seq_max = MAX_SEQUENCES
        params.kv_unified = False  # a stream of cells per sequence (see the module's doc)
        params.n_ctx = MAX_SEQUENCES * window(loaded)
        self._ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=False)
        self._batch = llama_cpp.llama_batch_init(llama.n_batch, 0, 1)
        self.active: list[BatchSequence] = []
        # Places whose sequence has ended, and the tokens their cells still hold (oldest first).
        self.idle: dict[int, list[int]] = {}
        self.prompt_tokens_read = 0  # decoded, not taken from cells already there

    def clear(self) -> None:
        import llama_cpp

        self.active = []
        self.idle = {}
        llama_cpp.llama_memory_clear(self._ctx.memory, True)

    def forget_kept(self) -> None:
        import llama_cpp

        for seq in self.idle:
            llama_cpp.llama_memory_seq_rm(self._ctx.memory, seq, -1, -1)
        self.idle = {}

    def start(self, loaded: LoadedModel, job: Job, prepared: Prepared) -> None:
        chain = sampler(loaded, job.sampling, prepared.default_temperature)
        new = BatchSequence(job, -1, prepared.prompt, prepared.max_tokens, prepared.stops, chain)
        self._place(new)
        self.active.append(new)

    def _place(self, new: BatchSequence) -> None:
        """A place for a new sequence, and the cheapest way to its prompt's cells: the cells a
        finished sequence left (a staircase step continues where the step it replaces was
        cut off, a run's aggregator finds the previous run's instructions), or a copy of a
        live sequence's prefix once it has read it, or nothing to reuse."""
        import llama_cpp

        kept, kept_len = _longest(self.idle.items(), new.prompt)
        live, live_len = _longest(((s, s.prompt) for s in self.active), new.prompt)
        if kept is not None and kept_len >= max(MIN_SHARED, live_len):
            del self.idle[kept]
            llama_cpp.llama_memory_seq_rm(self._ctx.memory, kept, kept_len, -1)
            new.seq, new.decoded = kept, kept_len
            return
        taken = {s.seq for s in self.active} | set(self.idle)
        free = [i for i in range(MAX_SEQUENCES) if i not in taken]
        if free:
            new.seq = free[0]
        else:  # every place is live or kept: the longest-kept cells go
            new.seq = next(iter(self.idle))
            del self.idle[new.seq]
            llama_cpp.llama_memory_seq_rm(self._ctx.memory, new.seq, -1, -1)
        if live is not None and live_len >= MIN_SHARED:
            new.copy_from, new.copy_len = live, live_len

    def drop_stopped(self, loaded: LoadedModel) -> None:
        """Cancelled callers' sequences go (their cells are kept for reuse), not the others."""
        for s in [s for s in self.active if s.job.stop.is_set()]:
            self._finish(loaded, s, None)

    def step(self, loaded: LoadedModel) -> None:
        """One step: each prompt still being read gets a decode of its own (up to n_batch
        tokens), then every generating sequence's last token goes in one shared decode.
        A prompt is not mixed into the shared batch because llama.cpp splits such a batch
        into equal slices per sequence, and a prompt read in other slices than on its own
        gave slightly other numbers (one temperature-0 answer in five changed, measured)."""
        self._copy_prefixes()
        budget = loaded.llama.n_batch
        reading = [s for s in self.active if s.copy_from is None and s.decoded < len(s.prompt)]
        for s in reading:
            pending = s.pending()[:budget]
            self.prompt_tokens_read += len(pending)
            self._run(loaded, [(s, t) for t in pending])
        generating = [s for s in self.active if s.decoded >= len(s.prompt) and s not in reading]
        self._run(loaded, [(s, t) for s in generating for t in s.pending()])

    def _run(self, loaded: LoadedModel, entries: list[tuple[BatchSequence, int]]) -> None:
        """Decode these (sequence, token) entries in one batch; sample where a sequence's
        last known token was decoded."""
        import llama_cpp

        if not entries:
            return
        batch = self._batch
        rows: list[tuple[int, BatchSequence]] = []
        for n, (s, token) in enumerate(entries):
            pos = s.decoded
            s.decoded += 1
            last = s.decoded == len(s.prompt) + len(s.completion)
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
            batch.seq_id[n][0], batch.logits[n] = s.seq, last
            if last:
                rows.append((n, s))
        batch.n_tokens = len(entries)
        loaded.set_threads(self._ctx.ctx)
        code = llama_cpp.llama_decode(self._ctx.ctx, batch)
        if code != 0:
            error = RuntimeError(f"llama_decode returned {code} for {len(entries)} tokens")
            for s in {s for s, _ in entries}:
                self._finish(loaded, s, error)
            return
        for row, s in rows:
            token = llama_cpp.llama_sampler_sample(s.sampler.sampler, self._ctx.ctx, row)
            ended = s.take(loaded, token)
            if ended is not None:
                self._finish(loaded, s, ended)

    def _copy_prefixes(self) -> None:
        import llama_cpp

        for s in self.active:
            source = s.copy_from
            if source is None:
                continue
            if source not in self.active:  # its source went away: read the prompt itself
                s.copy_from = None
            elif source.decoded >= s.copy_len:
                llama_cpp.llama_memory_seq_cp(self._ctx.memory, source.seq, s.seq, -1, -1)
                llama_cpp.llama_memory_seq_rm(self._ctx.memory, s.seq, s.copy_len, -1)
                s.decoded, s.copy_from = s.copy_len, None

    def _finish(
        self, loaded: LoadedModel, s: BatchSequence, outcome: str | BaseException | None
    ) -> None:
        """End a sequence: its usage and finish reason (or its error), then its cells go."""
        import llama_cpp

        self.active.remove(s)
        held = [*s.prompt, *s.completion][: s.decoded] if s.copy_from is None else []
        if isinstance(outcome, BaseException) or len(held) < MIN_SHARED:
            llama_cpp.llama_memory_seq_rm(self._ctx.memory, s.seq, -1, -1)
        else:  # kept for a later prompt that starts the same way
            self.idle[s.seq] = held
        if isinstance(outcome, BaseException):
            s.job.emit(outcome)
        elif outcome is not None:
            usage = Usage(loaded.usage_input_tokens(s.job.messages), s.chunks)
            runtime = loaded.threads.governor.choice.describe()
            s.job.emit(StreamChunk(usage=usage, finish_reason=outcome, runtime=runtime))
        s.job.emit(None)


def _longest(
    candidates: Iterable[tuple[_Key, list[int]]], prompt: list[int]
) -> tuple[_Key | None, int]:
    """The candidate sharing the longest prefix with `prompt`, and its length — short of the
    prompt's last token, which a sequence always decodes itself (that gives its logits)."""
    best, length = None, 0
    for key, tokens in candidates:
        common = min(_common_prefix(tokens, prompt), len(prompt) - 1)
        if common > length:
            best, length = key, common
    return best, length


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
