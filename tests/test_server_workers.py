"""`moa serve --workers N` as one server: metrics that add up over the workers, and rate
limits shared through Redis (`--redis`, MOA_REDIS_URL for `app_from_env`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moa.errors import ConfigError
from moa.policies.redis.limiter import RedisLimiter
from moa.server.main import _metrics_dir, app_from_env, registry_factory
from moa.testing.redis_server import RedisServer

WORKER = """
from moa.server.metrics import Metrics
metrics = Metrics()
for _ in range({n}):
    metrics.request("moa", False, 200, 0.1)
metrics.runs_in_progress.set({active})
"""

SCRAPE = """
import sys
from moa.server.metrics import Metrics
sys.stdout.write(Metrics().render().decode())
"""


def python(code: str, folder: Path) -> str:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_scrape_of_any_worker_counts_the_requests_of_all(tmp_path: Path) -> None:
    python(WORKER.format(n=3, active=2), tmp_path)
    python(WORKER.format(n=4, active=1), tmp_path)
    scraped = python(SCRAPE, tmp_path)
    assert 'moa_requests_total{model="moa",status="200",stream="false"} 7.0' in scraped
    assert 'moa_request_duration_seconds_count{model="moa",stream="false"} 7.0' in scraped


def test_serve_gives_its_workers_a_fresh_metrics_folder_and_removes_it(monkeypatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with _metrics_dir():
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert folder.is_dir() and not any(folder.iterdir())
    assert not folder.exists() and "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_given_metrics_folder_is_kept_but_emptied_of_the_last_run(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    with _metrics_dir():
        assert not any(tmp_path.iterdir())
    assert tmp_path.is_dir()


def test_workers_built_from_the_environment_share_limits_on_redis(redis_server) -> None:
    registry = registry_factory(redis_server.url)()
    assert isinstance(registry.limits.get("fake"), RedisLimiter)
    assert not isinstance(registry_factory(None)().limits.get("fake"), RedisLimiter)


def test_a_worker_without_its_redis_refuses_to_start_unless_optional(recipe_file) -> None:
    recipe = recipe_file(
        'name = "w"\n[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:agg"\n'
    )
    env = {"MOA_SERVE_RECIPES": str(recipe), "MOA_REDIS_URL": RedisServer().url}
    with pytest.raises(ConfigError, match="cannot reach Redis"):
        app_from_env(env)
    app_from_env({**env, "MOA_REDIS_OPTIONAL": "1"})
