"""OpenAI's Responses API (`POST /v1/responses`): `route` runs a recipe for a request, `items`
turns a request's input items into a conversation and a result into output items, `stream`
is the typed event sequence of a streamed response. Part of the server: may import what it may.
"""
