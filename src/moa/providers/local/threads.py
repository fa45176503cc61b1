"""How many threads llama.cpp computes with, chosen from what else the machine is doing.

llama.cpp's threads meet at a barrier after every operation of every token and spin while they
wait. When another busy process shares the cores, the thread that lands on its core is
descheduled for whole time slices and the others spin at the barrier for it: on 2 cores beside
one busy loop, 2 threads ran at about a third of their quiet speed, 1 thread at about half.
Waiting passively instead (OMP_WAIT_POLICY) costs ~1.8x when the machine is quiet. So the count
follows the load: every core while the others are idle, one core fewer for each core the
other processes keep busy, re-read a few times a second between tokens. MOA_LOCAL_THREADS fixes
the count instead (the override).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from moa.errors import ConfigError

# How often the load is read again; a token takes ~10-40 ms on the embedded models.
REREAD_S = 0.25
# Cores kept busy by other processes before a thread is given up: below this, background
# noise (a shell, a logger) would cost a thread the model needs.
YIELD_AT = 0.35

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ThreadChoice:
    """What the embedded model runs with, as the trace and `moa ask --verbose` show it."""

    threads: int
    cores: int
    others_busy: float | None  # cores other processes kept busy lately; None: not measured
    fixed: bool  # set by MOA_LOCAL_THREADS (or the provider's caller), not by the load

    def describe(self) -> str:
        if self.fixed:
            return f"llama.cpp: {self.threads} of {self.cores} cores (MOA_LOCAL_THREADS)"
        if self.others_busy is None:
            return f"llama.cpp: {self.threads} of {self.cores} cores (load not readable)"
        return (
            f"llama.cpp: {self.threads} of {self.cores} cores "
            f"({self.others_busy:.1f} busy with other work)"
        )


def fixed_threads() -> int | None:
    """MOA_LOCAL_THREADS, or None when unset (the count then follows the load)."""
    value = os.environ.get("MOA_LOCAL_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"MOA_LOCAL_THREADS={value!r}: give a whole number of threads, 1 or more")
    return int(value)


def cores() -> int:
    """The cores this process may run on (its affinity mask, else every core)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_for(others_busy: float, n_cores: int) -> int:
    """Every core, less one for each core other processes keep busy (at least one)."""
    given_up = 0 if others_busy < YIELD_AT else int(others_busy - YIELD_AT) + 1
    return max(1, n_cores - given_up)


def read_machine_busy_s() -> float | None:
    """CPU seconds every process has spent busy since boot (Linux's /proc/stat), or None."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    # user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    ticks = [int(x) for x in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _CLOCK_TICKS


def read_own_busy_s() -> float:
    t = os.times()
    return t.user + t.system


class ThreadGovernor:
    """Chooses the thread count, re-reading the load at most every REREAD_S. Used on the llama
    thread only. `fixed` pins it (MOA_LOCAL_THREADS); the readers are parameters so that a test
    can play a machine's load."""

    def __init__(
        self,
        fixed: int | None,
        n_cores: int | None = None,
        *,
        machine_busy: Callable[[], float | None] = read_machine_busy_s,
        own_busy: Callable[[], float] = read_own_busy_s,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cores = n_cores or cores()
        self._machine_busy, self._own_busy, self._clock = machine_busy, own_busy, clock
        self._last: tuple[float, float, float] | None = None  # (wall, machine, own)
        if fixed is not None:
            self.choice = ThreadChoice(fixed, self._cores, None, fixed=True)
        else:
            self.choice = ThreadChoice(self._cores, self._cores, None, fixed=False)
            self._sample()

    def current(self) -> ThreadChoice:
        """The choice for the next decode, re-read from the load when it is due."""
        due = self._last is not None and self._clock() - self._last[0] >= REREAD_S
        if due and not self.choice.fixed:
            self._sample()
        return self.choice

    def _sample(self) -> None:
        machine = self._machine_busy()
        if machine is None:
            return
        now, own = self._clock(), self._own_busy()
        last, self._last = self._last, (now, machine, own)
        if last is None or now <= last[0]:
            return
        others = max(0.0, ((machine - last[1]) - (own - last[2])) / (now - last[0]))
        self.choice = ThreadChoice(threads_for(others, self._cores), self._cores, others, False)


class ThreadSetter:
    """Tells a llama.cpp context the governor's count before a decode, when it changed."""

    def __init__(self, governor: ThreadGovernor) -> None:
        self.governor = governor
        self._set: dict[int, int] = {}  # context address -> threads it was last given

    def apply(self, ctx: object) -> ThreadChoice:
        import llama_cpp

        choice = self.governor.current()
        address = getattr(ctx, "value", None) or id(ctx)  # a c_void_p: its address
        if self._set.get(address) != choice.threads:
            llama_cpp.llama_set_n_threads(ctx, choice.threads, choice.threads)
            self._set[address] = choice.threads
        return choice
