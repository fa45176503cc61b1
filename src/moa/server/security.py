"""Client keys (`Authorization: Bearer KEY`, or `x-api-key: KEY` as Anthropic's clients send
it), and keeping upstream keys out of everything the server emits."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from moa.providers.registry import BUILTIN_PROVIDERS
from moa.recipes.schema import Recipe
from moa.server.errors import ApiError, Render, openai_shape

REDACTED = "[redacted]"
# Shorter values are too likely to occur in ordinary text to be worth scrubbing.
_MIN_SECRET_LEN = 6


def parse_keys(value: str | None) -> list[str]:
    """`MOA_API_KEYS`-style: comma-separated, blanks ignored."""
    return [k.strip() for k in (value or "").split(",") if k.strip()]


class BearerAuth:
    """Accepts `Authorization: Bearer KEY` for any configured key; no keys means no auth."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, header: str | None) -> None:
        if not self._keys:
            return
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' "
                "(or 'x-api-key: KEY').",
                code="missing_api_key",
            )
        candidate = token.strip().encode()
        # compare_digest against every key, so timing does not reveal which prefix matched.
        matched = [hmac.compare_digest(candidate, key) for key in self._keys]
        if not any(matched):
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")


class AuthGate:
    """ASGI middleware: every path but the open ones needs a key, checked before the body is
    read, so unauthenticated clients cannot make the server buffer anything."""

    def __init__(
        self,
        app: ASGIApp,
        auth: BearerAuth,
        open_paths: Iterable[str] = ("/healthz",),
        on_refuse: Callable[[str], None] | None = None,
        render: Render = openai_shape,
    ) -> None:
        self.app = app
        self.auth = auth
        self.open_paths = frozenset(open_paths)
        self.on_refuse = on_refuse
        self.render = render  # the refusal in the shape of the API the path belongs to

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.auth.enabled and scope["path"] not in self.open_paths:
            try:
                self.auth.check(_presented(dict(scope["headers"])))
            except ApiError as error:
                error.headers.setdefault("WWW-Authenticate", "Bearer")
                if self.on_refuse is not None:
                    self.on_refuse(error.code or "unauthorized")
                response: Response = self.render(scope["path"], error)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _presented(headers: dict[bytes, bytes]) -> str:
    """The key the client sent, as a bearer header: Anthropic's SDKs and Claude Code send
    theirs as `x-api-key`."""
    bearer = headers.get(b"authorization", b"").decode("latin-1")
    key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return bearer if bearer or not key else f"Bearer {key}"


class Redactor:
    """Replaces the values of upstream key variables in text the server sends or logs.

    Upstream error messages are passed through to clients (they say what went wrong), and some
    providers echo the key they were given; this is the last line that keeps it in.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        found = {s for s in secrets if len(s) >= _MIN_SECRET_LEN}
        # Longest first, so a key that contains another is replaced whole.
        self._secrets = sorted(found, key=len, reverse=True)

    @classmethod
    def for_recipes(
        cls, recipes: Iterable[Recipe], env: Mapping[str, str] | None = None
    ) -> Redactor:
        env = os.environ if env is None else env
        names = {c.api_key_env for c in BUILTIN_PROVIDERS.values() if c.api_key_env}
        for recipe in recipes:
            names |= {p.api_key_env for p in recipe.providers.values() if p.api_key_env}
        return cls(env[name] for name in names if env.get(name))

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return value

    def data(self, value: Any) -> Any:
        """The same structure with every string scrubbed (for traces and error bodies)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value
