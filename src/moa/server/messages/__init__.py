"""Anthropic's Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`) over the
same runs as chat completions: `request` turns a request's system, content blocks and tools
into the chat shapes the engine speaks, `reply` shapes a finished run as a `message`, `stream`
is the event sequence of a streamed one, `errors` Anthropic's error body, `route` the routes.
Part of the server: may import what it may.
"""
