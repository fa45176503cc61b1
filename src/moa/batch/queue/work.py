"""A work queue on Redis for `moa batch --queue` and `moa worker`: one run's prompts in a Redis
Stream read by a consumer group, so any number of workers on any hosts share them.

`--queue redis://HOST:PORT/DB?name=NAME` names the queue (default `default`). Its keys, all
with the hash tag `{moa:queue:NAME}`:

    :meta      the run: its recipe (content, not a path) and options, its fingerprint, the
               visibility timeout; counters (answers kept per worker, second answers)
    :stream    one entry per prompt waiting or in work (XADD; read with XREADGROUP)
    :todo      the keys of the prompts not answered yet (what makes enqueueing idempotent)
    :results   key → answer, written together with the entry's XACK (scripts.RECORD)
    :failures  key → why its run failed
    :workers   each worker's info and when it was last seen

No API key ever goes into Redis: a worker reads its own environment. A worker that dies
holding entries stops renewing them; once idle past the visibility timeout, another worker
takes them over with XAUTOCLAIM.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from moa.batch.queue import scripts
from moa.batch.queue.link import GROUP, QueueConnection, QueueLostError, split_name
from moa.batch.queue.status import Status, WorkerState, read_status
from moa.errors import ConfigError

_CHUNK = 200  # prompts per enqueue script: long enough to be cheap, short enough not to block

__all__ = ["Entry", "QueueLostError", "Run", "Status", "WorkQueue", "WorkerState", "split_name"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One prompt as a worker holds it: the stream entry's id, the prompt's key, its body."""

    id: str
    key: str
    item: str  # JSON
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class Run:
    """What the queue carries: the recipe and options every worker runs the prompts with."""

    fingerprint: str
    recipe: dict[str, Any]
    options: dict[str, Any]
    visibility_s: float
    counters: dict[str, int] = field(default_factory=dict)


