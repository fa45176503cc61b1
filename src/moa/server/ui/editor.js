// The recipe editor: proposers per layer, layers, aggregator, strategy, temperature. It edits a
// copy of a served recipe; the copy is sent as `moa_recipe` and checked by the server.

import { el } from "./board.js";

const modelOf = (item) => (typeof item === "string" ? item : item.model);
const withModel = (item, model) => (typeof item === "string" ? model : { ...item, model });

export class Editor {
  constructor({ onChange }) {
    this.root = document.getElementById("editor");
    this.layers = document.getElementById("editor-layers");
    this.aggregator = document.getElementById("editor-aggregator");
    this.temperature = document.getElementById("editor-temperature");
    this.temperatureValue = document.getElementById("temperature-value");
    this.strategy = document.getElementById("editor-strategy");
    this.badge = document.getElementById("edited-badge");
    this.onChange = onChange;
    this.base = null;
    this.recipe = null;
    this.edited = false;
    document.getElementById("add-layer").addEventListener("click", () => {
      const last = this.recipe.layers[this.recipe.layers.length - 1];
      this.recipe.layers.push({ models: last ? [...last.models] : [this.recipe.aggregator.model] });
      this.changed(true);
    });
    document.getElementById("editor-reset").addEventListener("click", () => this.load(this.base));
    this.aggregator.addEventListener("change", () => {
      this.recipe.aggregator.model = this.aggregator.value.trim();
      this.changed(false);
    });
    this.temperature.addEventListener("input", () => {
      this.recipe.defaults = { ...this.recipe.defaults, temperature: Number(this.temperature.value) };
      this.temperatureValue.textContent = Number(this.temperature.value).toFixed(1);
      this.changed(false);
    });
    this.strategy.addEventListener("change", () => {
      this.recipe.aggregator.strategy = this.strategy.value;
      this.changed(false);
    });
  }

  setChoices(models, strategies) {
    const list = document.getElementById("model-list");
    list.replaceChildren(...models.map((m) => Object.assign(el("option"), { value: m })));
    document.getElementById("strategy-field").hidden = strategies.length === 0;
    this.strategy.replaceChildren(
      ...strategies.map((s) => Object.assign(el("option", "", s), { value: s })),
    );
  }

  load(recipe) {
    this.base = recipe;
    this.recipe = structuredClone(recipe);
    this.edited = false;
    this.render();
    this.onChange();
  }

  // The recipe to send, or null when it is the served one unchanged.
  override() {
    return this.edited ? this.recipe : null;
  }

  changed(rerender) {
    this.edited = true;
    if (rerender) this.render();
    this.badge.hidden = false;
    this.onChange();
  }

  render() {
    const recipe = this.recipe;
    this.badge.hidden = !this.edited;
    this.layers.replaceChildren(...recipe.layers.map((layer, i) => this.layerBlock(layer, i)));
    this.aggregator.value = recipe.aggregator.model;
    const temperature = recipe.defaults?.temperature;
    this.temperature.value = temperature ?? 0.7;
    this.temperatureValue.textContent = temperature == null ? "recipe default" : temperature.toFixed(1);
    if (recipe.aggregator.strategy) this.strategy.value = recipe.aggregator.strategy;
  }

  layerBlock(layer, index) {
    const block = el("div", "editor-group layer-edit");
    const head = el("div", "layer-edit-head");
    head.append(el("h3", "", `Layer ${index + 1}${layer.repeat > 1 ? ` ×${layer.repeat}` : ""}`));
    const remove = el("button", "ghost small", "Remove");
    remove.type = "button";
    remove.addEventListener("click", () => {
      this.recipe.layers.splice(index, 1);
      this.changed(true);
    });
    head.append(remove);
    block.append(head);
    layer.models.forEach((item, j) => {
      const row = el("div", "model-row");
      const input = el("input");
      input.setAttribute("list", "model-list");
      input.spellcheck = false;
      input.value = modelOf(item);
      input.setAttribute("aria-label", `Layer ${index + 1} proposer ${j + 1}`);
      input.addEventListener("change", () => {
        layer.models[j] = withModel(item, input.value.trim());
        this.changed(false);
      });
      const drop = el("button", "ghost icon small", "×");
      drop.type = "button";
      drop.title = "Remove this proposer";
      drop.disabled = layer.models.length === 1;
      drop.addEventListener("click", () => {
        layer.models.splice(j, 1);
        this.changed(true);
      });
      row.append(input, drop);
      block.append(row);
    });
    const add = el("button", "ghost small", "+ Proposer");
    add.type = "button";
    add.addEventListener("click", () => {
      layer.models.push(modelOf(layer.models[layer.models.length - 1]));
      this.changed(true);
    });
    block.append(add);
    return block;
  }
}
