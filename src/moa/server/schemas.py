"""The request body of `POST /v1/chat/completions`, and what of it a MoA run can honour.

Fields the OpenAI API accepts but a MoA cannot act on (user, metadata, …) are accepted
and ignored, so existing clients keep working; what would silently change the meaning of the
answer (images, legacy `functions`, or tools / response_format / logprobs for an aggregator
whose provider cannot take them) is refused with a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from moa.server.errors import ApiError, bad_request
from moa.types import Answering, Message, ResponseFormat, Role, Sampling, Tools

# Integers a double holds exactly: JSON tools read numbers as doubles, and could not send a
# larger seed exactly (or tell it from its neighbours when checking it against a bound).
_SAFE_INT = 2**53 - 1
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system turn
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
# Each of the n answers is one more aggregator call; past this, ask for fewer runs instead.
MAX_N = 16


# Refused at run time with a message of their own (below), so declared loosely to pydantic and
# exactly in the OpenAPI document: what the document allows, the server accepts.
_NOTHING: dict[str, Any] = {"maxItems": 0}
# The roles whose message must carry `content` (an assistant turn may have none).
_NEEDS_CONTENT = ("system", "developer", "user")


def _whole(value: Any) -> Any:
    """5.0 is an integer to JSON Schema (and to JavaScript clients): take it as 5."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer field: strict, but a float with no fraction counts (after the bounds, or pydantic
# would leave them out of the JSON schema).
WHOLE = BeforeValidator(_whole)


class _Open(BaseModel):
    # strict: a JSON string is not a number and 0 is not false, as the document says.
    model_config = ConfigDict(extra="allow", strict=True)


def _text_part(schema: dict[str, Any]) -> None:
    schema["properties"]["text"] = {"type": "string"}
    schema["required"] = ["type", "text"]


class ContentPart(_Open):
    type: str = Field(json_schema_extra={"enum": ["text"]})
    text: str | None = None  # missing: a 400 naming the part, after its type is checked

    model_config = ConfigDict(json_schema_extra=_text_part)


class FunctionCall(_Open):
    name: str
    arguments: str = ""


class ToolCall(_Open):
    id: str
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: str = Field(json_schema_extra={"enum": list(_ROLES)})
    content: str | list[ContentPart] | None = Field(
        default=None, description="Required except in assistant messages."
    )
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: None = None

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"role": {"enum": list(_NEEDS_CONTENT)}}},
                    "then": {
                        "required": ["content"],
                        "properties": {"content": {"not": {"type": "null"}}},
                    },
                },
                {
                    "if": {"required": ["role"], "properties": {"role": {"const": "tool"}}},
                    "then": {
                        "required": ["tool_call_id"],
                        "properties": {"tool_call_id": {"type": "string", "minLength": 1}},
                    },
                },
            ]
        }
    )


class FunctionSpec(_Open):
    name: str


class ToolSpec(_Open):
    type: str = Field(json_schema_extra={"enum": ["function"]})
    function: FunctionSpec


class JsonSchemaSpec(_Open):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormatSpec(_Open):
    type: str = Field(json_schema_extra={"enum": ["text", "json_object", "json_schema"]})
    json_schema: JsonSchemaSpec | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"required": ["type"], "properties": {"type": {"const": "json_schema"}}},
            "then": {
                "required": ["json_schema"],
                "properties": {"json_schema": {"type": "object"}},
            },
        }
    )


_NAMED_TOOL: dict[str, Any] = {
    "type": "object",
    "required": ["type", "function"],
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}},
        },
    },
}


# What the run accepts (moa.call.request.check_tool_choice), exactly.
_TOOL_CHOICES: list[Any] = [
    {"enum": ["auto", "none", "required"]},
    _NAMED_TOOL,
    {
        "type": "object",
        "required": ["type", "allowed_tools"],
        "properties": {
            "type": {"const": "allowed_tools"},
            "allowed_tools": {
                "type": "object",
                "required": ["tools"],
                "properties": {"tools": {"type": "array", "minItems": 1, "items": _NAMED_TOOL}},
            },
        },
    },
    {"type": "null"},
]


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(_Open):
    model: str
    messages: list[ChatMessage] = Field(
        min_length=1,
        description=(
            "The conversation; it must end with a user message that has some text, and a tool "
            "message answers a call an assistant message before it made."
        ),
    )
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_tokens: Annotated[int, Field(ge=1), WHOLE] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1), WHOLE] | None = None
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=-_SAFE_INT, le=_SAFE_INT), WHOLE] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N), WHOLE] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: str | dict[str, Any] | None = Field(
        default=None,
        description="A named tool must be one of `tools`.",
        json_schema_extra={"anyOf": _TOOL_CHOICES},
    )
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatSpec | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20), WHOLE] | None = None
    functions: list[Any] | None = Field(default=None, json_schema_extra=_NOTHING)
    moa_trace: bool | None = Field(
        default=None,
        description="moa extension: add the run's trace (proposals, per-call timings) as `moa`.",
    )
    moa_max_cost_usd: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="moa extension: refuse the run if it could cost more than this (USD).",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {
                        "required": ["top_logprobs"],
                        "properties": {"top_logprobs": {"type": "integer"}},
                    },
                    "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
                },
                {  # without tools, no choice may ask for a call
                    "if": {
                        "not": {
                            "required": ["tools"],
                            "properties": {"tools": {"type": "array", "minItems": 1}},
                        }
                    },
                    "then": {"properties": {"tool_choice": {"enum": ["auto", "none", None]}}},
                },
            ]
        }
    )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def check_supported(request: ChatCompletionRequest) -> None:
    """Refuse what a MoA cannot do rather than answer something else than was asked. (What
    the aggregator's provider cannot take is refused by the engine, before any call.)"""
    if request.functions:
        raise bad_request(
            "functions are not supported by moa; send them as `tools` (OpenAI's newer form)",
            param="functions",
        )
    for i, tool in enumerate(request.tools or []):
        if tool.type != "function":
            raise bad_request(
                f"tools[{i}]: tools of type {tool.type!r} are not supported (only function)",
                param=f"tools[{i}].type",
            )
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("top_logprobs needs logprobs: true", param="top_logprobs")


