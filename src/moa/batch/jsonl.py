"""JSON Lines in and out, crash-safe.

Every output record is one `write(2)` of a complete line on an O_APPEND descriptor, then
fsync: a killed process (SIGKILL included) leaves whole lines plus at most one partial line
at the end, the one being written. Opening the file again truncates that partial tail, so a
resumed run appends after the last whole record and nothing is ever duplicated or corrupt.
An exclusive lock keeps two processes from appending to the same file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from moa.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def read_jsonl(path: Traversable) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line is a ConfigError naming it."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(value, dict):
                raise ConfigError(f"{path}:{number}: expected a JSON object")
            yield number, value


class AppendLog:
    """An append-only JSONL file of records, each with a unique `id`.

    with AppendLog(path) as log:
        log.done            # {id: record} already in the file (resume)
        log.append(record)  # durable when it returns
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[Any, dict[str, Any]] = {}
        self.truncated_bytes = 0
        self._fd = -1

    def __enter__(self) -> AppendLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"{self.path} is being written by another process") from None
        self._fd = fd
        try:
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1

    def _recover(self) -> None:
        data = b""
        with open(self._fd, "rb", closefd=False) as handle:
            handle.seek(0)
            data = handle.read()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            # The tail of a line whose write was cut short: it never became a record.
            os.ftruncate(self._fd, whole)
            os.fsync(self._fd)
            self.truncated_bytes = len(data) - whole
        for number, line in enumerate(data[:whole].splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"{self.path}:{number}: not valid JSON — this file was not written by "
                    f"moa alone; fix or remove that line, then rerun"
                ) from None
            if not isinstance(record, dict) or "id" not in record:
                raise ConfigError(f"{self.path}:{number}: a record without an `id`")
            self.done[_key(record["id"])] = record

    def __contains__(self, item_id: Any) -> bool:
        return _key(item_id) in self.done

    def get(self, item_id: Any) -> dict[str, Any] | None:
        return self.done.get(_key(item_id))

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        view = memoryview(line)
        # A regular file takes the whole line in one write; the loop only guards the rare
        # short write, and a kill between its writes leaves a partial tail that _recover cuts.
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self.done[_key(record["id"])] = record


def _key(item_id: Any) -> str:
    # 1 and "1" are different ids; JSON text tells them apart and is hashable.
    return json.dumps(item_id, sort_keys=True)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write a JSON document so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(value, handle, ensure_ascii=False, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
