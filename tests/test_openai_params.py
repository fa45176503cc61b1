"""What the OpenAI-compatible adapter sends for a request: only what was set, in the API's
shape — checked without a server, since `chat_params` is pure."""

from __future__ import annotations

from moa.providers.base import Capabilities
from moa.providers.openai.params import chat_params
from moa.types import ChatRequest, Message, ResponseFormat, Sampling, Tools

USER = (Message(role="user", content="q"),)


def test_unset_settings_are_left_to_the_provider() -> None:
    assert chat_params(ChatRequest("m", USER)) == {"model": "m", "messages": list(USER)}


def test_set_sampling_is_sent_under_the_apis_names() -> None:
    sampling = Sampling(temperature=0.0, max_tokens=5, seed=1, stop=("\n",))
    params = chat_params(ChatRequest("m", USER, sampling))
    assert params["temperature"] == 0.0 and params["max_tokens"] == 5
    assert params["seed"] == 1 and params["stop"] == ["\n"]


def test_a_schema_tools_and_logprobs_take_the_apis_shapes() -> None:
    request = ChatRequest(
        "m",
        USER,
        response_format=ResponseFormat("city", {"type": "object"}, strict=True),
        tools=Tools(({"type": "function", "function": {"name": "f"}},), choice="auto"),
        top_logprobs=2,
    )
    params = chat_params(request)
    assert params["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": {"type": "object"}, "strict": True},
    }
    assert params["tool_choice"] == "auto" and "parallel_tool_calls" not in params
    assert params["logprobs"] is True and params["top_logprobs"] == 2


def test_a_trailing_assistant_message_is_continued_not_answered() -> None:
    partial = (*USER, Message(role="assistant", content="The answer is"))
    extra = chat_params(ChatRequest("m", partial))["extra_body"]
    assert extra == {"continue_final_message": True, "add_generation_prompt": False}
    assert "extra_body" not in chat_params(ChatRequest("m", USER))


def test_top_k_goes_in_the_body_beside_the_apis_fields() -> None:
    partial = (*USER, Message(role="assistant", content="The answer is"))
    extra = chat_params(ChatRequest("m", partial, Sampling(top_k=40)))["extra_body"]
    assert extra == {"continue_final_message": True, "add_generation_prompt": False, "top_k": 40}


def test_a_stream_asks_for_usage_in_its_last_chunk() -> None:
    params = chat_params(ChatRequest("m", USER), stream=True)
    assert params["stream"] is True and params["stream_options"] == {"include_usage": True}


def test_a_provider_that_refuses_seed_and_stream_options_is_sent_neither() -> None:
    """Mistral answers 422 to either as an unknown input: its declaration keeps them off."""
    refuses = Capabilities(seed=False, stream_usage=False)
    request = ChatRequest("m", USER, Sampling(seed=3))
    params = chat_params(request, stream=True, accepts=refuses)
    assert "seed" not in params and "stream_options" not in params and params["stream"] is True
    assert chat_params(request, stream=True)["seed"] == 3  # an API that takes them gets both
