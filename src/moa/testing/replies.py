"""What the fake upstream answers: a scripted `Reply`, and how it goes on the wire — a JSON
body, an error, or OpenAI's server-sent chunks (tool calls as deltas, made-up log
probabilities) — with the timings of each request kept in its `Call`."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

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
    # Repeat each call's id, type and name in every streamed delta, as llama-cpp-python's
    # server does (OpenAI sends them in a call's first delta only).
    repeat_call_names: bool = False
    hold_open_s: float = 0.0  # a stream's body ends this long after its `[DONE]`
    # The model the answer says it came from (a dated snapshot); None: the one requested.
    answered_by: str | None = None

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
    client_port: int | None = None  # the client's end of the connection it came on
    streamed: bool = False  # it asked for server-sent events (`"stream": true`)
    api_key: str | None = None  # the bearer token it carried (`Authorization: Bearer …`)


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


def words(text: str) -> list[str]:
    """The pieces a reply streams: its words, each with the space that follows it."""
    parts = text.split(" ")
    return [p if i == len(parts) - 1 else p + " " for i, p in enumerate(parts)]


def rate_limited(wait_s: float) -> Response:
    """OpenAI's 429, saying when to come back (both headers, as OpenAI sends them)."""
    headers = {"retry-after-ms": str(int(wait_s * 1000) + 1), "retry-after": str(math.ceil(wait_s))}
    error = {"message": "rate limited", "type": "rate_limit", "param": None, "code": None}
    return JSONResponse({"error": error}, status_code=429, headers=headers)


def respond(
    reply: Reply, text: str, body: Body, call: Call, disconnected: Callable[[], None]
) -> Response:
    """`reply` to the request `body`, answering `text`: as scripted (a raw body, an error), or
    a chat completion — streamed when asked (`call.finished` set at its end, `disconnected`
    called if the client leaves mid-stream), else whole (cut half-way when scripted)."""
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
    usage = _usage(reply.usage or (prompt_tokens, len(text.split())), reply.cost)
    if reply.answered_by is not None:
        body = {**body, "model": reply.answered_by}
    if body.get("stream"):
        chunks = _sse(call, "" if reply.content_null else text, reply, usage, body, disconnected)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=reply.headers)
    payload = _completion(text, reply, usage, body)
    if reply.cut_after_tokens is not None:
        return StreamingResponse(_cut(json.dumps(payload)), media_type="application/json")
    return JSONResponse(payload, headers=reply.headers)


def whole(reply: Reply, text: str, body: Body) -> tuple[int, Body]:
    """`reply` to `body` as a status and a JSON body, never streamed: what a Batch API job's
    output (or error) file holds for that request."""
    if reply.status >= 400:
        error = {
            "message": f"scripted HTTP {reply.status}",
            "type": "fake_error",
            "param": None,
            "code": reply.error_code,
        }
        return reply.status, {"error": error}
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    usage = _usage(reply.usage or (prompt_tokens, len(text.split())), reply.cost)
    if reply.answered_by is not None:
        body = {**body, "model": reply.answered_by}
    return 200, _completion(text, reply, usage, body)


def _completion(text: str, reply: Reply, usage: Body, body: Body) -> Body:
    message: Body = {"role": "assistant", "content": None if reply.content_null else text}
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls(reply.tool_calls)
    choice: Body = {"index": 0, "message": message, "finish_reason": reply.finish}
    if body.get("logprobs"):
        choice["logprobs"] = {"content": _logprobs(words(text), body)}
    return _envelope(body, "chat.completion", choices=[choice], usage=usage)


def _envelope(body: Body, kind: str, **fields: Any) -> Body:
    model = str(body.get("model", ""))
    payload = {"id": "chatcmpl-fake", "object": kind, "created": int(time.time()), "model": model}
    return payload | fields


def _chunk(body: Body, delta: Body, finish: str | None = None, logprobs: Any = None) -> str:
    choices = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]
    return _event(_envelope(body, "chat.completion.chunk", choices=choices))


def _event(payload: Body) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def _sse(
    call: Call,
    text: str,
    reply: Reply,
    usage: Body,
    body: Body,
    disconnected: Callable[[], None],
) -> AsyncIterator[str]:
    try:
        yield _chunk(body, {"role": "assistant", "content": ""})
        for i, word in enumerate(words(text) if text else []):
            if reply.cut_after_tokens is not None and i >= reply.cut_after_tokens:
                raise ConnectionResetError("scripted stream cut")
            if reply.token_delay_s:
                await asyncio.sleep(reply.token_delay_s)
            logprobs = {"content": _logprobs([word], body)} if body.get("logprobs") else None
            yield _chunk(body, {"content": word}, logprobs=logprobs)
        for delta in _tool_call_deltas(reply.tool_calls or [], reply.repeat_call_names):
            yield _chunk(body, {"tool_calls": [delta]})
        yield _chunk(body, {}, reply.finish)
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and not reply.ignore_stream_options:
            yield _event(_envelope(body, "chat.completion.chunk", choices=[], usage=usage))
        call.finished = time.monotonic()
        yield "data: [DONE]\n\n"
        if reply.hold_open_s:
            await asyncio.sleep(reply.hold_open_s)
    except asyncio.CancelledError:
        disconnected()
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


def _tool_call_deltas(calls: list[dict[str, str]], repeat: bool = False) -> list[Body]:
    """Each call as OpenAI streams it: id and name first, then the arguments in two pieces
    (`repeat`: id, type and name in every piece too)."""
    deltas: list[Body] = []
    for i, call in enumerate(_tool_calls(calls)):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        name = call["function"]["name"]
        head = {"index": i, "id": call["id"], "type": "function"}
        deltas.append({**head, "function": {"name": name, "arguments": ""}})
        for piece in (arguments[:half], arguments[half:]):
            if repeat:
                deltas.append({**head, "function": {"name": name, "arguments": piece}})
            else:
                deltas.append({"index": i, "function": {"arguments": piece}})
    return deltas


def _logprobs(pieces: list[str], body: Body) -> list[Body]:
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
        for word in pieces
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
