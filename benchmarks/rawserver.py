"""A bare OpenAI-compatible upstream for the overhead row: raw asyncio HTTP/1.1, zero latency.

Run in its own process so that its CPU time is not counted in the client's:

    python -m benchmarks.rawserver     # prints "PORT <n>", serves until stdin closes

POST /v1/chat/completions answers at once (JSON, or SSE when "stream" is true, as five word
chunks and a usage chunk); GET /cpu answers this process's CPU seconds so far.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

WORDS = ["The ", "answer ", "is ", "forty-", "two."]


def _completion(model: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    ).encode()


def _sse(model: str) -> bytes:
    def event(choices: list[object], **extra: object) -> str:
        payload = {
            "id": "chatcmpl-raw",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n"

    parts = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
    parts += [event([{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in WORDS]
    parts.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    parts.append(event([], usage=usage))
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def _response(body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if request_line.startswith("GET /cpu"):
                writer.write(_response(str(time.process_time()).encode(), "text/plain"))
            else:
                data = json.loads(body or b"{}")
                model = str(data.get("model", "m"))
                if data.get("stream"):
                    writer.write(_response(_sse(model), "text/event-stream"))
                else:
                    writer.write(_response(_completion(model), "application/json"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(_handle, sock=sock, backlog=1024)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(_main())
