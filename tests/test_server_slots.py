"""A run holds one of the server's run slots from admission to its last byte, and every way a
run can end frees it: with max_concurrent_runs = 1, a leaked slot turns the next request
into a 429. (Client disconnects are covered in test_server_load.py.)"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from conftest import wait_until
from moa import MoA
from moa.testing import FakeUpstream, Reply

URL = "/v1/chat/completions"
BODY = {"model": "test-moa", "messages": [{"role": "user", "content": "q"}]}


def all_proposers_fail(upstream: FakeUpstream) -> None:
    upstream.script("a", Reply(status=400))
    upstream.script("b", Reply(status=400))


def aggregator_cut_mid_answer(upstream: FakeUpstream) -> None:
    upstream.script("agg", Reply("one two three four", cut_after_tokens=2))


def crash(*args: object, **kwargs: object) -> object:
    raise RuntimeError("a bug in moa")


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(
    ("setup", "status"),
    [
        (lambda upstream: None, 200),
        (all_proposers_fail, 502),
        (aggregator_cut_mid_answer, None),  # SSE: 200 and an in-band error; JSON: an error
        ("crash", 500),
    ],
    ids=["answered", "failed-before-answering", "failed-while-answering", "crashed"],
)
def test_every_way_a_run_ends_frees_its_slot(
    upstream: FakeUpstream,
    serve_moa,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
    setup: Callable[[FakeUpstream], None] | str,
    status: int | None,
) -> None:
    server = serve_moa(max_concurrent_runs=1)
    if setup == "crash":
        monkeypatch.setattr(MoA, "events", crash)  # the one implementation of a run
    else:
        assert callable(setup)
        setup(upstream)
    # A fresh connection per request: the server closes one after a crash.
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=server.url, timeout=30, limits=fresh) as http:
        first = http.post(URL, json={**BODY, "stream": stream})
        if status is not None:
            assert first.status_code == status, first.text
        if first.status_code >= 400:
            assert set(first.json()["error"]) == {"message", "type", "param", "code"}
        wait_until(
            lambda: http.get("/healthz").json()["runs_in_progress"] == 0, what="the slot to free"
        )
        monkeypatch.undo()
        upstream.reset()
        second = http.post(URL, json={**BODY, "stream": stream})
        assert second.status_code == 200, second.text
