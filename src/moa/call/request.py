"""What one agent is sent: the conversation, its references and settings, shaped for its model.

Pure: no I/O, so every rule here is tested with plain values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from moa.call.agent import Agent
from moa.call.prompts import (
    inject_references,
    place_system,
    references_block,
    with_examples,
    with_system,
)
from moa.errors import ConfigError, InputError, UnsupportedFieldError
from moa.providers.base import ModelProfile
from moa.tokens import Cut, TokenCounter, fit_references, messages_tokens
from moa.tooluse import as_text, has_tool_turns
from moa.types import Answering, ChatRequest, Message, ResponseFormat, Sampling, Tools

# Room kept for the answer when neither the call nor the recipe sets max_tokens.
DEFAULT_ANSWER_TOKENS = 1024
# References squeezed below this (tokens, or share of their length) make the MoA a single
# model in disguise: the answer's room is shrunk first, and if that is not enough, the run fails.
MIN_REFERENCE_TOKENS = 200
MIN_REFERENCE_SHARE = 0.25
# Never shrink an answer's room below this to make space for references.
MIN_ANSWER_TOKENS = 256


@dataclass(frozen=True, slots=True)
class Call:
    """One agent's turn: what it answers, with what it sees of the previous layer."""

    agent: Agent
    messages: Sequence[Message]
    references: Sequence[str] = ()
    prompt: str = ""  # the aggregate-and-synthesize text put before the references
    overrides: Sampling = field(default_factory=Sampling)  # the run's own settings win
    response_format: ResponseFormat | None = None  # structured output, where the model can
    # The client's asks of the final answer (tools, response format, logprobs): the
    # aggregator's call only. None: a proposer, which answers in plain text.
    answering: Answering | None = None
    # The answer's beginning, already shown to the user: sent as a final assistant message for
    # the model to continue (staircase streaming; needs a provider with continuation).
    continuation: str = ""
    # How many answers the run asked for where `references` holds fewer because members were
    # lost (failed, timed out, cut): the prompt then says how many of how many are below.
    asked: int | None = None


@dataclass(frozen=True, slots=True)
class Built:
    request: ChatRequest
    cuts: list[Cut] = field(default_factory=list)  # how much of each reference was kept
    notes: list[str] = field(default_factory=list)  # what was changed to make it fit


def build_request(
    call: Call,
    model: str,
    profile: ModelProfile,
    *,
    defaults: Sampling,
    timeout_s: float | None,
    squeeze: float = 1.0,
) -> Built:
    """The request for `call` to `model`. `squeeze` < 1 shrinks the references' room after the
    model refused our estimate of what fits (a context-length error)."""
    agent = call.agent
    answering = call.answering or Answering()
    check_answering(answering, profile, agent.model)
    conversation = _conversation(call, profile)
    messages = with_examples(with_system(conversation, agent.system), agent.examples)
    sampling = agent.sampling_under(call.overrides, defaults)
    check_sampling(sampling, profile, agent.model)
    references: list[str] = list(call.references)
    cuts: list[Cut] = []
    notes: list[str] = []
    if references:
        count = profile.count_tokens
        prompt = references_block(call.prompt, (), call.asked)  # with its count line, if any
        overhead = messages_tokens(messages, count) + count(prompt) + 8
        window = agent.context_window or profile.context_window
        sampling, note = _answer_room(call, sampling, window - overhead, count, model, window)
        notes.extend(note)
        room = window - (sampling.max_tokens or DEFAULT_ANSWER_TOKENS)
        if squeeze < 1.0:
            sent = overhead + sum(count(r) for r in references)
            room = int(min(room, sent) * squeeze)
        references, cuts = fit_references(
            references, available_tokens=room, overhead_tokens=overhead, count=count
        )
    system_role = agent.system_role if agent.system_role is not None else profile.system_role
    shaped = inject_references(
        messages, references, prompt=call.prompt, system_role=system_role, asked=call.asked
    )
    # A strategy's own format (a judge's verdict) is a wish: asked in words where unsupported.
    soft_format = call.response_format if profile.capabilities.json_schema else None
    if call.continuation:
        if profile.capabilities.continuation == "none":
            raise ConfigError(
                f"{call.agent.model}: its provider does not continue a partial answer — "
                f"declare `continuation` for it, or turn staircase off"
            )
        shaped.append(Message(role="assistant", content=call.continuation))
    request = ChatRequest(
        model,
        tuple(shaped),
        sampling,
        timeout_s,
        response_format=answering.response_format or soft_format,
        tools=answering.tools,
        top_logprobs=answering.top_logprobs,
    )
    return Built(request, cuts, notes)


