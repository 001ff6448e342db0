"""hardal-mcp: an MCP server for the Hardal analytics Sessions API."""

__version__ = "0.1.0"
