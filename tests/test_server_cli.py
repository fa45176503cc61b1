"""`moa serve` as a user runs it: a real process, real port, SIGTERM to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import openai

from conftest import wait_until
from moa.testing import FakeUpstream, Reply

RECIPE = 'name = "cli-moa"\n[[layers]]\nmodels = ["fake:a"]\n[aggregator]\nmodel = "fake:agg"\n'


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("MOA_API_KEYS", None)
    env.update(extra)
    return env


def moa_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moa.cli.app", "serve", *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_missing_upstream_key_stops_serve_at_startup_with_exit_2() -> None:
    done = moa_serve("-r", "together-moa", "--port", str(free_port()))
    assert done.returncode == 2
    assert "TOGETHER_API_KEY" in done.stderr


def test_two_recipes_with_one_name_are_refused(recipe_file) -> None:
    first, second = recipe_file(RECIPE, name="one.toml"), recipe_file(RECIPE, name="two.toml")
    done = moa_serve("-r", str(first), "-r", str(second), "--port", str(free_port()))
    assert done.returncode == 2
    assert "cli-moa" in done.stderr


def test_serve_answers_with_keys_from_flag_and_env_then_stops_cleanly_on_sigterm(
    upstream: FakeUpstream, recipe_file
) -> None:
    upstream.script("agg", Reply("served over the CLI"))
    port = free_port()
    args = ["serve", "-r", str(recipe_file(RECIPE)), "--port", str(port), "--api-key", "flag-key"]
    process = subprocess.Popen(
        [sys.executable, "-m", "moa.cli.app", *args],
        env=clean_env(MOA_API_KEYS="env-key-1,env-key-2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout_s=30, what="moa serve to listen")
        for key in ("flag-key", "env-key-2"):
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            answer = sdk.chat.completions.create(
                model="cli-moa", messages=[{"role": "user", "content": "hi"}]
            )
            assert answer.choices[0].message.content == "served over the CLI"
        assert httpx.get(f"{url}/v1/models").status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status is SIGTERM's.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    assert "cli-moa stream=False status=200" in stderr  # one log line per request
    for key in ("flag-key", "env-key-1", "env-key-2"):
        assert key not in stderr


def test_serve_without_the_server_extra_says_how_to_install_it() -> None:
    # fastapi made unimportable, as in an install without `moa[server]`.
    code = (
        "import sys; sys.modules['fastapi'] = None; from moa.cli.app import main; main(['serve'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert done.returncode == 2
    assert "pip install 'moa[server]'" in done.stderr


def test_moa_web_serves_the_playground_on_a_free_port_and_says_where(recipe_file) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moa.cli.app",
            "web",
            "-r",
            str(recipe_file(RECIPE)),
            "--no-browser",
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the server accepts connections
        url = line.split("moa playground: ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        page = httpx.get(url)
        assert page.status_code == 200 and "<title>moa playground</title>" in page.text
        assert httpx.get(f"{url}v1/moa/recipes").json()["data"][0]["id"] == "cli-moa"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
