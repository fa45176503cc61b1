"""How many threads the embedded model computes with: MOA_LOCAL_THREADS when set, else every
core less the cores other processes keep busy, re-read from the load between decodes."""

from __future__ import annotations

import pytest

from moa.errors import ConfigError
from moa.providers.local.provider import default_threads
from moa.providers.local.threads import REREAD_S, ThreadGovernor, threads_for


class Machine:
    """A machine's CPU clocks as /proc/stat and os.times() report them, played by the test."""

    def __init__(self) -> None:
        self.now = 0.0
        self.machine_busy = 0.0  # every process's busy CPU seconds
        self.own_busy = 0.0  # this process's

    def run(self, seconds: float, *, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own_busy += own_cores * seconds
        self.machine_busy += (own_cores + other_cores) * seconds

    def governor(self, fixed: int | None = None, cores: int = 2) -> ThreadGovernor:
        return ThreadGovernor(
            fixed,
            cores,
            machine_busy=lambda: self.machine_busy,
            own_busy=lambda: self.own_busy,
            clock=lambda: self.now,
        )


def test_the_count_follows_the_load_when_nothing_fixes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOA_LOCAL_THREADS", raising=False)
    assert default_threads() is None


def test_moa_local_threads_fixes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOA_LOCAL_THREADS", "1")
    assert default_threads() == 1


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_value_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MOA_LOCAL_THREADS", value)
    with pytest.raises(ConfigError, match="whole number of threads"):
        default_threads()


@pytest.mark.parametrize(
    ("others", "cores", "threads"),
    [(0.0, 2, 2), (0.2, 2, 2), (0.6, 2, 1), (1.0, 2, 1), (2.0, 2, 1), (1.0, 8, 7), (2.5, 8, 5)],
)
def test_a_thread_is_given_up_for_each_core_others_keep_busy(
    others: float, cores: int, threads: int
) -> None:
    assert threads_for(others, cores) == threads


def test_every_core_on_a_quiet_machine() -> None:
    machine = Machine()
    governor = machine.governor()
    machine.run(1.0, own_cores=2.0, other_cores=0.05)
    choice = governor.current()
    assert (choice.threads, choice.fixed) == (2, False)
    assert choice.others_busy == pytest.approx(0.05)


def test_one_core_is_left_to_a_busy_neighbour_and_taken_back_when_it_stops() -> None:
    machine = Machine()
    governor = machine.governor()
    # Spinning on both cores beside a busy loop: the loop still gets about half a core.
    machine.run(1.0, own_cores=1.5, other_cores=0.5)
    assert governor.current().threads == 1
    machine.run(1.0, own_cores=1.0, other_cores=1.0)
    assert governor.current().threads == 1
    machine.run(1.0, own_cores=1.0, other_cores=0.0)
    assert governor.current().threads == 2


def test_the_load_is_read_again_only_when_due() -> None:
    machine = Machine()
    governor = machine.governor()
    machine.run(1.0, own_cores=1.0, other_cores=1.0)
    assert governor.current().threads == 1
    machine.run(REREAD_S / 2, own_cores=2.0, other_cores=0.0)
    assert governor.current().threads == 1  # not due yet: the last choice stands
    machine.run(REREAD_S, own_cores=2.0, other_cores=0.0)
    assert governor.current().threads == 2


def test_a_fixed_count_ignores_the_load() -> None:
    machine = Machine()
    governor = machine.governor(fixed=2)
    machine.run(1.0, own_cores=1.0, other_cores=1.0)
    choice = governor.current()
    assert (choice.threads, choice.fixed) == (2, True)
    assert "MOA_LOCAL_THREADS" in choice.describe()


def test_without_a_readable_load_every_core_is_used() -> None:
    governor = ThreadGovernor(None, 4, machine_busy=lambda: None, clock=lambda: 10.0)
    choice = governor.current()
    assert (choice.threads, choice.others_busy) == (4, None)
    assert "load not readable" in choice.describe()


def test_the_choice_says_what_it_runs_with() -> None:
    machine = Machine()
    governor = machine.governor()
    machine.run(1.0, own_cores=1.0, other_cores=1.0)
    assert governor.current().describe() == "llama.cpp: 1 of 2 cores (1.0 busy with other work)"
