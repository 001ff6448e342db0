"""Configuration of the sandbox server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from hardal_mcp.sandbox.faults import Fault, check_faults

DEMO_API_KEY = "demo-key"
DEMO_WEBSITE_ID = "demo"


@dataclass(frozen=True)
class SandboxConfig:
    """How the fake Hardal API behaves.

    ``sessions_per_day`` is an average: weekdays, weekends, sale days and daily noise vary around it.
    ``api_key`` and any ``more_keys`` are accepted (every key sees the same data, under a rate limit of its own).
    ``now`` pins the clock (it must be timezone-aware) so that ``today`` and ``last7days`` are reproducible.
    ``faults`` maps website ids to the :class:`~hardal_mcp.sandbox.faults.Fault` their requests meet; the
    key ``"*"`` applies to every website without an entry of its own. None by default: the sandbox is
    realistic unless told otherwise.
    """

    sessions_per_day: int = 1500
    api_key: str = DEMO_API_KEY
    more_keys: tuple[str, ...] = ()
    rate_limit_per_minute: int | None = None
    retry_after: bool = False
    now: datetime | None = None
    seed: int = 0
    faults: Mapping[str, Fault] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.sessions_per_day < 0:
            raise ValueError("sessions_per_day must be >= 0")
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be >= 1 or None")
        if self.now is not None and self.now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        if not all(self.keys):
            raise ValueError("api_key and more_keys must not be empty")
        check_faults(self.faults)
        object.__setattr__(self, "faults", MappingProxyType(dict(self.faults)))  # frozen means frozen

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the sandbox accepts."""
        return (self.api_key, *self.more_keys)

    def fault_for(self, website_id: str) -> Fault | None:
        """The fault that requests to this website meet, if any."""
        return self.faults.get(website_id) or self.faults.get("*")
