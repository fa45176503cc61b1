"""`required = true` members hold their layer open: the quorum and its deadline wait for them,
and recipes whose requirements cannot be met are refused at load. A listening server needs a
key beyond loopback (or an explicit --no-auth)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from moa import Agent, recipes
from moa.cli.exposure import check_exposure, is_loopback
from moa.errors import ConfigError, OpenServerError
from moa.testing import FakeUpstream, Reply


def test_the_quorum_deadline_waits_for_a_required_member(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("strong", Reply("strong answer", delay_s=0.6))
    required = [Agent("fake:strong", required=True)]
    moa = make_moa([["quick"]], min_proposals=1, deadline_s=0.05)
    layer = moa.layers[0]
    layer.__init__(*required, "fake:quick", min_proposals=1, deadline_s=0.05)  # type: ignore[misc]
    result = moa.run("q")
    assert [c.ok for c in result.proposals()] == [True, True]
    assert not result.degradation.degraded
    assert "strong answer" in str(upstream.requests_for("agg")[0]["messages"][0]["content"])


def test_without_required_the_deadline_moves_on_without_it(
    upstream: FakeUpstream, make_moa
) -> None:
    upstream.script("strong", Reply("strong answer", delay_s=0.6))
    result = make_moa([["strong", "quick"]], min_proposals=1, deadline_s=0.05).run("q")
    assert result.degradation.degraded
    assert [c.model for c in result.degradation.lost] == ["fake:strong"]


def test_a_failed_required_member_degrades_the_run(upstream: FakeUpstream, make_moa) -> None:
    upstream.script("strong", Reply(status=500))
    moa = make_moa([["quick"]])
    moa.layers[0].__init__(Agent("fake:strong", required=True), "fake:quick")  # type: ignore[misc]
    result = moa.run("q")
    assert result.degradation.degraded
    assert [c.missing for c in result.degradation.lost] == ["failed"]


def test_more_required_members_than_the_quorum_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="min_proposals"):
        recipes.parse(
            "[[layers]]\nmin_proposals = 1\n"
            'models = [{model = "fake:a", required = true}, {model = "fake:b", required = true}]\n'
            '[aggregator]\nmodel = "fake:agg"\n'
        )


def test_a_required_member_behind_a_stop_condition_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="stop_when"):
        recipes.parse(
            '[[layers]]\nmodels = ["fake:a", "fake:b"]\nstop_when = "agree"\n'
            '[[layers]]\nmodels = [{model = "fake:c", required = true}]\n'
            '[aggregator]\nmodel = "fake:agg"\n'
        )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_needs_a_key_or_no_auth() -> None:
    with pytest.raises(OpenServerError, match="--api-key"):
        check_exposure("moa serve", "0.0.0.0", [])
    assert check_exposure("moa serve", "0.0.0.0", ["k"]) is None
    assert check_exposure("moa serve", "127.0.0.1", []) is None
    warning = check_exposure("moa serve", "0.0.0.0", [], no_auth=True)
    assert warning is not None and "--no-auth" in warning


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["web"]])
def test_moa_serve_and_web_refuse_an_open_bind_with_one_line(command: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    done = subprocess.run(
        [sys.executable, "-m", "moa", *command, "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--api-key" in lines[0] and "MOA_API_KEYS" in lines[0]
