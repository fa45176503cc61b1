"""A fake OpenAI-compatible upstream over real HTTP on 127.0.0.1, scriptable per model.

    with FakeUpstream() as up:
        up.script("slow", Reply("late answer", delay_s=1.0))
        up.script("flaky", Reply(status=500), Reply("second try works"))
        ... point a provider at up.base_url ...
        up.requests_for("slow")  # the JSON bodies it received
        up.latency("p1", Profile(ttft=LogNormal(0.05, 0.8), tokens_per_s=200))  # see latency.py
        up.calls  # when each request arrived, got its first byte and finished (and its key)
        up.connections  # how many connections the requests came on

`up.batches` is OpenAI's Batch API over the same scripts (see `moa.testing.batch_api`).

A reply may call tools (`Reply(tool_calls=[{"name": "f", "arguments": '{"x": 1}'}])`, streamed
as OpenAI's deltas, arguments in two pieces). A request with `logprobs: true` gets a log
probability for each word (and `top_logprobs` alternatives).

Replies queued for a model are used in order; the last one repeats. A model with no script
answers "answer from MODEL". A reply with no delays of its own takes its model's latency
profile (or the default one set with `latency(None, ...)`), if any. How a reply goes on the
wire is `moa.testing.replies`'s; the server under it, `moa.testing.loopback`'s. Needs the
`server` extra (starlette + uvicorn).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from dataclasses import replace

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from moa.testing.batch_api import FakeBatchAPI
from moa.testing.latency import Profile
from moa.testing.loopback import LoopbackServer
from moa.testing.replies import (
    MISMATCH,
    Body,
    Call,
    Reply,
    continuing,
    rate_limited,
    respond,
    whole,
    words,
)

__all__ = ["MISMATCH", "Body", "Call", "FakeUpstream", "Reply", "continuing"]


class Recorded:
    """What the upstream saw, asked after the fact: the requests and their calls' log."""

    _lock: threading.Lock
    requests: list[Body]
    calls: list[Call]

    @property
    def request_times(self) -> dict[str, list[float]]:
        """Arrival times of the requests, by model (from the call log)."""
        times: dict[str, list[float]] = defaultdict(list)
        with self._lock:
            for call in self.calls:
                times[call.model].append(call.arrived)
        return times

    @property
    def connections(self) -> int:
        """How many connections the recorded requests came on (a client that reuses its
        connections opens fewer than it sends requests)."""
        with self._lock:
            return len({c.client_port for c in self.calls})

    def requests_for(self, model: str) -> list[Body]:
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]


