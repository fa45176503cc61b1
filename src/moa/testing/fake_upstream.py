"""A fake OpenAI-compatible upstream over real HTTP on 127.0.0.1, scriptable per model.

    with FakeUpstream() as up:
        up.script("slow", Reply("late answer", delay_s=1.0))
        up.script("flaky", Reply(status=500), Reply("second try works"))
        ... point a provider at up.base_url ...
        up.requests_for("slow")  # the JSON bodies it received
        up.latency("p1", Profile(ttft=LogNormal(0.05, 0.8), tokens_per_s=200))  # see latency.py
        up.calls  # when each request arrived, got its first byte and finished

A reply may call tools (`Reply(tool_calls=[{"name": "f", "arguments": '{"x": 1}'}])`, streamed
as OpenAI's deltas, arguments in two pieces). A request with `logprobs: true` gets a log
probability for each word (and `top_logprobs` alternatives).

Replies queued for a model are used in order; the last one repeats. A model with no script
answers "answer from MODEL". A reply with no delays of its own takes its model's latency
profile (or the default one set with `latency(None, ...)`), if any. Needs the `server` extra
(starlette + uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from moa.testing.latency import Profile

Body = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `text` may be a function of the request body."""

    text: str | Callable[[Body], str] | None = None
    status: int = 200
    delay_s: float = 0.0  # before the response starts (time to first byte)
    token_delay_s: float = 0.0  # between streamed chunks
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # sent as is, e.g. malformed JSON or an HTML error page
    content_type: str = "application/json"
    cut_after_tokens: int | None = None  # drop the connection mid-stream (or mid-body)
    content_null: bool = False  # `"content": null`
    error_code: str | None = None  # OpenAI error `code`, e.g. context_length_exceeded
    usage: tuple[int, int] | None = None  # (prompt, completion); default counts words
    cost: float | None = None  # sent as `usage.cost` (USD), as OpenRouter reports it
    finish_reason: str = "stop"  # e.g. "length", as when max_tokens cut the answer
    # Ignore `stream_options.include_usage`, as llama.cpp's own server does: no usage chunk.
    ignore_stream_options: bool = False
    # Calls to make: [{"name": ..., "arguments": "<JSON text>"}]; ids are call_0, call_1, …
    tool_calls: list[dict[str, str]] | None = None

    @property
    def finish(self) -> str:
        return (
            "tool_calls"
            if self.tool_calls and self.finish_reason == "stop"
            else (self.finish_reason)
        )


@dataclass(slots=True)
class Call:
    """One request as the upstream saw it (time.monotonic() seconds, this process's clock)."""

    model: str
    arrived: float
    first_byte: float | None = None  # when the answer started (after time to first token)
    finished: float | None = None  # when its last byte was handed to the server
    status: int = 200


def continuing(answer: str) -> Callable[[Body], str]:
    """A model that continues a final assistant message, as vLLM (`continue_final_message`) and
    llama.cpp's server do: it sends the rest of `answer` after the prefix it receives.

        up.script("agg", Reply(continuing("The whole answer."), token_delay_s=0.01))

    A prefix that is not the start of `answer` (rewritten or repeated text) gets
    MISMATCH, so a test sees it in what the user was shown."""

    def rest(body: Body) -> str:
        messages = body.get("messages") or [{}]
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        if last.get("role") != "assistant":
            return answer
        prefix = str(last.get("content", ""))
        return answer[len(prefix) :] if answer.startswith(prefix) else MISMATCH

    return rest


MISMATCH = "<the continuation prefix is not the start of the answer>"


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p if i == len(parts) - 1 else p + " " for i, p in enumerate(parts)]


