// The playground: recipes, the conversation, and a board per turn.

import { call, changeKey, errorMessage, streamRun } from "./api.js";
import { RunView, el } from "./board.js";
import { Editor } from "./editor.js";

const $ = (id) => document.getElementById(id);
const state = { catalog: null, history: [], busy: false };

const editor = new Editor({ onChange: () => {} });
const emptyState = $("empty");

// Keeps the end of the thread in view while a turn streams, unless the user has scrolled up
// (and again once they scroll back down to the end).
class Follower {
  constructor(thread) {
    this.thread = thread;
    this.following = false;
    this.top = 0; // where the last follow left the thread
    this.sizes = new ResizeObserver(() => this.follow());
    thread.addEventListener("scroll", () => this.watch());
  }

  // Growing content leaves scrollTop where it was: only the user moves it up.
  watch() {
    const t = this.thread;
    if (t.scrollHeight - t.scrollTop - t.clientHeight < 4) this.following = true;
    else if (t.scrollTop < this.top - 2) this.following = false;
  }

  start(turn) {
    this.following = true;
    this.top = this.thread.scrollTop;
    this.sizes.observe(this.thread);
    this.sizes.observe(turn);
    this.follow();
  }

  follow() {
    this.watch(); // a scroll up not yet reported by its event
    if (!this.following) return;
    this.thread.scrollTop = this.thread.scrollHeight;
    this.top = this.thread.scrollTop;
  }

  stop() {
    this.sizes.disconnect();
  }
}
const follower = new Follower($("thread"));

function selectedRecipe() {
  return state.catalog.data.find((r) => r.id === $("recipe").value);
}

async function loadCatalog() {
  const response = await call("/v1/moa/recipes");
  if (!response.ok) {
    showNotice(`Could not load the recipes: ${await errorMessage(response)}`);
    return;
  }
  state.catalog = await response.json();
  const recipes = state.catalog.data;
  $("recipe").replaceChildren(
    ...recipes.map((r) => Object.assign(el("option", "", r.id), { value: r.id })),
  );
  $("compare").append(
    ...state.catalog.models.map((m) => Object.assign(el("option", "", m), { value: m })),
  );
  editor.setChoices(state.catalog.models, state.catalog.strategies);
  if (recipes.length) editor.load(recipes[0].recipe);
}

function showNotice(text) {
  $("thread").append(el("p", "notice", text));
}

function turnNode(prompt, compareModel) {
  const turn = el("section", "turn");
  const user = el("div", "bubble user");
  user.append(el("p", "", prompt));
  const mixture = new RunView("Mixture");
  const views = [mixture];
  const answers = el("div", "answers");
  answers.append(mixture.answer);
  if (compareModel) {
    const single = new RunView("One model", { board: false });
    answers.classList.add("compare");
    answers.append(single.answer);
    views.push(single);
  }
  const actions = el("div", "turn-actions");
  const download = el("button", "ghost small", "Download trace");
  download.type = "button";
  download.disabled = true;
  actions.append(download);
  turn.append(user, mixture.board, answers, actions);
  return { turn, views, download };
}

function saveTrace(body, views) {
  const data = {
    model: body.model,
    recipe: body.moa_recipe ?? null,
    messages: body.messages,
    mixture: views[0].trace,
    single: views[1] ? { model: views[1].model, trace: views[1].trace } : undefined,
  };
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const link = el("a");
  link.href = URL.createObjectURL(blob);
  link.download = `moa-trace-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

async function send(prompt) {
  if (state.busy || !prompt.trim() || !state.catalog) return;
  state.busy = true;
  $("send").disabled = true;
  emptyState.remove();
  const compareModel = $("compare").value;
  const messages = [...state.history, { role: "user", content: prompt }];
  const body = { model: $("recipe").value, messages };
  const override = editor.override();
  if (override) body.moa_recipe = override;
  const { turn, views, download } = turnNode(prompt, compareModel);
  $("thread").append(turn);
  follower.start(turn);
  const runs = [streamRun(body, (e) => views[0].on(e))];
  if (compareModel) {
    views[1].model = compareModel;
    const single = { ...body, moa_recipe: { name: "single", aggregator: { model: compareModel } } };
    runs.push(streamRun(single, (e) => views[1].on(e)));
  }
  const outcomes = await Promise.allSettled(runs);
  outcomes.forEach((outcome, i) => {
    if (outcome.status === "rejected") views[i].fail({ error: { message: String(outcome.reason) } });
  });
  if (views[0].answer.dataset.status === "ok") {
    state.history = [...messages, { role: "assistant", content: views[0].answerText }];
  }
  follower.follow();
  follower.stop();
  download.disabled = !views[0].trace;
  download.addEventListener("click", () => saveTrace(body, views));
  state.busy = false;
  $("send").disabled = false;
  $("prompt").focus();
}

function newChat() {
  if (state.busy) return;
  state.history = [];
  $("thread").replaceChildren(emptyState);
}

function wire() {
  const prompt = $("prompt");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = prompt.value;
    prompt.value = "";
    prompt.style.height = "";
    send(text);
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  prompt.addEventListener("input", () => {
    prompt.style.height = "";
    prompt.style.height = `${Math.min(prompt.scrollHeight, 220)}px`;
  });
  for (const chip of document.querySelectorAll(".chip")) {
    chip.addEventListener("click", () => send(chip.textContent));
  }
  $("recipe").addEventListener("change", () => editor.load(selectedRecipe().recipe));
  $("edit-toggle").addEventListener("click", () => {
    const open = $("editor").hidden;
    $("editor").hidden = !open;
    $("edit-toggle").setAttribute("aria-expanded", String(open));
    document.body.classList.toggle("editing", open);
  });
  $("new-chat").addEventListener("click", newChat);
  $("key-button").addEventListener("click", async () => {
    if (await changeKey()) loadCatalog();
  });
}

wire();
loadCatalog();
