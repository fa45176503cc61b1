"""A throwaway `redis-server` on a free loopback port, for tests and benchmarks.

    with RedisServer() as redis:      # skips nothing itself: check `RedisServer.available()`
        redis.url                     # redis://127.0.0.1:PORT/0
        redis.stop(); redis.start()   # a Redis that goes away and comes back, same port

No persistence (`--save ''`, no AOF): every start is empty.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from pathlib import Path

READY = b"Ready to accept connections"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    def __init__(self, binary: str | None = None, port: int | None = None) -> None:
        self.binary = binary or shutil.which("redis-server") or "redis-server"
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> RedisServer:
        args = [self.binary, "--save", "", "--appendonly", "no", "--port", str(self.port)]
        args += ["--bind", "127.0.0.1", "--dir", str(Path("/tmp"))]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._process = process
        assert process.stdout is not None
        # Its log says when it listens; reading it waits exactly that long.
        seen = b""
        for line in process.stdout:
            seen += line
            if READY in line:
                break
        else:
            self.stop()
            raise RuntimeError(f"redis-server did not start:\n{seen.decode(errors='replace')}")
        # Keep reading its log, so the pipe never fills up.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
