"""Splitting one batch over N processes or hosts (`moa batch --shard K/N`) and joining the
shard outputs (`moa batch merge`).

An item belongs to shard K of N by a hash of its id, not by its line number: every shard
reads the same input and picks the same items whatever the order of the lines, and a rerun
of a shard resumes its own output. Shard K writes `OUTPUT.K-of-N.jsonl` next to OUTPUT.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moa.batch.items import Item
from moa.batch.jsonl import AppendLog, read_jsonl
from moa.errors import ConfigError, InputError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """`2/4` → (2, 4): the second of four shards (counted from 1)."""
    match = _SPEC.match(text)
    if not match:
        raise ConfigError(f"--shard takes K/N, e.g. 1/4 for the first of four; got {text!r}")
    k, n = int(match[1]), int(match[2])
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {text}: K must be between 1 and N")
    return k, n


def shard_of(item_id: Any, n: int) -> int:
    """The shard (1..n) an id belongs to; the same on every host and Python version."""
    blob = _key(item_id).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") % n + 1


def select(items: Sequence[Item], k: int, n: int) -> list[Item]:
    return [item for item in items if shard_of(item.id, n) == k]


def shard_path(output: Path, k: int, n: int) -> Path:
    return output.with_name(f"{output.stem}.{k}-of-{n}{output.suffix}")


def pick(items: Sequence[Item], output: Path, shard: str | None) -> tuple[list[Item], Path]:
    """The items to answer and the file to append them to: all into `output` without a
    `shard` (`K/N`), else shard K's items into `OUTPUT.K-of-N.jsonl`."""
    if shard is None:
        return list(items), output
    k, n = parse_shard(shard)
    return select(items, k, n), shard_path(output, k, n)


def find_shards(output: Path) -> list[Path]:
    """The shard outputs of OUTPUT next to it; all N of one split, or a ConfigError."""
    pattern = re.compile(re.escape(output.stem) + r"\.(\d+)-of-(\d+)" + re.escape(output.suffix))
    found: dict[int, dict[int, Path]] = {}
    for path in output.parent.glob(f"{output.stem}.*-of-*{output.suffix}"):
        if match := pattern.fullmatch(path.name):
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        raise ConfigError(f"no shard outputs {shard_path(output, 1, 2).name} etc. next to {output}")
    if len(found) > 1:
        raise ConfigError(f"shards of different splits next to {output}: {sorted(found)} ways")
    n, shards = next(iter(found.items()))
    missing = [k for k in range(1, n + 1) if k not in shards]
    if missing:
        names = ", ".join(shard_path(output, k, n).name for k in missing)
        raise ConfigError(f"missing shard outputs: {names}; run those shards first")
    return [shards[k] for k in range(1, n + 1)]


@dataclass(slots=True)
class Merged:
    written: int = 0
    already: int = 0  # in the output before this merge
    missing: list[Any] = field(default_factory=list)  # input ids no shard has answered


def merge(output: Path, shards: Sequence[Path], input_items: Sequence[Item] = ()) -> Merged:
    """Append every shard record not yet in `output` (crash-safe and resumable, like a batch),
    in input order when the input is given."""
    records: dict[str, dict[str, Any]] = {}
    for path in shards:
        for number, record in read_jsonl(path):
            if "id" not in record:
                raise InputError(f"{path}:{number}: a record without an `id`")
            key = _key(record["id"])
            if key in records and records[key] != record:
                raise InputError(f"{path}:{number}: id {record['id']!r} is in two shards")
            records[key] = record
    order = [_key(i.id) for i in input_items] or list(records)
    stats = Merged(missing=[i.id for i in input_items if _key(i.id) not in records])
    with AppendLog(output) as log:
        for key in order:
            if key not in records:
                continue
            record = records[key]
            if record["id"] in log:
                stats.already += 1
                continue
            log.append(record)
            stats.written += 1
    return stats


def _key(item_id: Any) -> str:
    return json.dumps(item_id, sort_keys=True)
