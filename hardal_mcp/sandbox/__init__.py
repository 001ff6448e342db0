"""A faithful fake of the Hardal analytics API, serving deterministic synthetic sessions.

Used by ``hardal-mcp --demo``, the tests and the benchmarks. It implements the two session routes of
Hardal's legacy API with the documented auth (``Authorization: Bearer <key>``), error body
(``{"error": {"code": <status>, "message": ...}}``), parameters and paging:

* ``GET /api/websites/{id}/sessions``: newest first, ``limit`` (default and cap 1000) and ``offset``;
* ``GET /api/websites/{id}/sessions/{sessionId}/activity``: ``page``/``limit`` (default 50, cap 500),
  ``orderBy`` and ``order``.

Where the docs are silent the sandbox decides, and says so: ``timeframe=custom`` (the default) without
dates means today, with only ``startDate`` it runs to today, with only ``endDate`` it is that one day;
presets ignore the dates; sessions older than about two years are gone (retention); a session exists
once it has started. Any website id matching ``[A-Za-z0-9_-]{1,64}`` has its own seeded data, and ids
starting with ``missing`` answer 404. Session ids look like ``sess_20250312_42_9f3a`` (UTC day, index
in that day, check digits). See :mod:`hardal_mcp.sandbox.data` for what the synthetic traffic shows.
"""

from hardal_mcp.sandbox.app import create_app, serve
from hardal_mcp.sandbox.config import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig

__all__ = ["DEMO_API_KEY", "DEMO_WEBSITE_ID", "SandboxConfig", "create_app", "serve"]