def _conversation(call: Call, profile: ModelProfile) -> list[Message]:
    """The conversation as the model can take it: tool turns as text for one that is not
    given tools, later system turns beside their user turns for one that takes them first only."""
    conversation = list(call.messages)
    native = call.answering is not None and profile.capabilities.tools
    if not native and has_tool_turns(conversation):
        conversation = as_text(conversation)
    if not profile.capabilities.system_turns:
        conversation = place_system(conversation)
    return conversation


def check_sampling(sampling: Sampling, profile: ModelProfile, model: str) -> None:
    """Refuse a setting the model's provider does not declare (`top_k`: OpenAI's API has none,
    and a server that does not know it ignores it)."""
    if sampling.top_k is not None and not profile.capabilities.top_k:
        raise UnsupportedFieldError("top_k", model, "top_k")


def check_answering(answering: Answering, profile: ModelProfile, model: str) -> None:
    """Refuse what the model's provider cannot do, naming the request field: a response format
    or tools silently dropped would answer something other than what was asked."""
    can = profile.capabilities
    if answering.tools is not None and not can.tools:
        raise UnsupportedFieldError("tools", model, "tools")
    if answering.response_format is not None and not can.json_schema:
        raise UnsupportedFieldError("response_format", model, "json_schema")
    if answering.top_logprobs is not None and not can.logprobs:
        raise UnsupportedFieldError("logprobs", model, "logprobs")


CHOICES = ("auto", "none", "required")


def check_tool_choice(tools: Tools) -> None:
    """InputError naming `tool_choice`, before any call, unless it is one of `CHOICES` or names
    tools the request gives (one function, or `allowed_tools`): an upstream would refuse it
    only after the proposers had run, or call something the client cannot run."""
    choice = tools.choice
    given = [_function_name(spec) for spec in tools.specs]
    if choice == "required" and not given:
        raise InputError(
            "tool_choice asks for a tool call, but no tools are given", param="tool_choice"
        )
    if choice is None or choice in CHOICES:
        return
    named: list[str | None] = []
    if isinstance(choice, dict) and choice.get("type") == "function":
        named = [_function_name(choice)]
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        listed = allowed.get("tools") if isinstance(allowed, dict) else None
        named = [_function_name(t) for t in listed] if isinstance(listed, list) else []
    if not named or None in named:
        raise InputError(
            f"tool_choice: {choice!r} is not a choice — use "
            f'{", ".join(map(repr, CHOICES))} or {{"type": "function", "function": {{"name": …}}}}',
            param="tool_choice",
        )
    for name in named:
        if name not in given:
            listed_names = ", ".join(str(g) for g in given) or "none are given"
            raise InputError(
                f"tool_choice names the tool {name!r}, which is not among the request's tools "
                f"({listed_names}): name one of them, or send that tool",
                param="tool_choice",
            )


def _function_name(spec: object) -> str | None:
    """The function a tool spec or a choice names (OpenAI's nested shape), if it is one."""
    function = spec.get("function") if isinstance(spec, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def _answer_room(
    call: Call,
    sampling: Sampling,
    free: int,
    count: TokenCounter,
    model: str,
    window: int,
) -> tuple[Sampling, list[str]]:
    """Shrink max_tokens when it leaves the references too little of the window; fail when even
    that is not enough. `free` is the window minus everything but references and answer."""
    needed = sum(count(r) for r in call.references)
    enough = min(needed, max(MIN_REFERENCE_TOKENS, int(needed * MIN_REFERENCE_SHARE)))
    answer = sampling.max_tokens or DEFAULT_ANSWER_TOKENS
    if free - answer >= enough:
        return sampling, []
    shrunk = max(min(answer, MIN_ANSWER_TOKENS), free - needed)
    if free - shrunk < enough:
        raise ConfigError(
            f"{call.agent.model}: its {window}-token context window leaves no room for the "
            f"references ({needed} tokens) — lower max_tokens, set the model's context_window, "
            f"or give the proposers a smaller max_tokens"
        )
    note = (
        f"max_tokens lowered from {answer} to {shrunk} so the references fit "
        f"{model}'s {window}-token context window"
    )
    return replace(sampling, max_tokens=shrunk), [note]