class FakeUpstream:
    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self._scripts: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.requests: list[Body] = []
        self.disconnects = 0  # clients that went away before their answer was complete
        self.active = 0
        self.max_active = 0
        self.throttled = 0  # requests answered 429 by the rate limit below
        self.calls: list[Call] = []
        self._profiles: dict[str | None, Profile] = {}
        self._rate: tuple[int, float] | None = None
        self._window: deque[float] = deque()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: without it a reply written as headers then body waits
        # for the client's delayed ACK (about 40 ms on Linux) before the body is sent.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind((host, 0))
        self._socket.listen(1024)
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"http://{host}:{self.port}/v1"
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, log_level="critical", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

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
            self._rate = None if limit is None else (limit, window_s)
            self._window.clear()

    def _over_limit(self, now: float) -> float | None:
        """Seconds until a request would be allowed, or None if it is allowed now."""
        if self._rate is None:
            return None
        limit, window = self._rate
        while self._window and self._window[0] <= now - window:
            self._window.popleft()
        if len(self._window) >= limit:
            return self._window[0] + window - now
        self._window.append(now)
        return None

    def reset(self) -> None:
        """Forget every script and recorded request (for reuse across tests)."""
        with self._lock:
            self._rate = None
            self._window.clear()
            self.throttled = 0
            self.calls.clear()
            self._profiles.clear()
            self._scripts.clear()
            self.requests.clear()
            self.disconnects = 0
            self.max_active = 0

    @property
    def request_times(self) -> dict[str, list[float]]:
        """Arrival times of the requests, by model (from the call log)."""
        times: dict[str, list[float]] = defaultdict(list)
        with self._lock:
            for call in self.calls:
                times[call.model].append(call.arrived)
        return times

    def requests_for(self, model: str) -> list[Body]:
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]

    def _next_reply(self, model: str, body: Body) -> Reply:
        with self._lock:
            queue = self._scripts.get(model)
            reply = Reply() if not queue else queue.pop(0) if len(queue) > 1 else queue[0]
            profile = self._profiles.get(model, self._profiles.get(None))
        if profile is None or reply.delay_s or reply.token_delay_s:
            return reply
        messages = body.get("messages") or [{}]
        key = str(messages[-1].get("content", "")) if isinstance(messages[-1], dict) else ""
        delay = profile.first_token_s(model, key)
        return replace(reply, delay_s=delay, token_delay_s=profile.token_delay_s)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeUpstream:
        # The socket already listens, so clients may connect before the loop is up.
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
        now = time.monotonic()
        call = Call(model, now)
        with self._lock:
            self.requests.append(body)
            self.calls.append(call)
            wait = self._over_limit(now)
            if wait is not None:
                self.throttled += 1
        if wait is not None:
            call.status, call.finished = 429, now
            headers = {
                "retry-after-ms": str(int(wait * 1000) + 1),
                "retry-after": str(math.ceil(wait)),
            }
            error = {"message": "rate limited", "type": "rate_limit", "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=429, headers=headers)
        reply = self._next_reply(model, body)
        call.status = reply.status
        text = reply.text(body) if callable(reply.text) else reply.text
        if text is None:
            text = f"answer from {model}"
        delay = reply.delay_s
        if not body.get("stream") and reply.token_delay_s:
            delay += reply.token_delay_s * len(_words(text))  # generated before it is sent
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
        if reply.raw_body is not None:
            return Response(
                reply.raw_body,
                status_code=reply.status,
                media_type=reply.content_type,
                headers=reply.headers,
            )
        if reply.status >= 400:
            error = {
                "message": f"scripted HTTP {reply.status}",
                "type": "fake_error",
                "param": None,
                "code": reply.error_code,
            }
            return JSONResponse({"error": error}, status_code=reply.status, headers=reply.headers)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        usage = reply.usage or (prompt_tokens, len(text.split()))
        if body.get("stream"):
            return StreamingResponse(
                self._sse(call, model, "" if reply.content_null else text, reply, usage, body),
                media_type="text/event-stream",
                headers=reply.headers,
            )
        message: Body = {"role": "assistant", "content": None if reply.content_null else text}
        if reply.tool_calls:
            message["tool_calls"] = _tool_calls(reply.tool_calls)
        choice: Body = {"index": 0, "message": message, "finish_reason": reply.finish}
        if body.get("logprobs"):
            choice["logprobs"] = {"content": _logprobs(_words(text), body)}
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": _usage(usage, reply.cost),
        }
        if reply.cut_after_tokens is not None:
            return StreamingResponse(_cut(json.dumps(payload)), media_type="application/json")
        return JSONResponse(payload, headers=reply.headers)

    async def _sse(
        self,
        call: Call,
        model: str,
        text: str,
        reply: Reply,
        usage: tuple[int, int],
        body: Body,
    ) -> AsyncIterator[str]:
        def chunk(
            delta: dict[str, Any], finish: str | None = None, logprobs: Any = None, **extra: Any
        ) -> str:
            choices = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]
            payload = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            for i, word in enumerate(_words(text) if text else []):
                if reply.cut_after_tokens is not None and i >= reply.cut_after_tokens:
                    raise ConnectionResetError("scripted stream cut")
                if reply.token_delay_s:
                    await asyncio.sleep(reply.token_delay_s)
                logprobs = {"content": _logprobs([word], body)} if body.get("logprobs") else None
                yield chunk({"content": word}, logprobs=logprobs)
            for delta in _tool_call_deltas(reply.tool_calls or []):
                yield chunk({"tool_calls": [delta]})
            yield chunk({}, reply.finish)
            wants_usage = (body.get("stream_options") or {}).get("include_usage")
            if wants_usage and not reply.ignore_stream_options:
                payload = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [],
                    "usage": _usage(usage, reply.cost),
                }
                yield f"data: {json.dumps(payload)}\n\n"
            call.finished = time.monotonic()
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.disconnects += 1
            raise


def _tool_calls(calls: list[dict[str, str]]) -> list[Body]:
    return [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": c["name"], "arguments": c.get("arguments", "{}")},
        }
        for i, c in enumerate(calls)
    ]


def _tool_call_deltas(calls: list[dict[str, str]]) -> list[Body]:
    """Each call as OpenAI streams it: id and name first, then the arguments in two pieces."""
    deltas: list[Body] = []
    for i, call in enumerate(_tool_calls(calls)):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        first = {"name": call["function"]["name"], "arguments": ""}
        deltas.append({"index": i, "id": call["id"], "type": "function", "function": first})
        for piece in (arguments[:half], arguments[half:]):
            deltas.append({"index": i, "function": {"arguments": piece}})
    return deltas


def _logprobs(words: list[str], body: Body) -> list[Body]:
    """A made-up log probability per word: -0.5 for the chosen one, lower alternatives."""
    top = int(body.get("top_logprobs") or 0)
    return [
        {
            "token": word,
            "logprob": -0.5,
            "bytes": list(word.encode()),
            "top_logprobs": [
                {"token": f"alt{k}", "logprob": -1.0 - k, "bytes": None} for k in range(top)
            ],
        }
        for word in words
    ]


def _usage(tokens: tuple[int, int], cost: float | None) -> Body:
    usage: Body = {
        "prompt_tokens": tokens[0],
        "completion_tokens": tokens[1],
        "total_tokens": tokens[0] + tokens[1],
    }
    if cost is not None:
        usage["cost"] = cost
    return usage


async def _cut(body: str) -> AsyncIterator[str]:
    """Send half of a JSON body, then drop the connection (a reset mid-response)."""
    yield body[: len(body) // 2]
    raise ConnectionResetError("scripted connection reset")


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
