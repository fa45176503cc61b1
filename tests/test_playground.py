"""The web playground in a real browser (Debian's chromium, headless) against `moa serve` on the
fake upstream: it loads cleanly, streams the layers into cards and the answer into its panel,
marks failures, keeps the conversation, compares with one model and downloads the trace."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from conftest import SERVER_RECIPE
from moa.testing import FakeUpstream, Reply

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
TIMEOUT_MS = 20_000

# Records, in order, every change of a proposal card's text and of the first answer's text.
RECORD_TEXT_CHANGES = """
window.__seen = [];
const last = new Map();
function note(key, node) {
  const length = node ? node.textContent.length : 0;
  if (length && last.get(key) !== length) { last.set(key, length); window.__seen.push([key, length]); }
}
new MutationObserver(() => {
  for (const card of document.querySelectorAll(".card.proposer")) {
    note("card:" + card.dataset.model, card.querySelector(".card-body"));
  }
  note("answer", document.querySelector(".answer .markdown"));
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    """open_page(server): a fresh browser tab on the server's playground, recipes loaded."""
    contexts = []

    def open_on(server):
        context = browser.new_context(accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.problems = []  # console errors and uncaught exceptions
        page.on("console", lambda m: m.type == "error" and page.problems.append(m.text))
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.add_init_script(RECORD_TEXT_CHANGES)
        page.goto(server.url)
        page.wait_for_selector("#recipe option[value='test-moa']", state="attached")
        return page

    yield open_on
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page, moa_server):
    return open_page(moa_server)


def ask(page, prompt: str) -> None:
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")


def wait_answered(page, turn: int = 1, status: str = "ok") -> None:
    """The mixture's answer (the first panel) of the turn is complete (`status`: "degraded"
    when it lost members)."""
    mixture = f".turn:nth-of-type({turn}) .answers > .answer:first-child"
    page.wait_for_selector(f"{mixture}[data-status='{status}'] .totals .fact")


def test_the_page_loads_with_no_console_errors(page) -> None:
    assert page.title() == "moa playground"
    assert page.locator("#recipe").input_value() == "test-moa"
    assert page.problems == []


def test_proposals_stream_into_their_cards_then_the_answer_into_its_panel(
    upstream: FakeUpstream, page
) -> None:
    upstream.script("a", Reply("alpha says Paris", token_delay_s=0.02))
    upstream.script("b", Reply("beta says Paris too", token_delay_s=0.02))
    upstream.script("agg", Reply("It is **Paris**, on the Seine, said twice", token_delay_s=0.03))
    ask(page, "Capital of France?")
    wait_answered(page)

    cards = page.locator(".column[data-layer='1'] .card")
    assert cards.evaluate_all("cs => cs.map(c => [c.dataset.model, c.dataset.status])") == [
        ["fake:a", "ok"],
        ["fake:b", "ok"],
    ]
    assert page.locator(".card[data-model='fake:a'] .card-body").inner_text() == "alpha says Paris"
    assert "tok" in page.locator(".card[data-model='fake:a'] .card-foot").inner_text()
    answer = page.locator(".answer .markdown")
    assert answer.inner_text() == "It is Paris, on the Seine, said twice"
    assert answer.locator("strong").inner_text() == "Paris"
    assert "3 calls" in page.locator(".answer .totals").inner_text()

    seen = page.evaluate("window.__seen")
    first_answer = next(i for i, (key, _) in enumerate(seen) if key == "answer")
    assert {key for key, _ in seen[:first_answer]} == {"card:fake:a", "card:fake:b"}
    assert all(key == "answer" for key, _ in seen[first_answer:])
    assert len(seen) - first_answer > 1, "the answer arrives in pieces, not at the end"
    assert page.problems == []


def test_proposal_cards_fill_as_their_tokens_arrive(upstream: FakeUpstream, page) -> None:
    # Needs the engine to stream proposals (issue 11 item 1): several deltas per card.
    upstream.script("a", Reply("one two three four five six", token_delay_s=0.03))
    ask(page, "Count")
    wait_answered(page)
    lengths = [n for key, n in page.evaluate("window.__seen") if key == "card:fake:a"]
    assert len(lengths) > 1 and lengths == sorted(lengths)


def test_costs_show_on_the_cards_and_in_the_totals_when_priced(
    upstream: FakeUpstream, serve_moa, open_page
) -> None:
    priced = SERVER_RECIPE.replace(
        'models = ["fake:a", "fake:b"]',
        'models = [{model = "fake:a", price = {input = 1000.0, output = 1000.0}}, "fake:b"]',
    ).replace('model = "fake:agg"', 'model = "fake:agg"\nprice = {input = 0.0, output = 0.0}')
    upstream.script("a", Reply("alpha", usage=(10, 10)))
    page = open_page(serve_moa(priced))
    ask(page, "Capital of France?")
    wait_answered(page)
    assert "$0.02" in page.locator(".card[data-model='fake:a'] .card-foot").inner_text()
    assert "$" not in page.locator(".card[data-model='fake:b'] .card-foot").inner_text()
    # b has no price, so the run's cost is unknown and the totals do not guess one.
    assert "$" not in page.locator(".answer .totals").inner_text()


def test_a_failing_proposer_is_shown_as_failed_and_the_run_goes_on(
    upstream: FakeUpstream, page
) -> None:
    upstream.script("b", Reply(status=500))
    ask(page, "Capital of France?")
    wait_answered(page, status="degraded")
    failed = page.locator(".card[data-model='fake:b']")
    assert failed.get_attribute("data-status") == "failed"
    assert failed.locator(".pill").inner_text().lower() == "failed"
    assert "500" in failed.locator(".card-error").inner_text()
    totals = page.locator(".answer .totals").inner_text()
    assert "1 failed" in totals and "degraded: 1 of 2 answered" in totals


def test_a_straggler_cut_by_the_layer_deadline_is_shown_as_cancelled(
    upstream: FakeUpstream, serve_moa, open_page
) -> None:
    recipe = SERVER_RECIPE.replace(
        'models = ["fake:a", "fake:b"]',
        'models = ["fake:a", "fake:b"]\nmin_proposals = 1\ndeadline_s = 0.2',
    )
    upstream.script("b", Reply("too late", delay_s=30))
    page = open_page(serve_moa(recipe))
    ask(page, "Capital of France?")
    wait_answered(page, status="degraded")
    late = page.locator(".card[data-model='fake:b']")
    assert late.get_attribute("data-status") == "cancelled"
    assert "cancelled" in late.locator(".card-error").inner_text()
    assert page.locator(".card[data-model='fake:a']").get_attribute("data-status") == "ok"


def test_a_second_turn_sends_the_conversation_so_far(upstream: FakeUpstream, page) -> None:
    upstream.script("agg", Reply("Paris."), Reply("About two million people."))
    ask(page, "Capital of France?")
    wait_answered(page, 1)
    ask(page, "How many people live there?")
    wait_answered(page, 2)
    assert page.locator(".turn").count() == 2
    sent = upstream.requests_for("agg")[-1]["messages"]
    turns = [(m["role"], m["content"]) for m in sent if m["role"] != "system"]
    assert turns == [
        ("user", "Capital of France?"),
        ("assistant", "Paris."),
        ("user", "How many people live there?"),
    ]
    assert page.locator(".turn:nth-of-type(2) .answer .markdown").inner_text() == (
        "About two million people."
    )


def test_the_trace_downloads_as_json(upstream: FakeUpstream, page) -> None:
    ask(page, "Capital of France?")
    wait_answered(page)
    with page.expect_download() as download_info:
        page.click(".turn-actions button")
    download = download_info.value
    assert download.suggested_filename.startswith("moa-trace-")
    trace = json.loads(download.path().read_text(encoding="utf-8"))
    assert trace["model"] == "test-moa"
    assert trace["mixture"]["text"] == "answer from agg"
    assert [c["model"] for c in trace["mixture"]["calls"]] == ["fake:a", "fake:b", "fake:agg"]


def test_compare_with_one_model_answers_beside_the_mixture(upstream: FakeUpstream, page) -> None:
    page.select_option("#compare", "fake:b")
    ask(page, "Capital of France?")
    wait_answered(page)
    page.wait_for_selector(".answers.compare .answer:nth-child(2)[data-status='ok']")
    panels = page.locator(".answers.compare .answer .markdown")
    assert panels.all_inner_texts() == ["answer from agg", "answer from b"]


def test_an_edited_recipe_is_what_runs(upstream: FakeUpstream, page) -> None:
    page.click("#edit-toggle")
    page.fill("#editor-aggregator", "fake:a")
    page.locator("#editor-aggregator").dispatch_event("change")
    assert page.locator("#edited-badge").is_visible()
    ask(page, "Capital of France?")
    wait_answered(page)
    assert page.locator(".answer .markdown").inner_text() == "answer from a"


def test_answers_are_rendered_without_their_html(upstream: FakeUpstream, page) -> None:
    upstream.script("agg", Reply('<img src=x onerror="window.pwned=1"> [x](javascript:alert(1))'))
    ask(page, "Capital of France?")
    wait_answered(page)
    answer = page.locator(".answer .markdown")
    assert answer.locator("img, a").count() == 0
    assert "<img src=x" in answer.inner_text()
    assert page.evaluate("window.pwned") is None


def test_a_protected_server_asks_for_the_key_and_keeps_it_in_the_tab(
    browser, serve_moa, upstream: FakeUpstream
) -> None:
    server = serve_moa(api_keys=["sk-playground-key"])
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", "sk-playground-key")
    page.click("#key-dialog button")
    page.wait_for_selector("#recipe option[value='test-moa']", state="attached")
    assert page.evaluate("sessionStorage.getItem('moa.apiKey')") == "sk-playground-key"
    ask(page, "Capital of France?")
    wait_answered(page)
    context.close()


# -- following the answer, the chosen proposal, samples told apart ----------------------------

# Ten cards in one column, as `local` has: the answer ends below the fold of a 720 px window.
TEN_CARDS = SERVER_RECIPE.replace(
    'models = ["fake:a", "fake:b"]',
    'models = [{model = "fake:a", samples = 5}, {model = "fake:b", samples = 5}]',
)
LONG_ANSWER = "\n\n".join(f"Paragraph {i}: the layers agree on Paris." for i in range(1, 41))
THREAD = "document.getElementById('thread')"
BELOW_THE_END = f"{THREAD}.scrollHeight - {THREAD}.scrollTop - {THREAD}.clientHeight"
# While the answer streams, how far the thread's end is below what is in view, every 20 ms
# (once the answer is drawn: its first event comes before the frame that draws and follows it).
SAMPLE_WHILE_STREAMING = f"""
window.__below = [];
setInterval(() => {{
  if (document.querySelector(".answer[data-status='streaming'] .markdown:not(:empty)")) {{
    window.__below.push([{BELOW_THE_END}, {THREAD}.scrollHeight]);
  }}
}}, 20);
"""


def test_the_thread_follows_the_answer_as_it_streams(
    upstream: FakeUpstream, serve_moa, open_page
) -> None:
    upstream.script("agg", Reply(LONG_ANSWER, token_delay_s=0.005))
    page = open_page(serve_moa(TEN_CARDS))
    page.evaluate(SAMPLE_WHILE_STREAMING)
    ask(page, "Capital of France?")
    wait_answered(page)
    height, shown = page.evaluate(f"[{THREAD}.scrollHeight, {THREAD}.clientHeight]")
    assert height > 2 * shown, "the turn is taller than the window"
    assert page.evaluate(BELOW_THE_END) <= 1, "the end of the answer is in view"
    below = page.evaluate("window.__below")
    assert len({h for _, h in below}) > 1, "sampled while the answer grew"
    assert max(b for b, _ in below) <= 1, "followed all along, not only at the end"


def test_the_thread_stops_following_once_the_user_scrolls_up(
    upstream: FakeUpstream, serve_moa, open_page
) -> None:
    upstream.script("agg", Reply(LONG_ANSWER, token_delay_s=0.01))
    page = open_page(serve_moa(TEN_CARDS))
    ask(page, "Capital of France?")
    page.wait_for_function(
        "() => document.querySelector('.answer .markdown').textContent.length > 100"
    )
    before = page.evaluate(f"{THREAD}.scrollTop")
    page.mouse.move(640, 300)
    page.mouse.wheel(0, -400)
    # Scrolled up, and still for a frame (a wheel may scroll smoothly).
    settled = f"""() => {{
      const top = {THREAD}.scrollTop, still = top === window.__top;
      window.__top = top;
      return top < {before - 300} && still;
    }}"""
    page.wait_for_function(settled)
    left_at = page.evaluate(f"{THREAD}.scrollTop")
    streamed = page.evaluate("document.querySelector('.answer .markdown').textContent.length")
    wait_answered(page)
    assert len(page.locator(".answer .markdown").inner_text()) > streamed, "it went on growing"
    assert page.evaluate(f"{THREAD}.scrollTop") == left_at, (
        "the thread stayed where the user left it"
    )
    assert page.evaluate(BELOW_THE_END) > 400


@pytest.mark.parametrize(
    ("strategy", "replies", "why"),
    [
        (
            "vote",
            ["Answer: Rome", "Answer: Paris", "Paris it is.\nAnswer: Paris"],
            "vote: 2 of 3 answers agree ('paris')",
        ),
        (
            "medoid",
            ["Rome", "Paris is the capital", "Paris"],
            "medoid: the closest of 3 answers to the others",
        ),
    ],
)
def test_the_proposal_a_verbatim_strategy_chose_is_marked_with_why(
    upstream: FakeUpstream, serve_moa, open_page, strategy: str, replies: list[str], why: str
) -> None:
    recipe = SERVER_RECIPE.replace(
        'models = ["fake:a", "fake:b"]', 'models = ["fake:a", "fake:b", "fake:c"]'
    ).replace('model = "fake:agg"', f'model = "fake:agg"\nstrategy = "{strategy}"')
    for model, reply in zip("abc", replies, strict=True):
        upstream.script(model, Reply(reply))
    page = open_page(serve_moa(recipe))
    ask(page, "Capital of France?")
    wait_answered(page)
    chosen = page.locator(".card.chosen")
    assert chosen.count() == 1 and chosen.get_attribute("data-model") == "fake:b"
    assert chosen.locator(".card-chosen").inner_text() == why
    assert chosen.locator(".pill").inner_text().lower() == "chosen"
    assert page.locator(".answer .markdown").inner_text() == replies[1]
    assert page.locator(".answer .answer-model").inner_text() == "chosen: fake:b"
    assert upstream.requests_for("agg") == []


def test_samples_of_one_model_are_numbered_on_their_cards(
    upstream: FakeUpstream, serve_moa, open_page
) -> None:
    recipe = SERVER_RECIPE.replace(
        'models = ["fake:a", "fake:b"]',
        'models = [{model = "fake:a", temperature = 0.7, seed = 1, samples = 3}, "fake:b"]',
    )
    page = open_page(serve_moa(recipe))
    ask(page, "Capital of France?")
    wait_answered(page)
    assert page.locator(".column[data-layer='1'] .card .model").all_inner_texts() == [
        "fake:a #1 · T=0.7, seed 1",
        "fake:a #2 · T=0.7, seed 2",
        "fake:a #3 · T=0.7, seed 3",
        "fake:b",
    ]
    assert page.problems == []


def test_no_ui_leaves_the_root_unserved(serve_moa) -> None:
    import httpx

    with_ui, without = serve_moa(), serve_moa(ui=False)
    page = httpx.get(with_ui.url + "/")
    assert page.status_code == 200 and "moa playground" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(without.url + "/").status_code == 404
