"""The exceptions hardal-mcp raises, and the only ones a tool lets reach the model.

Every message is written for the reader who must act on it: it names the parameter, setting or
upstream status at fault and says what to do. No message ever contains the API key.

    HardalError
    ├── ConfigError            a setting is missing or invalid (names the environment variable)
    ├── InputError             a tool argument is invalid (names the parameter)
    └── UpstreamError          the Hardal API could not give an answer
        ├── AuthError          401/403: key missing or rejected
        ├── NotFoundError      404: unknown website or session
        ├── RateLimitError     429 persisted through the retries
        ├── ServerError        5xx persisted through the retries
        ├── NetworkError       connect/read failures and timeouts persisted through the retries
        └── ProtocolError      the response was not the JSON the API documents

An error of ours raised in a task group leaves it as itself (`own_errors`), never as an ExceptionGroup.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class HardalError(Exception):
    """Base class: `str(error)` is a complete, actionable message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(HardalError):
    """A setting is missing or invalid."""


class InputError(HardalError):
    """A tool argument is invalid; `parameter` names it."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"Invalid `{parameter}`: {problem}")
        self.parameter = parameter


class UpstreamError(HardalError):
    """The Hardal API failed to answer; `status` is the last HTTP status seen, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(UpstreamError):
    """The API key is missing or was rejected."""


class NotFoundError(UpstreamError):
    """The website or session does not exist (or the key cannot see it)."""


class RateLimitError(UpstreamError):
    """Hardal kept answering 429; `retry_after` is how long to wait, in seconds, if known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class ServerError(UpstreamError):
    """Hardal kept failing with 5xx."""


class NetworkError(UpstreamError):
    """Hardal could not be reached, or did not answer in time."""


class ProtocolError(UpstreamError):
    """Hardal answered with a body this client cannot read."""


@contextmanager
def own_errors() -> Iterator[None]:
    """Around a task group: when every error it collected is a HardalError, raise the first one itself, so
    the reader gets its message instead of an ExceptionGroup (anything else still leaves as the group)."""
    try:
        yield
    except BaseExceptionGroup as group:
        ours, others = group.split(HardalError)
        if ours is None or others is not None:
            raise
        raise _first(ours) from None


def _first(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
