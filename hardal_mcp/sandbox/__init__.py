"""A faithful fake of the Hardal analytics API, serving deterministic synthetic sessions.

Used by ``hardal-mcp --demo``, the tests and the benchmarks. It implements the two session routes of
the legacy API (``GET /api/websites/{id}/sessions`` and ``…/sessions/{sessionId}/activity``) with the
documented auth, error body, paging and parameters. Any website id matching ``[A-Za-z0-9_-]{1,64}``
has its own seeded data; ids starting with ``missing`` answer 404.
"""

from hardal_mcp.sandbox.app import create_app, serve
from hardal_mcp.sandbox.config import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig

__all__ = ["DEMO_API_KEY", "DEMO_WEBSITE_ID", "SandboxConfig", "create_app", "serve"]
