"""The request body of `POST /v1/chat/completions`, and what of it a MoA run can honour.

Fields the OpenAI API accepts but a MoA cannot act on (top_p, user, metadata, …) are accepted
and ignored, so existing clients keep working; what would silently change the meaning of the
answer (n > 1, tools, images) is refused with a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from moa.server.errors import ApiError, bad_request
from moa.types import Message, Role, Sampling

# Integers a double holds exactly: JSON tools read numbers as doubles, and could not send a
# larger seed exactly (or tell it from its neighbours when checking it against a bound).
_SAFE_INT = 2**53 - 1
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system turn
    "user": "user",
    "assistant": "assistant",
}


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
_WHOLE = BeforeValidator(_whole)


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


class ChatMessage(_Open):
    role: str = Field(json_schema_extra={"enum": list(_ROLES)})
    content: str | list[ContentPart] | None = Field(
        default=None, description="Required except in assistant messages."
    )
    name: str | None = None
    tool_calls: list[Any] | None = Field(default=None, json_schema_extra=_NOTHING)
    function_call: None = None

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"role": {"enum": list(_NEEDS_CONTENT)}}},
            "then": {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
        }
    )


class StreamOptions(_Open):
    include_usage: bool | None = None


class ChatCompletionRequest(_Open):
    model: str
    messages: list[ChatMessage] = Field(
        min_length=1,
        description="The conversation; it must end with a user message that has some text.",
    )
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    max_tokens: Annotated[int, Field(ge=1), _WHOLE] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1), _WHOLE] | None = None
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=-_SAFE_INT, le=_SAFE_INT), _WHOLE] | None = None
    n: Annotated[int, Field(ge=1, json_schema_extra={"maximum": 1}), _WHOLE] | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[Any] | None = Field(default=None, json_schema_extra=_NOTHING)
    functions: list[Any] | None = Field(default=None, json_schema_extra=_NOTHING)
    moa_trace: bool | None = Field(
        default=None,
        description="moa extension: add the run's trace (proposals, per-call timings) as `moa`.",
    )
    moa_max_cost_usd: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="moa extension: refuse the run if it could cost more than this (USD).",
    )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


def check_supported(request: ChatCompletionRequest) -> None:
    """Refuse what a MoA cannot do rather than answer something else than was asked."""
    if request.n is not None and request.n > 1:
        raise bad_request("n > 1 is not supported: a MoA run produces one answer", param="n")
    if request.tools:
        raise bad_request("tools are not supported by moa", param="tools")
    if request.functions:
        raise bad_request("functions are not supported by moa", param="functions")


def to_messages(request: ChatCompletionRequest) -> list[Message]:
    return [_message(i, m) for i, m in enumerate(request.messages)]


def _message(index: int, message: ChatMessage) -> Message:
    where = f"messages[{index}]"
    if message.role in ("tool", "function"):
        raise bad_request(f"{where}: {message.role} messages are not supported", f"{where}.role")
    role = _ROLES.get(message.role)
    if role is None:
        raise bad_request(
            f"{where}: unknown role {message.role!r}; use one of {', '.join(_ROLES)}",
            f"{where}.role",
        )
    if message.tool_calls:
        raise bad_request(f"{where}: tool calls are not supported", f"{where}.tool_calls")
    if message.content is None and message.role in _NEEDS_CONTENT:
        raise bad_request(f"{where}: a {message.role} message needs `content`", f"{where}.content")
    return Message(role=role, content=_text(where, message.content))


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