class FakeUpstream(Recorded, LoopbackServer):
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[Body] = []
        self.disconnects = 0  # clients that went away before their answer was complete
        self.active = 0
        self.max_active = 0
        self.throttled = 0  # requests answered 429 by the rate limit below
        self.calls: list[Call] = []
        self._profiles: dict[str | None, Profile] = {}
        self._rate: _Window | None = None
        self.default_reply = Reply()  # what a model with no script answers
        # OpenAI's Batch API (moa.testing.batch_api), answering from the same scripts.
        self.batches = FakeBatchAPI(self._batch_answer)
        routes = [
            Route("/v1/chat/completions", self._chat, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
            *self.batches.routes(),
        ]
        super().__init__(Starlette(routes=routes), host=host, port=port)
        self.base_url = f"http://{host}:{self.port}/v1"

    # -- scripting -------------------------------------------------------------------------

    def script(self, model: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[model] = list(replies)

    def latency(self, model: str | None, profile: Profile | None) -> None:
        """Give `model` (None: every model without its own) a latency profile; None removes it."""
        with self._lock:
            if profile is None:
                self._profiles.pop(model, None)
            else:
                self._profiles[model] = profile

    def rate_limit(self, limit: int | None, window_s: float = 60.0) -> None:
        """Answer 429 (with Retry-After) past `limit` requests in any `window_s` seconds."""
        with self._lock:
            self._rate = None if limit is None else _Window(limit, window_s)

    def reset(self) -> None:
        """Forget every script and recorded request (for reuse across tests)."""
        with self._lock:
            self._rate = None
            self.throttled = 0
            self.calls.clear()
            self._profiles.clear()
            self._scripts.clear()
            self.default_reply = Reply()
            self.requests.clear()
            self.disconnects = 0
            self.max_active = 0
        self.batches.reset()

    def _next_reply(self, model: str, body: Body) -> Reply:
        with self._lock:
            queue = self._scripts.get(model)
            reply = (
                self.default_reply if not queue else queue.pop(0) if len(queue) > 1 else queue[0]
            )
            profile = self._profiles.get(model, self._profiles.get(None))
        if profile is None or reply.delay_s or reply.token_delay_s:
            return reply
        messages = body.get("messages") or [{}]
        key = str(messages[-1].get("content", "")) if isinstance(messages[-1], dict) else ""
        delay = profile.first_token_s(model, key)
        return replace(reply, delay_s=delay, token_delay_s=profile.token_delay_s)

    def _batch_answer(self, body: Body) -> tuple[int, Body]:
        """One request of a Batch API job, answered as the chat endpoint would (whole)."""
        model = str(body.get("model", ""))
        reply = self._next_reply(model, body)
        text = reply.text(body) if callable(reply.text) else reply.text
        return whole(reply, f"answer from {model}" if text is None else text, body)

    # -- HTTP --------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        with self._lock:
            names = sorted(self._scripts)
        return JSONResponse(
            {"object": "list", "data": [{"id": n, "object": "model"} for n in names]}
        )

    async def _chat(self, request: Request) -> Response:
        body: Body = await request.json()
        model = str(body.get("model", ""))
        port = request.client.port if request.client else None
        call = Call(model, time.monotonic(), client_port=port, streamed=bool(body.get("stream")))
        call.api_key = _bearer(request)
        wait = self._arrived(call, body)
        if wait is not None:
            return rate_limited(wait)
        reply = self._next_reply(model, body)
        call.status = reply.status
        text = reply.text(body) if callable(reply.text) else reply.text
        if text is None:
            text = f"answer from {model}"
        delay = reply.delay_s
        if not body.get("stream") and reply.token_delay_s:
            delay += reply.token_delay_s * len(words(text))  # generated before it is sent
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if delay and not await _sleep_unless_gone(request, delay):
                self.disconnects += 1
                return Response(status_code=499)
        finally:
            self.active -= 1
        call.first_byte = time.monotonic()
        if not body.get("stream"):
            call.finished = call.first_byte
        return respond(reply, text, body, call, self._disconnected)

    def _arrived(self, call: Call, body: Body) -> float | None:
        """The request logged; the seconds it must wait when over the rate limit (it is then
        answered 429), else None."""
        now = call.arrived
        with self._lock:
            self.requests.append(body)
            self.calls.append(call)
            wait = None if self._rate is None else self._rate.wait(now)
            if wait is not None:
                self.throttled += 1
                call.status, call.finished = 429, now
        return wait

    def _disconnected(self) -> None:
        self.disconnects += 1


class _Window:
    """At most `limit` requests in any `window_s` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._sent: deque[float] = deque()

    def wait(self, now: float) -> float | None:
        """Seconds until a request would be allowed, or None if it is allowed (and counted)."""
        while self._sent and self._sent[0] <= now - self.window_s:
            self._sent.popleft()
        if len(self._sent) >= self.limit:
            return self._sent[0] + self.window_s - now
        self._sent.append(now)
        return None


async def _sleep_unless_gone(request: Request, seconds: float) -> bool:
    """Sleep, but return False as soon as the client disconnects."""

    async def gone() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
        return watcher not in done
    finally:
        watcher.cancel()


def _bearer(request: Request) -> str | None:
    """The key a request carried as `Authorization: Bearer KEY`, as OpenAI's SDK sends it."""
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
