"""What the OpenAI-compatible adapter sends for one `ChatRequest`: the keyword arguments of
the SDK's `chat.completions.create`. Pure, so what reaches the wire is testable without I/O."""

from __future__ import annotations

from typing import Any

from moa.providers.base import Capabilities
from moa.types import ChatRequest, ResponseFormat

CONTINUE_FINAL_MESSAGE = {"continue_final_message": True, "add_generation_prompt": False}


def chat_params(
    request: ChatRequest, *, stream: bool = False, accepts: Capabilities | None = None
) -> dict[str, Any]:
    """`accepts`: the provider's capabilities, for the fields it refuses or ignores (`seed`,
    `stream_options`); None, an API that takes both."""
    takes = accepts or Capabilities()
    s = request.sampling
    params: dict[str, Any] = {"model": request.model, "messages": list(request.messages)}
    if s.temperature is not None:
        params["temperature"] = s.temperature
    if s.top_p is not None:
        params["top_p"] = s.top_p
    if s.max_tokens is not None:
        params["max_tokens"] = s.max_tokens
    if s.seed is not None and takes.seed:
        params["seed"] = s.seed
    if s.stop:
        params["stop"] = list(s.stop)
    if request.response_format is not None:
        params["response_format"] = _response_format(request.response_format)
    if request.tools is not None:
        params["tools"] = list(request.tools.specs)
        if request.tools.choice is not None:
            params["tool_choice"] = request.tools.choice
        if request.tools.parallel is not None:
            params["parallel_tool_calls"] = request.tools.parallel
    if request.top_logprobs is not None:
        params["logprobs"] = True
        if request.top_logprobs:
            params["top_logprobs"] = request.top_logprobs
    extra: dict[str, Any] = {}
    if request.messages and request.messages[-1]["role"] == "assistant":
        # A partial answer to continue (staircase). vLLM needs both flags; llama.cpp's
        # server continues a trailing assistant message on its own and ignores them.
        extra.update(CONTINUE_FINAL_MESSAGE)
    if s.top_k is not None:  # not in OpenAI's API: the servers that take it read it here
        extra["top_k"] = s.top_k
    if extra:
        params["extra_body"] = extra
    if stream:
        params["stream"] = True
        if takes.stream_usage:
            params["stream_options"] = {"include_usage": True}
    return params


def _response_format(spec: ResponseFormat) -> dict[str, Any]:
    if spec.kind == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": spec.name, "schema": dict(spec.schema)}
    if spec.strict:
        schema["strict"] = True
    return {"type": "json_schema", "json_schema": schema}
