"""Property-based fuzz of POST /v1/chat/completions: no generated request gets a 5xx, and every
refusal is in OpenAI's error shape. Bounded (100 examples per property) to stay fast."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

MODEL = "test-moa"

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
text_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "file"]) | st.text(max_size=8)},
    optional={"text": st.text(max_size=30) | json_values},
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]) | scalars},
        optional={
            "content": st.text(max_size=40) | st.lists(text_parts, max_size=3) | json_values,
            "name": st.text(max_size=8) | json_values,
            "tool_calls": json_values,
        },
    )
    | json_values,
    max_size=4,
)
# Fields OpenAI clients send, each either well-typed or arbitrary JSON.
optional_fields = {
    "temperature": st.floats(min_value=-1, max_value=3, allow_nan=False) | json_values,
    "max_tokens": st.integers(min_value=-2, max_value=10**6) | json_values,
    "max_completion_tokens": st.integers(min_value=-2, max_value=10**6) | json_values,
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=4) | json_values,
    "seed": st.integers(min_value=-(2**65), max_value=2**65) | json_values,
    "n": st.integers(min_value=-1, max_value=4) | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans()})
    | json_values,
    "tools": st.just([]) | json_values,
    "functions": json_values,
    "moa_trace": st.booleans() | json_values,
    "top_p": st.floats(min_value=-0.5, max_value=1.5, allow_nan=False) | json_values,
    "user": json_values,
}
valid_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant"]),
            "content": st.text(max_size=30),
        }
    ),
    max_size=3,
).map(lambda history: [*history, {"role": "user", "content": "a question"}])
# Mostly-valid requests, so the fuzz also drives full runs (and streams), not only refusals.
plausible_requests = st.fixed_dictionaries(
    {"model": st.just(MODEL), "messages": valid_messages}, optional=optional_fields
)
requests = st.fixed_dictionaries(
    {"model": st.just(MODEL) | st.text(max_size=10) | json_values, "messages": messages},
    optional=optional_fields,
)


def check(response: httpx.Response) -> None:
    event(f"HTTP {response.status_code}")  # --hypothesis-show-statistics shows the mix
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
    else:
        assert response.status_code == 200


@pytest.fixture
def http(moa_server):
    with httpx.Client(base_url=moa_server.url, timeout=30) as client:
        yield client


@FUZZ
@given(body=requests)
def test_structured_requests_never_get_a_5xx(http: httpx.Client, body: dict) -> None:
    check(http.post("/v1/chat/completions", json=body))


@FUZZ
@given(body=plausible_requests)
def test_plausible_requests_never_get_a_5xx(http: httpx.Client, body: dict) -> None:
    check(http.post("/v1/chat/completions", json=body))


@FUZZ
@given(
    content=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=200))
)
def test_arbitrary_bodies_never_get_a_5xx(http: httpx.Client, content: bytes) -> None:
    response = http.post(
        "/v1/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    check(response)
