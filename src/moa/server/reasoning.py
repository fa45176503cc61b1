"""The proposal layers as `reasoning_content`: what chat UIs show in their "thinking" block.

Proposers of a layer generate at the same time, but a thinking block is one text. So the first
proposer to speak gets the floor and is streamed as it generates; the others are held back and
told in full when the floor frees, finished ones first. The reader sees text within the first
proposer's time to first token and never two answers interleaved.

    ### Layer 1

    **fake:a**

    …its answer…

    **fake:b** — failed: HTTP 500 …

Samples of one model are told by their labels (`MoA.labels`): `**local:smollm2 #2 · T=0.7, seed
2**`, as the playground's cards read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from moa.events import Event, ProposalDelta, ProposalFailed, ProposalFinished, ProposalStarted
from moa.server.errors import bad_request
from moa.trace import CallRecord, Result

REASONING = "reasoning"
_MODES = (REASONING, "off")

Key = tuple[int, int]  # (layer, index)


def layers_mode(body_value: Any, header_value: str | None, recipe_value: str | None) -> str | None:
    """`reasoning` when the request (body, then header) or the recipe asks for it; a request's
    explicit "off" wins over the recipe."""
    for value, param in ((body_value, "moa_layers"), (header_value, "X-MoA-Layers")):
        if value is None:
            continue
        choice = str(value).strip().lower()
        if choice not in _MODES:
            raise bad_request(
                f"{param} must be one of {', '.join(repr(m) for m in _MODES)}, got {value!r}",
                param=param,
            )
        return REASONING if choice == REASONING else None
    return REASONING if recipe_value == REASONING else None


@dataclass
class _Proposal:
    model: str
    parts: list[str] = field(default_factory=list)
    record: CallRecord | None = None  # set when it has finished, failed or been cancelled
    told: int = 0  # how many parts have been written out
    headed: bool = False
    closed: bool = False  # told to the end


class LayerNarrator:
    """Feeds on engine events; returns the reasoning text each one adds (often ""). Each
    proposal is headed by its label in `labels` (by layer and index), else its model."""

    def __init__(self, labels: Mapping[Key, str] | None = None) -> None:
        self._labels = labels or {}
        self._proposals: dict[Key, _Proposal] = {}
        self._floor: Key | None = None
        self._layers_headed: set[int] = set()

    def feed(self, event: Event) -> str:
        if isinstance(event, ProposalStarted):
            self._proposals[(event.layer, event.index)] = _Proposal(event.model)
            return ""
        if isinstance(event, ProposalDelta):
            key = (event.layer, event.index)
            proposal = self._proposals.setdefault(key, _Proposal(event.model))
            proposal.parts.append(event.text)
            if self._floor is None:
                self._floor = key
            return self._tell(key) if self._floor == key else ""
        if isinstance(event, ProposalFinished | ProposalFailed):
            record = event.record
            key = (record.layer, record.index)
            proposal = self._proposals.setdefault(key, _Proposal(record.model))
            proposal.record = record
            if not proposal.parts and record.output:
                # A whole-answer provider, or an engine that does not stream proposals.
                proposal.parts.append(record.output)
            if self._floor not in (None, key):
                return ""
            self._floor = None
            return self._tell(key) + self._pass_floor()
        return ""

    def _pass_floor(self) -> str:
        """Tell every finished proposal not yet told, then give the floor to the one furthest
        along (it is streamed from then on)."""
        waiting = [k for k, p in self._proposals.items() if not p.closed]
        text = "".join(self._tell(k) for k in waiting if self._proposals[k].record is not None)
        speaking = [k for k in waiting if self._proposals[k].record is None]
        with_text = [k for k in speaking if self._proposals[k].parts]
        if with_text:
            self._floor = max(with_text, key=lambda k: sum(map(len, self._proposals[k].parts)))
            text += self._tell(self._floor)
        return text

    def _tell(self, key: Key) -> str:
        proposal, record = self._proposals[key], self._proposals[key].record
        out: list[str] = []
        if key[0] not in self._layers_headed:
            self._layers_headed.add(key[0])
            out.append(f"### Layer {key[0]}\n\n")
        status_told = False
        if not proposal.headed:
            proposal.headed, status_told = True, record is not None
            name = self._labels.get(key, proposal.model)
            out.append(f"**{name}**{_status(record)}\n\n")
        out.extend(proposal.parts[proposal.told :])
        proposal.told = len(proposal.parts)
        if record is not None:
            proposal.closed = True
            if proposal.parts:
                out.append("\n\n")
            if not record.ok and not status_told:
                out.append(f"_({_note(record)})_\n\n")
        return "".join(out)


def _status(record: CallRecord | None) -> str:
    return "" if record is None or record.ok else f" — {_note(record)}"


def _note(record: CallRecord) -> str:
    if record.status == "cancelled":
        return "cancelled: the layer moved on without it"
    return f"failed: {record.error or 'no answer'}"


def narrate(records: Iterable[CallRecord], labels: Mapping[Key, str] | None = None) -> str:
    """The reasoning text of a finished run (for non-streamed responses)."""
    narrator = LayerNarrator(labels)
    text = ""
    for record in records:
        if record.role != "proposer":
            continue
        event = ProposalFinished(record) if record.ok else ProposalFailed(record)
        text += narrator.feed(event)
    return text.rstrip("\n")


def with_reasoning(
    body: Mapping[str, Any], result: Result, labels: Mapping[Key, str] | None = None
) -> dict[str, Any]:
    """A `chat.completion` body with the proposals in `message.reasoning_content`."""
    told = narrate(result.calls, labels)
    message = {**body["choices"][0]["message"], "reasoning_content": told}
    choice = {**body["choices"][0], "message": message}
    return {**body, "choices": [choice, *body["choices"][1:]]}