class WorkQueue(QueueConnection):
    """One queue's steps: the run's (open, enqueue, read) and a worker's (take, reclaim,
    renew, record, fail, leave)."""

    # -- the run -----------------------------------------------------------------------------

    async def open(
        self, fingerprint: str, recipe: dict[str, Any], options: dict[str, Any], visibility_s: float
    ) -> None:
        """Put the run on the queue, or find it there already (a rerun); a queue holding
        another run is a ConfigError."""
        await self.ping()
        k = self.keys
        blob = json.dumps(recipe, sort_keys=True)
        args = [fingerprint, blob, json.dumps(options, sort_keys=True)]
        args += [str(int(visibility_s * 1000)), GROUP]
        ok, held = await self._run(scripts.OPEN, [k["meta"], k["stream"]], args)
        if not ok:
            raise ConfigError(
                f"the queue at {self.where} carries another run (recipe or options differ: "
                f"{held[:12]} here, {fingerprint[:12]} asked); name another queue "
                f"(--queue URL?name=NEW) or remove that one with `moa queue clear URL`"
            )

    async def run(self) -> Run | None:
        """The run the queue carries, or None: nobody has started one."""
        await self.ping()
        meta = await self._do(self.client().hgetall(self.keys["meta"]))
        if not meta or "recipe" not in meta:
            return None
        counters = {k: int(v) for k, v in meta.items() if k.startswith("answered_by:")}
        counters["second_answers"] = int(meta.get("second_answers", 0))
        return Run(
            fingerprint=meta["fingerprint"],
            recipe=json.loads(meta["recipe"]),
            options=json.loads(meta["options"]),
            visibility_s=int(meta["visibility_ms"]) / 1000,
            counters=counters,
        )

    async def enqueue(self, items: Iterable[tuple[str, str]]) -> int:
        """Queue (key, item JSON) pairs not answered and not waiting yet; how many were new."""
        k = self.keys
        names = [k["stream"], k["todo"], k["results"], k["failures"]]
        added, chunk = 0, []
        for key, item in items:
            chunk += [key, item]
            if len(chunk) >= 2 * _CHUNK:
                added += await self._run(scripts.ENQUEUE, names, chunk)
                chunk = []
        if chunk:
            added += await self._run(scripts.ENQUEUE, names, chunk)
        return int(added)

    # -- a worker's steps --------------------------------------------------------------------

    async def take(self, consumer: str, count: int, block_ms: int | None = None) -> list[Entry]:
        """Up to `count` prompts no worker has had yet; waits up to block_ms for one."""
        block = self.block_ms if block_ms is None else block_ms
        stream = self.keys["stream"]
        read = self.client().xreadgroup(GROUP, consumer, {stream: ">"}, count=count, block=block)
        answer = await self._do(read)
        return [_entry(i, f) for _, entries in answer or [] for i, f in entries]

    async def reclaim(self, consumer: str, count: int, min_idle_ms: int) -> list[Entry]:
        """Up to `count` prompts other workers took and have not touched for min_idle_ms."""
        stream = self.keys["stream"]
        claim = self.client().xautoclaim(stream, GROUP, consumer, min_idle_ms, "0-0", count=count)
        claimed = (await self._do(claim))[1]
        entries = []
        for entry_id, fields in claimed:
            if not fields:  # dropped from the stream meanwhile (answered)
                continue
            pending = self.client().xpending_range(stream, GROUP, entry_id, entry_id, 1)
            info = await self._do(pending)
            deliveries = int(info[0]["times_delivered"]) if info else 1
            entries.append(_entry(entry_id, fields, deliveries))
        return entries

    async def renew(self, consumer: str, info: dict[str, Any], held: Sequence[str]) -> set[str]:
        """Heartbeat: this worker is alive and still working on `held` (entry ids); the ids
        it still holds (another worker may have claimed one)."""
        k = self.keys
        args = [GROUP, consumer, json.dumps(info), *held]
        kept = await self._run(scripts.RENEW, [k["stream"], k["workers"]], args)
        return set(kept)

    async def record(self, consumer: str, entry: Entry, answer: str) -> bool:
        """Keep the answer and acknowledge the entry, atomically; False: the prompt had been
        answered already (by a worker that took it over), and this answer is dropped."""
        k = self.keys
        names = [k["results"], k["todo"], k["stream"], k["meta"]]
        fresh = await self._run(
            scripts.RECORD, names, [GROUP, entry.id, entry.key, answer, consumer]
        )
        return bool(fresh)

    async def fail(self, entry: Entry, message: str) -> None:
        k = self.keys
        names = [k["results"], k["todo"], k["failures"], k["stream"]]
        await self._run(scripts.FAIL, names, [GROUP, entry.id, entry.key, message])

    async def leave(self, consumer: str, info: dict[str, Any]) -> None:
        """A worker that stops cleanly: marked as gone, and out of the group if it holds
        nothing (a consumer's pending entries would be lost with it)."""
        client = self.client()
        await self._do(client.hset(self.keys["workers"], consumer, json.dumps(info)))
        pending = await self._do(
            client.xpending_range(self.keys["stream"], GROUP, "-", "+", 1, consumername=consumer)
        )
        if not pending:
            await self._do(client.xgroup_delconsumer(self.keys["stream"], GROUP, consumer))

    # -- reading -----------------------------------------------------------------------------

    async def outstanding(self) -> int:
        """Prompts not answered and not failed (waiting, or in some worker's hands)."""
        return int(await self._do(self.client().scard(self.keys["todo"])))

    async def answers(self, wanted: Sequence[str]) -> dict[str, str]:
        return await self._fields(self.keys["results"], wanted)

    async def failures(self, wanted: Sequence[str]) -> dict[str, str]:
        return await self._fields(self.keys["failures"], wanted)

    async def _fields(self, name: str, wanted: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = list(wanted[start : start + 500])
            values = await self._do(self.client().hmget(name, chunk))
            found.update((k, v) for k, v in zip(chunk, values, strict=True) if v is not None)
        return found

    async def status(self) -> Status:
        run = await self.run()
        if run is None:
            raise ConfigError(
                f"no run on the queue at {self.where}; start one with "
                f"`moa batch INPUT -o OUTPUT --queue URL`"
            )
        recipe = str(run.recipe.get("name", "?"))
        return await read_status(self, recipe, run.visibility_s, run.counters)

    async def clear(self) -> int:
        """Remove the queue (run, prompts, answers); how many keys were removed."""
        await self.ping()
        return int(await self._do(self.client().delete(*self.keys.values())))


def _entry(entry_id: str, fields: dict[str, str], deliveries: int = 1) -> Entry:
    return Entry(entry_id, fields["key"], fields["item"], deliveries)