def to_answering(request: ChatCompletionRequest) -> Answering:
    """What the request asks of the final answer (the aggregator's call)."""
    tools = None
    # A tool_choice that asks for a call (or is no choice at all) is kept without tools, for
    # the run to refuse before any call.
    if request.tools or request.tool_choice not in (None, "auto", "none"):
        tools = Tools(
            tuple(t.model_dump(exclude_none=True) for t in request.tools or ()),
            request.tool_choice,
            request.parallel_tool_calls,
        )
    return Answering(
        tools=tools,
        response_format=_response_format(request.response_format),
        top_logprobs=(request.top_logprobs or 0) if request.logprobs else None,
        n=request.n or 1,
    )


def _response_format(spec: ResponseFormatSpec | None) -> ResponseFormat | None:
    if spec is None or spec.type == "text":
        return None
    if spec.type == "json_object":
        return ResponseFormat("json_object", {}, kind="json_object")
    if spec.type == "json_schema" and spec.json_schema is not None:
        schema = spec.json_schema
        return ResponseFormat(schema.name, schema.schema_, strict=bool(schema.strict))
    raise bad_request(
        "response_format: use {'type': 'json_schema', 'json_schema': {'name', 'schema'}}, "
        "{'type': 'json_object'} or {'type': 'text'}",
        param="response_format",
    )


def to_messages(request: ChatCompletionRequest) -> list[Message]:
    out: list[Message] = []
    for i, message in enumerate(request.messages):
        out.append(_message(i, message))
        _answers_a_call(i, out)
    return out


def _answers_a_call(index: int, messages: list[Message]) -> None:
    """A tool message must answer a call an assistant message before it made, as Messages'
    tool_result and Responses' function_call_output must."""
    last = messages[-1]
    if last["role"] != "tool":
        return
    called = {c.get("id") for m in messages[:-1] for c in m.get("tool_calls", [])}
    if last["tool_call_id"] not in called:
        where = f"messages[{index}]"
        raise bad_request(
            f"{where}: no assistant tool call before it has id {last['tool_call_id']!r} — send "
            "the assistant message with its tool_calls before their results",
            f"{where}.tool_call_id",
        )


def _message(index: int, message: ChatMessage) -> Message:
    where = f"messages[{index}]"
    if message.role == "function" or message.function_call:
        raise bad_request(
            f"{where}: legacy function messages are not supported; use tool calls",
            f"{where}.role",
        )
    role = _ROLES.get(message.role)
    if role is None:
        raise bad_request(
            f"{where}: unknown role {message.role!r}; use one of {', '.join(_ROLES)}",
            f"{where}.role",
        )
    if message.content is None and message.role in _NEEDS_CONTENT:
        raise bad_request(f"{where}: a {message.role} message needs `content`", f"{where}.content")
    out = Message(role=role, content=_text(where, message.content))
    if role == "tool":
        if not message.tool_call_id:
            raise bad_request(
                f"{where}: a tool message needs `tool_call_id`", f"{where}.tool_call_id"
            )
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [c.model_dump(exclude_none=True) for c in message.tool_calls]
    return out


def _text(where: str, content: str | list[ContentPart] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        if part.type != "text":
            raise bad_request(
                f"{where}.content[{j}]: content parts of type {part.type!r} are not supported "
                f"(only text)",
                f"{where}.content[{j}].type",
            )
        if part.text is None:
            raise bad_request(f"{where}.content[{j}]: a text part needs `text`", f"{where}.content")
        texts.append(part.text)
    return "\n".join(texts)


def to_sampling(request: ChatCompletionRequest) -> Sampling:
    stop = request.stop
    return Sampling(
        temperature=request.temperature,
        # max_completion_tokens supersedes max_tokens in OpenAI's API.
        max_tokens=request.max_completion_tokens or request.max_tokens,
        seed=request.seed,
        top_p=request.top_p,
        stop=(stop,) if isinstance(stop, str) else tuple(stop) if stop is not None else None,
    )


def validation_error(errors: list[Any]) -> ApiError:
    """pydantic's complaint about a body, as OpenAI words a bad request."""
    if not errors:
        return bad_request("invalid request body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return bad_request(f"the request body is not valid JSON ({first.get('msg', '')})")
    param = _param(first.get("loc", ()))
    if param is None:
        return bad_request("the request body must be a JSON object with `model` and `messages`")
    message = f"{param}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return bad_request(message, param=param)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _param(loc: Sequence[Any]) -> str | None:
    """("body", "messages", 0, "content", "str") → "messages[0].content" (OpenAI's notation;
    pydantic's union-member tags are not part of the path)."""
    param = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            param += f"[{part}]"
        elif part.lower() in _TYPE_TAGS or "[" in part or "-" in part:
            continue
        else:
            param += f".{part}" if param else part
    return param or None
