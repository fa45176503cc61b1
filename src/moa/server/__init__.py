"""`moa serve`: recipes as models behind an OpenAI-compatible HTTP API (needs `moa[server]`)."""

from moa.server.app import create_app
from moa.server.main import app_from_env, serve

__all__ = ["app_from_env", "create_app", "serve"]
