"""A client's W3C trace context continued: with tracing on, a request that carries a
`traceparent` header runs its mixture under the client's span, so the client's own trace shows
every layer of it (moa.telemetry)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from moa import telemetry

_HEADERS = (b"traceparent", b"tracestate")


class TraceContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or telemetry.tracer() is None:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _HEADERS
        }
        with telemetry.continued(carrier):
            await self.app(scope, receive, send)
