"""One request in the embedded model's batch (moa.providers.local.batch): the caller's job, and
its sequence — the prompt tokens, sampler and stop strings llama-cpp-python's own call would
use, and the tokens it streams back as that call would."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from moa.types import Message, Sampling, StreamChunk

if TYPE_CHECKING:
    from moa.providers.local.model import LoadedModel

# Each sequence has its own cells (moa.providers.local.batch): a request whose prompt and
# `max_tokens` do not fit in this window runs solo, on the `Llama`'s full context, as always.
SEQUENCE_WINDOW = 1024
Emit = Callable[[StreamChunk | BaseException | None], None]  # None: the stream has ended


@dataclass(eq=False)
class Job:
    """One caller's request, handed from the event loop to the llama thread."""

    messages: tuple[Message, ...]
    sampling: Sampling
    emit: Emit
    stop: threading.Event
    # The generation on the `Llama`, made on the llama thread: how the job runs solo.
    solo: Callable[[LoadedModel], Iterator[StreamChunk]]
    batchable: bool  # False: a grammar, logprobs — solo from the start


@dataclass(eq=False)
class BatchSequence:
    job: Job
    seq: int
    prompt: list[int]
    max_tokens: int
    stops: list[bytes]
    sampler: Any
    decoded: int = 0  # positions of this sequence already in the KV cache
    copy_from: BatchSequence | None = None  # waiting for this one to read the shared prefix
    copy_len: int = 0
    completion: list[int] = field(default_factory=list)
    text: bytes = b""
    ends: list[int] = field(default_factory=list)  # byte offset where each token's text ends
    returned: int = 0  # tokens whose text has been sent
    sent: int = 0  # bytes sent
    chunks: int = 0  # non-empty chunks sent: the sequential path's output token count
    next_token: int | None = None  # sampled, not yet decoded

    def pending(self) -> list[int]:
        """What this sequence still has to decode: its prompt's rest, or its last token."""
        if self.decoded < len(self.prompt):
            return self.prompt[self.decoded :]
        return [self.next_token] if self.next_token is not None else []

    def take(self, loaded: LoadedModel, token: int) -> str | None:
        """A sampled token, handled as llama-cpp-python's streaming completion does: an
        end-of-generation token or a stop string ends the sequence ("stop"), `max_tokens`
        ends it ("length"); text that may be the start of a stop string is held back.
        Returns how the sequence ended, or None while it goes on."""
        import llama_cpp

        if llama_cpp.llama_vocab_is_eog(loaded.llama._model.vocab, token):
            self._release(len(self.text))
            return "stop"
        self.completion.append(token)
        self.text += loaded.llama._model.detokenize([token])
        self.ends.append(len(self.text))
        found = [self.text.index(stop) for stop in self.stops if stop in self.text]
        if found:
            self._release(min(found), final=True)
            return "stop"
        self._release(len(self.text) - held_back(self.text[self.sent :], self.stops))
        if len(self.completion) >= self.max_tokens:
            self._release(len(self.text))
            return "length"
        self.next_token = token
        return None

    def _release(self, limit: int, final: bool = False) -> None:
        """Send the tokens whose text ends by `limit`, a chunk per token (a character split
        over tokens goes with its last one); with `final`, also the part of the next token
        before `limit` (the text before a stop string)."""
        for i in range(self.returned, len(self.completion)):
            if self.ends[i] > limit:
                break
            try:
                text = self.text[self.sent : self.ends[i]].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._send(text)
            self.returned, self.sent = i + 1, self.ends[i]
        if final and self.sent < limit:
            self._send(self.text[self.sent : limit].decode("utf-8", errors="ignore"))
            self.sent = limit

    def _send(self, text: str) -> None:
        if text:
            self.chunks += 1
            self.job.emit(StreamChunk(text=text))


@dataclass(frozen=True)
class Prepared:
    prompt: list[int]
    max_tokens: int
    stops: list[bytes]
    default_temperature: float


def window(loaded: LoadedModel) -> int:
    return min(SEQUENCE_WINDOW, loaded.n_ctx)


def prepare(loaded: LoadedModel, job: Job) -> Prepared | BaseException | None:
    """The prompt tokens, token limit and stop strings llama-cpp-python's high-level call
    would use for this request. None: the request runs solo — its model's chat format is one
    the batch does not render, or it does not fit a sequence's window (a prompt over the
    context window is then refused there, as it always was). An error: this request's alone."""
    try:
        prompt, stops, default_temperature = loaded.batch_prompt(job.messages)
    except LookupError:
        return None
    except Exception as exc:  # e.g. the template refuses the messages, as it would solo
        return exc
    s = job.sampling
    max_tokens = s.max_tokens if s.max_tokens is not None else 512
    if max_tokens <= 0 or len(prompt) + max_tokens > window(loaded):
        return None
    stop_bytes = [x.encode() for x in (*(s.stop or ()), *stops) if x]
    return Prepared(prompt, max_tokens, stop_bytes, default_temperature)


def sampler(loaded: LoadedModel, sampling: Sampling, default_temperature: float) -> Any:
    """The chain the high-level call samples with (its defaults: top_k 40, top_p 0.95,
    min_p 0.05, typical 1.0, no penalties; greedy at temperature 0), made by the `Llama`
    itself so that the two paths cannot drift apart. Its seed too: the request's, else one
    drawn from the previous seed, which the `Llama` keeps — requests started in the same
    order draw the same seeds on either path."""
    llama = loaded.llama
    if sampling.seed is not None:
        llama.set_seed(sampling.seed)
    else:
        llama.set_seed(random.Random(llama._seed).randint(0, 2**32))
    temperature = sampling.temperature
    return llama._init_sampler(
        top_k=40,
        top_p=sampling.top_p if sampling.top_p is not None else 0.95,
        min_p=0.05,
        typical_p=1.0,
        temp=temperature if temperature is not None else default_temperature,
    )


def held_back(unsent: bytes, stops: list[bytes]) -> int:
    """How many bytes at the end of `unsent` could be the start of a stop string."""
    held = 0
    for stop in stops:
        for i in range(min(len(stop), len(unsent)), 0, -1):
            if unsent.endswith(stop[:i]):
                held = max(held, i)
                break
    return held
