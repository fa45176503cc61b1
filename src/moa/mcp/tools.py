"""The MCP tools, declared with the SDK's FastMCP: `ask` (a recipe answers a prompt, with
progress notifications while its layers run) and `list_recipes`.

No `from __future__ import annotations` here: FastMCP reads the tools' annotations at run
time (their argument and output schemas, and which argument takes the Context)."""

from typing import Annotated, Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.session import ServerSession
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from moa import __version__
from moa.errors import MoAError
from moa.mcp.panel import Panel
from moa.mcp.progress import Step
from moa.mcp.replies import AskReply, RecipeList, as_text, describe, reply

INSTRUCTIONS = (
    "moa answers with a Mixture-of-Agents: several models propose answers in layers, and an "
    "aggregator writes the final one from theirs. Use `ask` for questions that deserve more "
    "than one model's view (it is slower and costs more than one call); `list_recipes` says "
    "which mixtures this server offers."
)


def _ask_description(panel: Panel) -> str:
    return (
        "Answer a prompt with a Mixture-of-Agents recipe: its proposers answer in layers, "
        f"then its aggregator writes the answer. Recipes here: {', '.join(panel.names)} "
        f"(default: {panel.default}). Progress is reported as each model answers."
    )


def _fastmcp(host: str, port: int) -> FastMCP[Any]:
    server: FastMCP[Any] = FastMCP(
        "moa", instructions=INSTRUCTIONS, host=host, port=port, log_level="WARNING"
    )
    # FastMCP takes no version, and its server says the MCP library's own in `serverInfo`.
    server._mcp_server.version = __version__
    return server


def build_server(panel: Panel, *, host: str = "127.0.0.1", port: int = 8000) -> FastMCP[Any]:
    """A FastMCP server offering `panel`'s recipes. `host` and `port` matter over HTTP only:
    on a loopback host the SDK also refuses requests whose Host or Origin header names
    another (DNS rebinding)."""
    server = _fastmcp(host, port)
    names = ", ".join(panel.names)

    @server.tool(
        title="Ask a Mixture-of-Agents",
        annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=True),
        description=_ask_description(panel),
    )
    async def ask(
        prompt: Annotated[str, Field(description="The question or task, with what it needs")],
        ctx: Context[ServerSession, Any, Any],
        recipe: Annotated[
            str | None, Field(description=f"Which recipe answers: one of {names}")
        ] = None,
        max_cost_usd: Annotated[
            float | None,
            Field(gt=0, description="Refuse any stage that could take the run past this (USD)"),
        ] = None,
        include_proposals: Annotated[
            bool, Field(description="Also return each proposer's answer")
        ] = False,
        include_cost: Annotated[bool, Field(description="Also return tokens and USD")] = False,
    ) -> Annotated[CallToolResult, AskReply]:
        async def report(step: Step) -> None:
            await ctx.report_progress(step.progress, step.total, step.message)

        try:
            if not prompt.strip():
                raise ToolError("the prompt is empty: pass the question as `prompt`")
            name = panel.pick(recipe)
            result = await panel.run(prompt, name, max_cost_usd=max_cost_usd, on_step=report)
        except MoAError as exc:
            # moa's messages name the fix; a provider key an upstream echoed stays here.
            raise ToolError(panel.redactor.text(str(exc))) from None
        answer = reply(
            name, result, proposals=include_proposals, cost=include_cost, scrub=panel.redactor
        )
        return CallToolResult(
            content=[TextContent(type="text", text=as_text(answer))],
            structuredContent=answer.model_dump(mode="json"),
        )

    @server.tool(
        title="List the recipes",
        annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False),
    )
    def list_recipes() -> RecipeList:
        """The Mixture-of-Agents recipes `ask` can use: each one's layers of models, its
        aggregator, and its budget if it has one."""
        return RecipeList(
            default=panel.default, recipes=[describe(r) for r in panel.recipes.values()]
        )

    return server
