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

Faults, off by default. ``SandboxConfig(faults={website_id: fault, "*": fault})`` makes one website (or,
with ``"*"``, every other one) misbehave the way real APIs, proxies and networks do, for the first N
requests or for good: error statuses (429 with or without ``Retry-After`` in seconds or as an HTTP-date,
500-504), a proxy's HTML page, slow answers, connections dropped mid-body (real servers only), truncated
or wrong-shape JSON, schema drift, empty pages, a total that grows or shrinks mid-scan, a ``hasMore`` that
lies, sessions inserted at the head between pages. :mod:`hardal_mcp.sandbox.faults` describes each one;
``faults.PRESETS`` names a typical instance of each (e.g. ``"503-burst"``, ``"slow-after-first"``,
``"drift"``), for a command-line switch: ``SandboxConfig(faults={"*": PRESETS[name]})``.

``traffic(app)`` tells, per website id, every request (arrival time, route, status, the instant a
``Retry-After`` allowed a retry from) and every session served: the ground truth tests compare with.
``serve_in_thread(config)`` serves it on a real loopback socket inside the current process.
"""

from hardal_mcp.sandbox.app import Running, Traffic, create_app, serve, serve_in_thread, traffic
from hardal_mcp.sandbox.config import DEMO_API_KEY, DEMO_WEBSITE_ID, SandboxConfig
from hardal_mcp.sandbox.faults import PRESETS, Fault

__all__ = [
    "DEMO_API_KEY",
    "DEMO_WEBSITE_ID",
    "PRESETS",
    "Fault",
    "Running",
    "SandboxConfig",
    "Traffic",
    "create_app",
    "serve",
    "serve_in_thread",
    "traffic",
]
