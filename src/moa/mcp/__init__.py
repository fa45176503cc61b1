"""`moa mcp`: the served recipes as tools for MCP clients (Claude Code, Claude Desktop, Cursor,
Zed), over stdio or streamable HTTP, built with the official `mcp` SDK (needs `moa[mcp]`):
`panel` runs a request, `progress` turns a run's events into progress notifications, `tools`
declares the tools, `main` serves them.

A face above the HTTP server, whose recipe loading, key check and redaction it reuses: may
import the server and everything below it; never the CLI. Nothing here is imported until
`moa mcp` runs.
"""
