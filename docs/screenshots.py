"""Draw the playground screenshots in docs/ (desktop and phone width, and a Self-MoA run whose
answer is a chosen sample) on the fake upstream.

    python docs/screenshots.py   # needs the dev extra (playwright) and /usr/bin/chromium

The models are the fake upstream's (provider `demo`), with scripted answers and illustrative
prices; nothing is called.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from moa import recipes
from moa.server import create_app
from moa.testing import FakeUpstream, Reply

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import ServerThread

DOCS = Path(__file__).resolve().parent
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
RECIPE = """
name = "demo-moa"
description = "Three proposers, two layers, one aggregator (fake upstream)"
[retry]
max_attempts = 1
[[layers]]
models = [
  {{ model = "demo:llama-3.3-70b", price = {{ input = 0.88, output = 0.88 }} }},
  {{ model = "demo:qwen-2.5-72b", price = {{ input = 1.2, output = 1.2 }} }},
  {{ model = "demo:mixtral-8x22b", price = {{ input = 1.2, output = 1.2 }} }},
]
[[layers]]
models = ["demo:llama-3.3-70b", "demo:qwen-2.5-72b", "demo:mixtral-8x22b"]
[aggregator]
model = "demo:llama-3.1-405b"
price = {{ input = 3.5, output = 3.5 }}
[providers.demo]
base_url = "{base_url}"
"""
PROPOSALS = {
    "llama-3.3-70b": "SQLite is an embedded library: zero setup, one file, very fast reads. "
    "Postgres is a server: concurrent writers, roles, replication and extensions.",
    "qwen-2.5-72b": "Choose SQLite for apps, tests and single-node sites with modest write "
    "concurrency; choose Postgres when many clients write at once or you need rich types.",
    "mixtral-8x22b": "Both are reliable. SQLite locks the whole database on write; Postgres "
    "uses MVCC so readers never block writers.",
}
ANSWER = """**In short:** SQLite is a file, Postgres is a service.

| | SQLite | Postgres |
|---|---|---|
| Setup | none (a library) | a server to run |
| Concurrent writes | one at a time | many (MVCC) |
| Best for | apps, tests, edge | multi-user backends |

- Start with **SQLite** when one process owns the data.
- Move to **Postgres** when several clients write, or you need `jsonb`, roles or replication.
"""

# Self-MoA as the `local` recipe does it, smaller: samples of two small models, and medoid picks
# the answer closest to the others (no aggregator call).
SAMPLES = """
name = "demo-samples"
description = "Samples of two small models; medoid answers with the one closest to the others"
[retry]
max_attempts = 1
[[layers]]
models = [
  {{ model = "demo:smollm2", temperature = 0.0 }},
  {{ model = "demo:smollm2", temperature = 0.7, seed = 1, samples = 2 }},
  {{ model = "demo:gemma3-270m", temperature = 0.0 }},
  {{ model = "demo:gemma3-270m", temperature = 0.7, seed = 1, samples = 2 }},
]
[aggregator]
model = "demo:smollm2"
strategy = "medoid"
[providers.demo]
base_url = "{base_url}"
"""
# Each sample's answer, by the seed it is sent (None: the greedy one, T=0).
SAMPLE_ANSWERS = {
    "smollm2": {
        None: "The capital of Australia is Sydney.",
        1: "Canberra is the capital of Australia.",
        2: "The capital of Australia is Canberra.",
    },
    "gemma3-270m": {None: "Canberra.", 1: "Melbourne.", 2: "Canberra, ACT."},
}


def script_samples(upstream: FakeUpstream) -> None:
    upstream.reset()
    for model, by_seed in SAMPLE_ANSWERS.items():
        text = lambda body, by_seed=by_seed: by_seed[body.get("seed")]  # noqa: E731
        upstream.script(model, Reply(text, token_delay_s=0.04))


def script(upstream: FakeUpstream) -> None:
    upstream.reset()
    for model, text in PROPOSALS.items():
        upstream.script(model, Reply(text, token_delay_s=0.03))
    # The second layer's mixtral is down: its card shows how a failure reads.
    upstream.script("mixtral-8x22b", Reply(PROPOSALS["mixtral-8x22b"]), Reply(status=503))
    upstream.script("llama-3.1-405b", Reply(ANSWER, token_delay_s=0.02))


def shoot(browser, server, name: str, size: tuple[int, int], recipe: str, prompt: str) -> None:
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(server.url)
    page.wait_for_selector(f"#recipe option[value='{recipe}']", state="attached")
    page.select_option("#recipe", recipe)
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")
    page.wait_for_selector(".answer .totals .fact")  # done, or degraded: a member failed
    if name == "phone":  # the layers scrolled to the top, the answer below
        page.evaluate(
            "document.querySelector('.thread').scrollTop ="
            " document.querySelector('.answer').offsetTop - 560"
        )
    page.screenshot(path=DOCS / f"playground-{name}.png")
    page.close()


def main() -> None:
    with FakeUpstream() as upstream:
        demo = recipes.parse(RECIPE.format(base_url=upstream.base_url))
        samples = recipes.parse(SAMPLES.format(base_url=upstream.base_url))
        server = ServerThread(create_app({demo.name: demo, samples.name: samples}))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                question = "What are the trade-offs of SQLite vs Postgres?"
                for name, size in (("desktop", (1440, 1180)), ("phone", (390, 844))):
                    script(upstream)
                    shoot(browser, server, name, size, demo.name, question)
                script_samples(upstream)
                question = "What is the capital of Australia?"
                shoot(browser, server, "samples", (1440, 1200), samples.name, question)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
