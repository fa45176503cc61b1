"""`invocation = "auto"`: the aggregator decides, per request, whether to convene the panel.

    conversation ─▶ aggregator (+ private tool `consult_the_panel`) ─▶ direct answer  (1 call)
                                    │ calls it
                                    ▼
                    layers ─▶ their answers as the tool's result ─▶ aggregator ─▶ answer

As OpenRouter Fusion's server tool and LiteLLM's fusion design do: an easy request costs one
call. The private tool sits beside the client's tools, which stay the client's; the client
never sees it — the first call's tool calls are held until it has ended, and any call of the
panel is taken out of what the client receives. Text the aggregator wrote before calling the
panel has been streamed already, so it stays the start of the answer. A budget counts the
worst case: the question, every layer, and the answer after the panel (`auto_worst_case`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

from moa.call.caller import Caller
from moa.call.prompts import references_block
from moa.call.request import Call
from moa.engine.aggregator import Aggregator
from moa.engine.budget import PlannedCall, plan_call, worst_case
from moa.engine.layer import ProposalLayer
from moa.errors import ConfigError, InputError
from moa.events import Event, Token, ToolCallDelta
from moa.pricing import PriceBook
from moa.strategies import Stage, stream_answer
from moa.tokens import CHARS_PER_TOKEN
from moa.trace import CallRecord, Choice
from moa.types import Answering, Message, Sampling, Tools

Invocation = Literal["always", "auto"]
PANEL = "consult_the_panel"
PANEL_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": PANEL,
        "description": (
            "Ask a panel of other models to answer the conversation first; their answers come "
            "back to you to read before you write yours. Call it when the request is hard, "
            "open-ended or easy to get wrong; answer directly when it is easy."
        ),
        "parameters": {"type": "object", "properties": {}},
    },
}


def check_invocation(
    invocation: str, layers: Sequence[ProposalLayer], aggregator: Aggregator
) -> None:
    """What `auto` needs, checked when the MoA is built."""
    if invocation not in ("always", "auto"):
        raise ConfigError(f'invocation is "always" or "auto", got {invocation!r}')
    if invocation == "always":
        return
    if not layers:
        raise ConfigError('invocation = "auto" convenes the layers: give the recipe layers')
    # The panel's answers come back as one tool result for one answer to read: a strategy
    # whose answer is one synthesis (its `staircase` trait), not run as a staircase.
    if aggregator.staircase or aggregator.window is not None or not aggregator.strategy.staircase:
        raise ConfigError(
            'invocation = "auto" hands the panel\'s answers to the aggregator as a tool result: '
            f'use strategy = "synthesize" (not {aggregator.strategy.name!r}), without '
            'staircase or window, or set invocation = "always"'
        )


async def refuse_without_tools(caller: Caller, aggregator: Aggregator, n: int) -> None:
    """At a run's start: the aggregator (and each fallback) must take tools to be asked."""
    if n != 1:
        raise _refused('n > 1 is not served by a recipe with invocation = "auto"', "n")
    for agent in aggregator.candidates:
        if not (await caller.profile(agent)).capabilities.tools:
            raise ConfigError(
                f'invocation = "auto" asks {agent.model} with a tool, but its provider does not '
                f"declare tools: set tools = true in its [providers.NAME] if it takes them, or "
                f'set invocation = "always"'
            )


def asking(answering: Answering) -> Answering | None:
    """The first call's asks: the client's tools with the panel's beside them. None when the
    client named the one tool the answer must call: there is nothing to decide."""
    tools = answering.tools
    if tools is None:
        return replace(answering, tools=Tools((PANEL_TOOL,), "auto"))
    if any((spec.get("function") or {}).get("name") == PANEL for spec in tools.specs):
        raise _refused(
            f"a tool named {PANEL!r} is the recipe's own (invocation = auto): rename yours",
            "tools",
        )
    if isinstance(tools.choice, dict):
        return None
    if tools.choice == "none":  # no client tool may be called, but the panel may be
        return replace(answering, tools=Tools((PANEL_TOOL,), "auto", tools.parallel))
    return replace(answering, tools=replace(tools, specs=(*tools.specs, PANEL_TOOL)))


def _refused(message: str, param: str) -> InputError:
    return InputError(message, param=param)


def panel_result(prompt: str, proposals: Sequence[str]) -> str:
    return references_block(prompt, proposals)


