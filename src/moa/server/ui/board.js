// One run drawn as it happens: a column per layer with a card per proposer, the aggregator's
// answer (Markdown) and the totals. `RunView.on(event)` takes the events of POST /v1/moa/runs.

import { renderMarkdown } from "./markdown.js";

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const number = new Intl.NumberFormat("en");
const seconds = (s) => (s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`);
// As the CLI writes costs (moa.pricing.format_usd).
const money = (usd) =>
  usd === 0 ? "$0" : usd < 0.01 ? `$${usd.toFixed(6).replace(/0+$/, "")}` : `$${usd.toFixed(4)}`;

// `label`: the server's name for the slot (`local:smollm2 #2 · T=0.7, seed 2` for one of several
// samples of a model), which starts with the model.
function modelLabel(model, label = model) {
  const [provider, ...rest] = model.split(":");
  const node = el("span", "model");
  if (rest.length) node.append(el("span", "provider", `${provider}:`));
  node.append(el("span", "model-name", rest.length ? rest.join(":") : model));
  const sample = label.startsWith(model) ? label.slice(model.length).trim() : "";
  if (sample) node.append(" ", el("span", "sample", sample));
  node.title = label;
  return node;
}

class Card {
  constructor(model, role, label = model) {
    this.node = el("article", `card ${role}`);
    this.node.dataset.model = model;
    this.node.dataset.label = label;
    this.node.dataset.status = "waiting";
    this.label = label;
    const head = el("header", "card-head");
    this.pill = el("span", "pill", "waiting");
    head.append(modelLabel(model, label), this.pill);
    this.body = el("div", "card-body");
    this.foot = el("footer", "card-foot");
    this.node.append(head, this.body, this.foot);
    this.text = "";
  }

  status(status, label = status) {
    this.node.dataset.status = status;
    this.pill.textContent = label;
  }

  append(text) {
    if (this.node.dataset.status !== "streaming") this.status("streaming");
    this.text += text;
    const pinned = this.body.scrollHeight - this.body.scrollTop - this.body.clientHeight < 24;
    this.body.textContent = this.text;
    if (pinned) this.body.scrollTop = this.body.scrollHeight;
  }

  settle(call) {
    if (call.output && call.output.length > this.text.length) {
      this.text = "";
      this.append(call.output);
    }
    // A lost member says why: failed, timeout, deadline, staircase, …
    this.status(call.status, call.status === "ok" ? "done" : call.missing || call.status);
    if (call.error) this.body.append(el("p", "card-error", call.error));
    const facts = [seconds(call.latency_s)];
    if (call.input_tokens || call.output_tokens) {
      facts.push(`${number.format(call.input_tokens)} → ${number.format(call.output_tokens)} tok`);
    }
    if (call.cost_usd !== undefined && call.cost_usd !== null) facts.push(money(call.cost_usd));
    if (call.attempts > 1) facts.push(`${call.attempts} attempts`);
    this.foot.replaceChildren(...facts.map((f) => el("span", "fact", f)));
  }

  // The answer is this proposal, as written: a verbatim strategy chose it, for `why`.
  choose(why) {
    this.node.classList.add("chosen");
    this.node.dataset.chosen = why;
    this.pill.textContent = "chosen";
    this.node.querySelector(".card-head").after(el("p", "card-chosen", why));
    // On a phone a layer is a row to swipe through: bring the card into view (no-op on a column).
    const row = this.node.parentElement;
    row.scrollLeft = this.node.offsetLeft - row.offsetLeft;
  }
}

export class RunView {
  constructor(title, { board = true } = {}) {
    this.cards = new Map();
    this.columns = new Map();
    this.trace = null;
    this.answerText = "";
    this.board = el("div", "board");
    this.board.hidden = !board;
    this.answer = el("article", "answer");
    const head = el("header", "answer-head");
    this.answerTitle = el("h3", "", title);
    this.answerModel = el("span", "answer-model");
    this.answerStatus = el("span", "pill", "waiting");
    head.append(this.answerTitle, this.answerModel, this.answerStatus);
    this.answer.dataset.status = "waiting";
    this.markdown = el("div", "markdown");
    this.totals = el("footer", "totals");
    this.answer.append(head, this.markdown, this.totals);
    this.pending = false;
  }

  column(layer, title) {
    let column = this.columns.get(layer);
    if (!column) {
      column = el("section", "column");
      column.dataset.layer = String(layer);
      column.cards = el("div", "cards");
      column.append(el("h4", "column-title", title), column.cards);
      this.board.append(column);
      this.columns.set(layer, column);
    }
    return column;
  }

  card(layer, index, model, label) {
    const key = `${layer}/${index}`;
    if (!this.cards.has(key)) {
      const card = new Card(model, "proposer", label);
      this.cards.set(key, card);
      this.column(layer, `Layer ${layer}`).cards.append(card.node);
    }
    return this.cards.get(key);
  }

  setAnswerStatus(status, label = status) {
    this.answer.dataset.status = status;
    this.answerStatus.textContent = label;
  }

  on(event) {
    switch (event.type) {
      case "layer.started":
        event.models.forEach((model, i) => this.card(event.layer, i, model, event.labels?.[i]));
        break;
      case "proposal.started":
        this.card(event.layer, event.index, event.model).status("running");
        break;
      case "proposal.delta":
        this.card(event.layer, event.index, event.model).append(event.text);
        break;
      case "proposal.finished":
      case "proposal.failed":
        this.card(event.layer, event.index, event.model).settle(event.call);
        break;
      case "aggregator.started":
        this.aggregatorStarted(event);
        break;
      case "answer.delta":
        this.answerText += event.text;
        this.setAnswerStatus("streaming");
        this.scheduleRender();
        break;
      case "done":
        this.finish(event);
        break;
      case "error":
        this.fail(event);
        break;
      default:
        break;
    }
  }

  aggregatorStarted(event) {
    const column = this.column("aggregator", "Aggregator");
    const card = new Card(event.model, "aggregator");
    card.status("running", "writing");
    card.body.textContent = "Reading the proposals and writing the answer below.";
    this.aggregatorCard?.status("failed");
    this.aggregatorCard = card;
    column.cards.append(card.node);
    this.answerModel.replaceChildren(modelLabel(event.model));
    this.setAnswerStatus("running", "thinking");
  }

  scheduleRender() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.markdown.innerHTML = renderMarkdown(this.answerText);
    });
  }

  finish(event) {
    this.trace = event.trace;
    this.answerText = event.trace.text;
    this.markdown.innerHTML = renderMarkdown(this.answerText);
    const summary = `degraded: ${event.answered} of ${event.asked} answered`;
    if (event.degraded) this.setAnswerStatus("degraded", summary);
    else this.setAnswerStatus("ok", "done");
    const last = event.trace.calls[event.trace.calls.length - 1];
    if (this.aggregatorCard && last) this.aggregatorCard.settle(last);
    if (this.aggregatorCard) this.aggregatorCard.body.textContent = "Answer below.";
    this.markChosen(event.trace.calls);
    const calls = event.trace.calls;
    const failed = calls.filter((c) => c.status !== "ok").length;
    const facts = [
      seconds(event.trace.latency_s),
      `${calls.length} call${calls.length === 1 ? "" : "s"}`,
      `${number.format(event.usage.input_tokens)} in · ${number.format(event.usage.output_tokens)} out tokens`,
    ];
    if (event.cost_usd !== undefined && event.cost_usd !== null) facts.push(money(event.cost_usd));
    if (failed) facts.push(`${failed} failed`);
    if (event.degraded) facts.push(summary);
    this.totals.replaceChildren(...facts.map((f) => el("span", "fact", f)));
  }

  markChosen(calls) {
    const chosen = calls.find((c) => c.role === "proposer" && c.chosen);
    const card = chosen && this.cards.get(`${chosen.layer}/${chosen.index}`);
    if (!card) return;
    card.choose(chosen.chosen);
    // The answer is that proposal's text, not the aggregator's.
    this.answerModel.replaceChildren("chosen: ", modelLabel(chosen.model, card.label));
    this.answerModel.title = chosen.chosen;
  }

  fail(event) {
    if (event.trace) this.trace = event.trace;
    const refused = event.error?.code === "degraded"; // on_degraded = "fail"
    this.setAnswerStatus("failed", refused ? "refused: degraded" : "failed");
    this.aggregatorCard?.status("failed");
    const message = event.error?.message || "the run failed";
    this.answer.append(el("p", "answer-error", message));
  }
}
