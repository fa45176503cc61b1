"""`moa serve`: recipes as models behind an OpenAI-compatible HTTP API (needs `moa[server]`):
chat completions (`chat`, `runs`), the Responses API (`responses/`), every event of a run
(`events_api`), the models list, the playground (`ui/`), limits, metrics and security.

A face: may import the recipes, the engine and everything below them; never the CLI.
"""

from moa.server.app import create_app
from moa.server.main import app_from_env, serve

__all__ = ["app_from_env", "create_app", "serve"]