def after_panel(
    messages: Sequence[Message], said: str, call: dict[str, Any], result: str
) -> list[Message]:
    """The conversation the aggregator answers after the panel: its own call, and the
    panel's answers as that call's result."""
    call = {**call, "id": call.get("id") or "call_panel"}
    return [
        *messages,
        Message(role="assistant", content=said, tool_calls=[call]),
        Message(role="tool", content=result, tool_call_id=call["id"]),
    ]


class PanelFilter:
    """Takes the panel's calls out of an answer's tool-call deltas (by their index)."""

    def __init__(self) -> None:
        self.panel: set[int] = set()

    def __call__(self, event: ToolCallDelta) -> ToolCallDelta | None:
        kept = []
        for delta in event.deltas:
            index = int(delta.get("index", 0))
            if (delta.get("function") or {}).get("name") == PANEL:
                self.panel.add(index)
            if index not in self.panel:
                kept.append(delta)
        return replace(event, deltas=tuple(kept)) if kept else None


def _client_calls(choice: Choice) -> list[dict[str, Any]]:
    return [c for c in choice.tool_calls if c["function"]["name"] != PANEL]


async def decide(
    stage: Stage,
    convene: Callable[[], AsyncIterator[Event]],
    proposals: Callable[[], list[CallRecord]],
) -> AsyncIterator[Event]:
    """The aggregator's events under `auto`: asked with the panel's tool, then — if it called
    it — the layers (`convene`), and the answer it writes over their answers (`proposals`)."""
    result = stage.result
    asked = asking(stage.answering)
    if asked is None:
        result.panel_convened = False
        result.notes.append("invocation auto: tool_choice names a tool, so no panel was offered")
        async for event in stream_answer(stage, [], ""):
            yield event
        return
    held: list[ToolCallDelta] = []
    said: list[str] = []
    async for event in stream_answer(replace(stage, answering=asked), [], ""):
        if isinstance(event, ToolCallDelta):
            held.append(event)
            continue
        if isinstance(event, Token):
            said.append(event.text)
        yield event
    first = result.choices[-1]
    called = [c for c in first.tool_calls if c["function"]["name"] == PANEL]
    if not called:
        result.panel_convened = False
        result.notes.append("invocation auto: the aggregator answered without the panel")
        for event in held:
            yield event
        return
    result.choices.pop()
    result.panel_convened = True
    dropped = len(_client_calls(first))
    note = f"invocation auto: the aggregator called {PANEL}; the layers ran"
    if dropped:
        note += f" (the {dropped} other tool call(s) of that turn were dropped)"
    result.notes.append(note)
    async for event in convene():
        yield event
    text = "".join(said)
    answers = panel_result(stage.aggregator.prompt, [p.output for p in proposals()])
    then = replace(stage, messages=after_panel(stage.messages, text, called[0], answers))
    if text:
        yield Token("\n\n", stage.choice)
    panel_filter = PanelFilter()
    async for event in stream_answer(then, [], ""):
        if isinstance(event, ToolCallDelta):
            kept = panel_filter(event)
            if kept is None:
                continue
            event = kept
        yield event
    answer = result.choices[-1]
    answer.tool_calls = _client_calls(answer)
    if text:
        answer.text = f"{text}\n\n{answer.text}"
        result.text = answer.text


async def auto_worst_case(
    caller: Caller,
    aggregator: Aggregator,
    messages: Sequence[Message],
    references: Sequence[str],
    overrides: Sampling,
    answering: Answering,
    prices: PriceBook,
) -> list[PlannedCall]:
    """The aggregator's two calls at their dearest (the layers' are planned apart): the
    question with the panel's tool, and the answer after the panel — the question's whole
    answer and the panel's `references` (each at its ceiling) in its prompt."""
    asked = asking(answering) or answering
    questions = [
        await plan_call(caller, Call(a, messages, (), "", overrides, answering=asked))
        for a in aggregator.candidates
    ]
    question = max(questions, key=lambda p: worst_case([p], prices))
    said = "x" * int(question.max_output_tokens * CHARS_PER_TOKEN)
    call = {
        "id": "call_panel",
        "type": "function",
        "function": {"name": PANEL, "arguments": json.dumps({})},
    }
    then = after_panel(messages, said, call, panel_result(aggregator.prompt, references))
    answers = [
        await plan_call(caller, Call(a, then, (), "", overrides, answering=answering))
        for a in aggregator.candidates
    ]
    return [question, max(answers, key=lambda p: worst_case([p], prices))]
