"""Draw docs/tracing-phoenix*.png: a 2-layer run on the fake upstream, traced into Arize Phoenix.

    python -m venv /tmp/phoenix-venv && /tmp/phoenix-venv/bin/pip install arize-phoenix
    PHOENIX_HOST=127.0.0.1 PHOENIX_TELEMETRY_ENABLED=false /tmp/phoenix-venv/bin/phoenix serve &
    python docs/tracing_screenshot.py   # needs the dev extra (otel, playwright), /usr/bin/chromium

Phoenix is never a dependency of moa: it is the backend here, receiving OTLP over HTTP on
127.0.0.1:6006 as any collector would. The models are the fake upstream's (provider `fake`),
with scripted answers and illustrative prices: one proposer is rate-limited once, so its span
shows a retry; prompts and answers are captured (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT).
"""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import sync_playwright

from moa import recipes
from moa.telemetry.setup import start
from moa.testing import FakeUpstream, Reply

DOCS = Path(__file__).resolve().parent
PHOENIX = os.environ.get("PHOENIX_URL", "http://127.0.0.1:6006")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
RECIPE = """
name = "panel"
[[layers]]
models = [
    {{ model = "fake:llama-3.3-70b", price = {{ input = 0.59, output = 0.79 }} }},
    {{ model = "fake:qwen-2.5-72b", price = {{ input = 1.2, output = 1.2 }} }},
]
repeat = 2
[aggregator]
model = "fake:gpt-4o-mini"
price = {{ input = 0.15, output = 0.6 }}
[providers.fake]
base_url = "{base_url}"
"""


def traced_run() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": PHOENIX,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "moa-docs",
    }
    os.environ.update(env)
    os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
    tracing = start(env=env)
    assert tracing is not None, f"nothing answers at {PHOENIX}: start `phoenix serve` first"
    with FakeUpstream() as upstream:
        upstream.script("llama-3.3-70b", Reply("Paris is the capital of France.", delay_s=0.3))
        limited = Reply(status=429, headers={"retry-after": "0.2"})
        upstream.script("qwen-2.5-72b", limited, Reply("It is Paris, on the Seine.", delay_s=0.4))
        upstream.script("gpt-4o-mini", Reply("Paris.", delay_s=0.2, token_delay_s=0.05))
        mixture = recipes.build(recipes.parse(RECIPE.format(base_url=upstream.base_url)))
        with mixture:
            mixture.run("What is the capital of France?")
    tracing.shutdown()  # sends the spans


def screenshots() -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(f"{PHOENIX}/projects")
        page.click("text=default")
        page.wait_for_selector("tbody tr")
        page.click("tbody tr >> nth=0")  # the newest trace
        page.wait_for_selector("text=aggregate synthesize")
        page.wait_for_timeout(1000)
        page.screenshot(path=DOCS / "tracing-phoenix.png")
        page.click("text=chat qwen-2.5-72b >> nth=0")
        page.click("text=Events")
        page.click("text=moa.retry")  # its attributes: the attempt, the 429, the wait
        page.wait_for_timeout(1000)
        page.screenshot(path=DOCS / "tracing-phoenix-retry.png")
        browser.close()


if __name__ == "__main__":
    traced_run()
    screenshots()
