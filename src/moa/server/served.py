"""A run served as Server-Sent Events: the skeleton every API's stream shares.

`run_sse` owns what does not depend on the API: the events read before the headers went out
then the rest, the `Done` that carries the result, a `MoAError` reported in-band (the headers
are sent), closing the run's events on this loop however the stream ends, and counting the
request once. Each API supplies only its `Shapes`: how the stream opens, what an event
becomes, how it ends, and how a failure is framed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from typing import Any

from moa.errors import MoAError
from moa.events import Done, Event, ProposalDelta, ProposalFinished, Token, ToolCallDelta
from moa.server.errors import ApiError
from moa.server.limits import aclose
from moa.trace import Result

# nginx's code for "the client closed the request"; no client ever reads it.
CLIENT_CLOSED = 499

# How a stream is counted once it has ended: (HTTP status, the result if any, error code).
Finish = Callable[[int, Result | None, str | None], None]


class Shapes:
    """One API's frames for one stream (a fresh object per stream: it may keep state)."""

    def opening(self) -> Iterator[str]:
        """The frames before the first event."""
        return iter(())

    def of(self, item: Event) -> Iterator[str]:
        """The frames one event becomes (the `Done` too: most APIs send nothing for it)."""
        raise NotImplementedError

    def ending(self, result: Result) -> Iterator[str]:
        """The frames after the run's `Done`."""
        raise NotImplementedError

    def error(self, exc: MoAError) -> ApiError:
        """The failure as this API's clients see it."""
        raise NotImplementedError

    def failed(self, error: ApiError, result: Any) -> Iterator[str]:
        """The frames that report a failure once the headers are sent (`result`: the
        exception's partial result, if it has one)."""
        raise NotImplementedError


async def run_sse(
    shapes: Shapes, head: list[Event], rest: AsyncIterator[Event], finish: Finish
) -> AsyncIterator[str]:
    """The run's events, `head` (read before the headers) then `rest`, as `shapes` frames
    them; `finish` is told how it ended: 200, the failure's status, or 499 when the client
    left first."""
    status: int = CLIENT_CLOSED
    result: Result | None = None
    code: str | None = "client_disconnected"
    try:
        for text in shapes.opening():
            yield text
        async for item in chain(head, rest):
            if isinstance(item, Done):
                result = item.result
            for text in shapes.of(item):
                yield text
        if result is None:
            raise AssertionError("MoA.stream() always ends with Done or an exception")
        for text in shapes.ending(result):
            yield text
        status, code = 200, None
    except MoAError as exc:
        error = shapes.error(exc)
        status, code, result = error.status, error.code, getattr(exc, "result", None)
        for text in shapes.failed(error, result):
            yield text
    finally:
        with suppress(Exception):
            await aclose(rest)
        finish(status, result, code)


async def until_first_token(events: AsyncIterator[Event], reasoning: bool) -> list[Event]:
    """The events up to the first one the client will see text of."""
    answer = (Token, ToolCallDelta, Done)
    visible = (*answer, ProposalDelta, ProposalFinished) if reasoning else answer
    head: list[Event] = []
    async for item in events:
        head.append(item)
        if isinstance(item, visible):
            break
    return head


async def chain(head: list[Event], rest: AsyncIterator[Event]) -> AsyncIterator[Event]:
    """The events read before the headers went out, then the rest of the run's (none after a
    `Done` among the first)."""
    for item in head:
        yield item
        if isinstance(item, Done):
            return
    async for item in rest:
        yield item
