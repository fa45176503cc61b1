"""The embedded model's scheduler never strands a request: whatever a step raises, and even
when a caller's event loop has gone away, later requests are still stepped and answered."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from moa.providers.local.batch import Scheduler
from moa.providers.local.model import LoadedModel
from moa.providers.local.sequence import Emit, Job
from moa.types import Message, Sampling, StreamChunk


def job(emit: Emit) -> Job:
    messages = (Message(role="user", content="hi"),)
    return Job(messages, Sampling(), emit, threading.Event(), lambda _: iter(()), batchable=True)


def test_a_caller_whose_loop_has_closed_does_not_strand_the_next_one() -> None:
    def broken_load() -> LoadedModel:
        raise OSError("the model file went away")

    closed = asyncio.new_event_loop()
    closed.close()

    def emit_to_closed_loop(item: StreamChunk | BaseException | None) -> None:
        closed.call_soon_threadsafe(lambda: None)  # RuntimeError: Event loop is closed

    heard: list[object] = []
    answered = threading.Event()

    def emit(item: StreamChunk | BaseException | None) -> None:
        heard.append(item)
        if item is None:
            answered.set()

    with ThreadPoolExecutor(max_workers=1) as llama_thread:
        scheduler = Scheduler(broken_load, llama_thread)
        scheduler.submit(job(emit_to_closed_loop))
        llama_thread.submit(lambda: None).result()  # the first request's step has run
        scheduler.submit(job(emit))
        assert answered.wait(timeout=30), "the second request was never stepped"
    assert isinstance(heard[0], OSError)
