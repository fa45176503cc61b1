"""A bare OpenAI-compatible upstream for the overhead and server rows: raw asyncio HTTP/1.1.

Run in its own process so that its CPU time is not counted in the client's:

    python -m benchmarks.rawserver     # prints "PORT <n>", serves until stdin closes
    python -m benchmarks.rawserver --ttft-ms 50 --tokens 10 --token-ms 5

POST /v1/chat/completions answers at once by default (JSON, or SSE when "stream" is true, as
five word chunks and a usage chunk). With a latency (row 4), a streamed answer waits
`--ttft-ms` before its headers and first token, then sends `--tokens` word chunks
`--token-ms` apart (chunked transfer encoding, so the connection stays alive); a JSON answer
waits for the whole of it. GET /cpu answers this process's CPU seconds so far. It is an
OTLP/HTTP collector too (row 13): POST /v1/traces and /v1/metrics are read and answered 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time

WORDS = ["The ", "answer ", "is ", "forty-", "two."]


class Shape:
    """How a streamed answer is paced (all zero: at once, row 3's zero-latency upstream)."""

    ttft_s = 0.0
    token_s = 0.0
    tokens = len(WORDS)

    @classmethod
    def paced(cls) -> bool:
        return cls.ttft_s > 0 or cls.token_s > 0


def _words() -> list[str]:
    return [WORDS[i % len(WORDS)] for i in range(Shape.tokens)]


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
                    "message": {"role": "assistant", "content": "".join(_words())},
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(),
        }
    ).encode()


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": 10,
        "completion_tokens": Shape.tokens,
        "total_tokens": 10 + Shape.tokens,
    }


def _sse_events(model: str) -> list[str]:
    """role chunk, one chunk per word, finish chunk, usage chunk, [DONE]."""

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
    parts += [
        event([{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in _words()
    ]
    parts.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    parts.append(event([], usage=_usage()))
    parts.append("data: [DONE]\n\n")
    return parts


def _sse(model: str) -> bytes:
    return "".join(_sse_events(model)).encode()


async def _paced_sse(writer: asyncio.StreamWriter, model: str) -> None:
    """Headers and the first word after the TTFT, then a word every token gap; chunked."""
    parts = _sse_events(model)
    await asyncio.sleep(Shape.ttft_s)
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
    )
    words = Shape.tokens
    # role chunk + first word together; then each further word; then the tail in one write.
    groups = ["".join(parts[:2]), *parts[2 : 1 + words], "".join(parts[1 + words :])]
    for i, text in enumerate(groups):
        if i > 0 and i < len(groups) - 1 and Shape.token_s > 0:
            await asyncio.sleep(Shape.token_s)
        data = text.encode()
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()
    writer.write(b"0\r\n\r\n")


def _response(body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\nconnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # asyncio turns Nagle off only for sockets whose proto is IPPROTO_TCP, and ours (made with
    # proto 0) is not: without this a paced stream's first chunk, written after the headers,
    # waits ~40 ms for the client's delayed ACK on every keep-alive request after the first.
    connection = writer.get_extra_info("socket")
    if connection is not None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
            elif request_line.startswith(("POST /v1/traces", "POST /v1/metrics")):
                writer.write(_response(b"", "application/x-protobuf"))
            else:
                data = json.loads(body or b"{}")
                model = str(data.get("model", "m"))
                if data.get("stream") and Shape.paced():
                    await _paced_sse(writer, model)
                elif data.get("stream"):
                    writer.write(_response(_sse(model), "text/event-stream"))
                else:
                    if Shape.paced():
                        await asyncio.sleep(Shape.ttft_s + Shape.token_s * (Shape.tokens - 1))
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


def _parse(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rawserver")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="time to first token")
    parser.add_argument("--token-ms", type=float, default=0.0, help="gap between tokens")
    parser.add_argument("--tokens", type=int, default=len(WORDS), help="word chunks per answer")
    args = parser.parse_args(argv)
    Shape.ttft_s, Shape.token_s = args.ttft_ms / 1000, args.token_ms / 1000
    Shape.tokens = max(1, args.tokens)


if __name__ == "__main__":
    _parse()
    asyncio.run(_main())
