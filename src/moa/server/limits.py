"""Load limits and client liveness: body size, concurrent runs, and noticing a client leave —
with the responses that hold a run's slot while they send (`RunResponse`, `EventStream`).

A MoA run fans out to many upstream calls, so a run nobody waits for any more is expensive:
`until_disconnect` cancels it the moment the client goes away, which closes its upstream calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moa.server.errors import ApiError, Render, openai_shape

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was complete."""


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and raising ClientGone) if the client disconnects first.

    Call only once the request body has been read: from then on `receive` yields nothing but
    the disconnect.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # we ourselves were cancelled (e.g. forced shutdown)
        task.cancel()
        watcher.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
        raise
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientGone


class Slot:
    """One admitted run; releasing twice is harmless, so every exit path may release."""

    def __init__(self, slots: RunSlots) -> None:
        self._slots: RunSlots | None = slots

    def release(self) -> None:
        if self._slots is not None:
            self._slots.active -= 1
            self._slots.changed()
            self._slots = None


class RunSlots:
    """A cap on concurrent MoA runs. Saturation answers 429 at once instead of queueing: a
    queued request holds a connection while its client's own timeout runs down, and a load
    balancer can send the retry to a less busy worker."""

    def __init__(
        self,
        limit: int,
        retry_after_s: int = 1,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("the concurrent run limit must be at least 1")
        self.limit = limit
        self.active = 0
        self.retry_after_s = retry_after_s
        self.on_change = on_change  # e.g. a gauge, kept current in every worker process

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.active)

    def take(self) -> Slot:
        if self.active >= self.limit:
            raise ApiError(
                429,
                f"the server is running its maximum of {self.limit} MoA runs; retry shortly",
                type="rate_limit_error",
                code="server_saturated",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.active += 1
        self.changed()
        return Slot(self)


class BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413, declared or not."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        on_refuse: Callable[[str], None] | None = None,
        render: Render = openai_shape,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_refuse = on_refuse
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        # Buffer (at most max_bytes) so chunked bodies are held to the same limit.
        parts: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            parts.append(body)
            more = message.get("more_body", False)

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(parts), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(
            413,
            f"the request body exceeds the server's limit of {self.max_bytes} bytes",
            code="request_too_large",
        )
        if self.on_refuse is not None:
            self.on_refuse("request_too_large")
        await self.render(scope["path"], error)(scope, receive, send)


async def aclose(iterator: AsyncIterable[Any]) -> None:
    """Close an async generator now, on this loop (not later, by the garbage collector)."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class RunResponse(Response):
    """The answer to one run, worked out when the server sends it: the run's slot is held
    until the last byte is sent (or the client has gone), and freed however that ends. An
    exception before the headers still reaches the app's error handlers."""

    def __init__(self, slot: Slot, answer: Callable[[], Awaitable[Response]]) -> None:
        super().__init__()
        self._slot = slot
        self._answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._answer()
            await response(scope, receive, send)
        finally:
            self._slot.release()


class EventStream(StreamingResponse):
    """An SSE response that stops (and so cancels its run) as soon as the client disconnects,
    whatever ASGI spec version the server speaks: Starlette's own notices a disconnect under
    ASGI 2.4 only when the next token fails to send."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[str]) -> None:
        # no-cache and no proxy buffering, or the tokens arrive in one lump at the end.
        super().__init__(body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with suppress(ClientGone, OSError):
            await until_disconnect(receive, self._send_all(send))

    async def _send_all(self, send: Send) -> None:
        try:
            await self.stream_response(send)
        finally:
            # Cancelled while the body waits at a `yield`: close it, so the run stops too.
            await aclose(self.body_iterator)
