"""The baseline for start-up and call latency: a bare `MCPServer` with one tool, on the same SDK.

Run as a script (`python bench/bare_server.py`), so that nothing but the SDK is imported."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("bare", version="0")


@server.tool()
async def echo(text: str) -> str:
    """Return the text."""
    return text


if __name__ == "__main__":
    server.run("stdio")
