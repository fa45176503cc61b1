"""A configuration as a recipe (the dict `moa.recipes` validates) and as the TOML `-r` loads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from moa.evaluation.tune.samples import Sampler
from moa.evaluation.tune.search import ALONE, Config

# The aggregators that write new text, tried on the panels that lead after the offline search.
WRITERS = ("synthesize", "analysis", "select", "rank")


@dataclass(frozen=True, slots=True)
class Writer:
    model: str
    strategy: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A panel and how its answers become the answer: picked (`writer` None) or written."""

    config: Config
    writer: Writer | None = None

    @property
    def label(self) -> str:
        if self.writer is None:
            return self.config.label
        panel = self.config.label.rsplit(" · ", 1)[0]
        return f"{panel} · {self.writer.strategy} by {self.writer.model}"


def recipe(
    candidate: Candidate, sampler: Sampler, name: str, description: str = ""
) -> dict[str, Any]:
    config, writer = candidate.config, candidate.writer
    head: dict[str, Any] = (
        {"name": name, "description": description} if description else {"name": name}
    )
    if config.strategy == ALONE and writer is None:
        model = config.members[0].model
        return {**head, "aggregator": sampler.entry(model, 0), **sampler.extra()}
    layer: dict[str, Any] = {}
    if config.rounds is not None:
        layer |= {
            "adaptive": True,
            "first_round": config.rounds.first,
            "round_size": config.rounds.size,
            "stop_share": config.rounds.stop_share,
        }
    layer["models"] = [sampler.entry(model, draw) for model, draw in config.slots()]
    if writer is not None:
        aggregator = {**sampler.entry(writer.model, 0), "strategy": writer.strategy}
        aggregator.pop("system", None)  # the aggregate-and-synthesize prompt is its system
    else:
        strategy = "medoid" if config.rounds is not None else config.strategy
        # vote synthesizes on a tie: that call is the first member's, greedy, like the others.
        aggregator = {**sampler.entry(config.members[0].model, 0), "strategy": strategy}
        aggregator.pop("system", None)
    return {**head, "layers": [layer], "aggregator": aggregator, **sampler.extra()}


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON's escapes are TOML's basic-string escapes when non-ASCII text is left as it is.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def to_toml(data: dict[str, Any], comment: str = "") -> str:
    """The recipe as TOML: top-level keys, `[[layers]]` with one model a line, `[aggregator]`."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()]
    if lines:
        lines.append("")
    tables = ("layers", "aggregator", "providers")
    lines += [f"{k} = {_value(v)}" for k, v in data.items() if k not in tables]
    for layer in data.get("layers", []):
        lines += ["", "[[layers]]"]
        lines += [f"{k} = {_value(v)}" for k, v in layer.items() if k != "models"]
        lines += ["models = ["] + [f"  {_value(m)}," for m in layer["models"]] + ["]"]
    lines += ["", "[aggregator]"]
    lines += [f"{k} = {_value(v)}" for k, v in data["aggregator"].items()]
    for name, provider in data.get("providers", {}).items():
        lines += ["", f"[providers.{name}]"] + [f"{k} = {_value(v)}" for k, v in provider.items()]
    return "\n".join(lines) + "\n"
