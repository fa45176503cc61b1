"""What a run's client asks of the final answer (`Answering`: tools, a response format,
logprobs, `n`) held against what the aggregator can do, before any call: tools it may leave
uncalled are dropped where it cannot take them (`offer_tools`), the rest is refused if a
candidate cannot honour it (`refuse_unsupported`); then the strategy is run once per answer
asked for (`answers`). `Run.start` and `Run` read them; strategies never do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from moa.call.caller import Caller
from moa.call.request import check_answering
from moa.engine.aggregator import Aggregator
from moa.errors import UnsupportedFieldError
from moa.events import Event
from moa.strategies import Stage
from moa.trace import Choice
from moa.types import Answering


async def answers(stage: Stage) -> AsyncIterator[Event]:
    """The strategy run once per requested answer (`n`), over the same proposals: the proposals
    are paid for once, each answer is one more aggregator call."""
    result = stage.result
    for choice in range(stage.answering.n):
        stage.choice = choice
        before = len(result.choices)
        async for event in stage.aggregator.strategy.aggregate(stage):
            yield event
        if len(result.choices) == before:  # a strategy that only set the text
            result.choices.append(Choice(result.text, model=result.aggregator_model))


async def offer_tools(
    caller: Caller, aggregator: Aggregator, answering: Answering
) -> tuple[Answering, str | None]:
    """Tools the aggregator may leave uncalled (`tool_choice` unset, "auto" or "none") that it
    cannot take are not a reason to refuse: answering in text is what such a request allows —
    Open WebUI attaches its tools to every message, whatever the model. They are dropped, and
    the returned note says so. Tools it must call ("required", a named function) are kept, and
    refused by `refuse_unsupported` if it cannot."""
    tools = answering.tools
    if tools is None or tools.choice not in (None, "auto", "none"):
        return answering, None
    verbatim = aggregator.strategy.answers_verbatim
    profiles = [await caller.profile(agent) for agent in aggregator.candidates]
    if not verbatim and all(p.capabilities.tools for p in profiles):
        return answering, None
    why = f"strategy {aggregator.strategy.name!r}" if verbatim else aggregator.agent.model
    note = (
        f"tools offered with tool_choice {tools.choice or 'unset'}: {why} cannot call them, "
        f"so it answered in text"
    )
    return replace(answering, tools=None), note


async def refuse_unsupported(caller: Caller, aggregator: Aggregator, answering: Answering) -> None:
    """UnsupportedFieldError, before any call, if an aggregator candidate cannot honour
    `answering` (a fallback that dropped the tools would answer something else than asked)."""
    verbatim = aggregator.strategy.answers_verbatim
    if answering == Answering(n=answering.n) and not (verbatim and answering.n > 1):
        return
    if verbatim:  # n answers would be n copies of the one it picks
        asked = [
            name
            for name, value in (
                ("tools", answering.tools),
                ("response_format", answering.response_format),
                ("logprobs", answering.top_logprobs),
                ("n", answering.n if answering.n > 1 else None),
            )
            if value is not None
        ]
        model = aggregator.candidates[0].model
        raise UnsupportedFieldError(asked[0], model, "", strategy=aggregator.strategy.name)
    for agent in aggregator.candidates:
        check_answering(answering, await caller.profile(agent), agent.model)
