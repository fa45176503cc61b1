"""What `moa queue status` shows: the run's progress and each worker's state, read from the
queue's keys (see moa.batch.queue.work) in one pass."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from moa.batch.queue import scripts
from moa.batch.queue.link import GROUP, QueueConnection


@dataclass(frozen=True, slots=True)
class WorkerState:
    name: str
    state: str  # working | idle | dead | left
    pending: int  # entries it holds, not yet answered
    answered: int  # answers of its that were kept
    seen_ago_s: float | None  # since its last heartbeat
    host: str = ""
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Status:
    where: str
    recipe: str
    visibility_s: float
    answered: int
    failed: int
    todo: int  # not answered: waiting plus pending
    waiting: int  # never handed to a worker yet
    pending: int  # in some worker's hands (a dead one's included, until claimed)
    second_answers: int  # answers dropped because the prompt was answered already
    workers: list[WorkerState] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.answered + self.failed + self.todo

    @property
    def dead(self) -> list[WorkerState]:
        return [w for w in self.workers if w.state == "dead"]


def build_status(
    where: str,
    recipe: str,
    visibility_s: float,
    counts: dict[str, int],
    consumers: list[dict[str, Any]],
    heartbeats: list[Any],
    answered_by: dict[str, int],
) -> Status:
    """`counts`: answered, failed, todo, stream length, pending; `consumers`: XINFO CONSUMERS;
    `heartbeats`: the WORKERS script's answer (Redis's clock, then name, info, seen ms)."""
    now, rest = int(heartbeats[0]), heartbeats[1:]
    seen: dict[str, tuple[dict[str, Any], int]] = {}
    for i in range(0, len(rest), 3):
        seen[str(rest[i])] = (json.loads(rest[i + 1]), int(rest[i + 2]))
    holding = {str(c["name"]): int(c["pending"]) for c in consumers}
    workers = []
    for name in sorted(set(seen) | set(holding)):
        info, last = seen.get(name, ({}, 0))
        ago = (now - last) / 1000 if last else None
        pending = holding.get(name, 0)
        if info.get("left"):
            state = "left"
        elif ago is None or ago > visibility_s:
            state = "dead"  # no heartbeat within a visibility timeout
        else:
            state = "working" if pending else "idle"
        workers.append(
            WorkerState(
                name,
                state,
                pending,
                answered_by.get(name, 0),
                ago,
                str(info.get("host", "")),
                info.get("pid"),
            )
        )
    pending = counts["pending"]
    return Status(
        where=where,
        recipe=recipe,
        visibility_s=visibility_s,
        answered=counts["answered"],
        failed=counts["failed"],
        todo=counts["todo"],
        waiting=max(0, counts["stream"] - pending),
        pending=pending,
        second_answers=counts.get("second_answers", 0),
        workers=workers,
    )


async def read_status(
    conn: QueueConnection, recipe: str, visibility_s: float, counters: dict[str, int]
) -> Status:
    k, client = conn.keys, conn.client()
    pipe = client.pipeline(transaction=True)
    pipe.hlen(k["results"])
    pipe.hlen(k["failures"])
    pipe.scard(k["todo"])
    pipe.xlen(k["stream"])
    pipe.xpending(k["stream"], GROUP)
    pipe.xinfo_consumers(k["stream"], GROUP)
    answered, failed, todo, length, summary, consumers = await conn._do(pipe.execute())
    heartbeats = await conn._run(scripts.WORKERS, [k["workers"]], [])
    counts = {"answered": answered, "failed": failed, "todo": todo, "stream": length}
    counts |= {"pending": int(summary["pending"]), **counters}
    answered_by = {
        name.removeprefix("answered_by:"): n
        for name, n in counters.items()
        if name.startswith("answered_by:")
    }
    return build_status(
        conn.where, recipe, visibility_s, counts, consumers, heartbeats, answered_by
    )
