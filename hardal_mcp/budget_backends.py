"""Which backend keeps each key's rate budget, chosen once from the settings:

* HARDAL_REDIS_URL set: Redis, shared by every replica on every machine (`budget_redis`);
* else, HARDAL_STORE on: a file shared by this machine's processes (`budget`), or where that file cannot be
  used, the process's own budget;
* else the process's own (`ratelimit.RateLimiter`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .budget import shared_limiter
from .config import Settings
from .errors import ConfigError
from .ratelimit import BudgetBackend, Limiter, RateLimiter


class LocalBudgets:
    """Each key's budget kept by this process alone."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute

    def __call__(self, fingerprint: str) -> Limiter:
        return RateLimiter(self.per_minute)

    async def run(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class MachineBudgets:
    """Each key's budget in a file shared by this machine's processes (`budget.shared_limiter`), or the
    process's own where that file cannot be used."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, fingerprint: str) -> Limiter:
        return shared_limiter(self.settings, fingerprint) or RateLimiter(self.settings.rate_limit)

    async def run(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def local_budgets(settings: Settings) -> BudgetBackend:
    return LocalBudgets(settings.rate_limit)


def budget_backend(settings: Settings) -> BudgetBackend:
    if settings.redis_url is not None:
        with needs_redis():
            from .budget_redis import RedisBudgets
        return RedisBudgets(settings)
    return MachineBudgets(settings)


@contextmanager
def needs_redis() -> Iterator[None]:
    """Around an import of `budget_redis`, whose client is an extra: its absence is a ConfigError."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"HARDAL_REDIS_URL needs the redis client ({exc.name} is missing): pip install 'hardal-mcp[redis]'."
        ) from None
