"""What the tools return as structured content. Each model doubles as the tool's output schema, so
field descriptions are terse: they are read by models and count against the context budget."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field

from .params import Timeframe, Window


class WindowInfo(BaseModel):
    """The period a result covers, always explicit so the model never guesses it."""

    timeframe: Timeframe
    start: str = Field(description="First day, YYYY-MM-DD")
    end: str = Field(description="Last day, YYYY-MM-DD")
    timezone: str

    @classmethod
    def of(cls, window: Window) -> WindowInfo:
        return cls(
            timeframe=window.timeframe,
            start=window.start.isoformat(),
            end=window.end.isoformat(),
            timezone=window.timezone,
        )

    def to_window(self) -> Window:
        return Window(self.timeframe, date.fromisoformat(self.start), date.fromisoformat(self.end), self.timezone)


class SessionRow(BaseModel):
    """One session with every field the API gives."""

    id: str
    visitor_id: str | None = None
    started_at: datetime | None = None
    duration_s: float | None = Field(default=None, description="Duration in seconds")
    page_views: int | None = None
    events: int | None = None
    pages: list[str] = Field(default_factory=list, description="Visited paths in order")
    browser: str | None = None
    os: str | None = None
    device: str | None = None
    country: str | None = None
    fields: dict[str, str] = Field(default_factory=dict, description="UTM and custom properties")


class PageInfo(BaseModel):
    total: int | None = Field(default=None, description="Sessions in the window")
    offset: int
    returned: int
    next_offset: int | None = Field(default=None, description="Pass as offset to continue; null at the end")
    has_more: bool


class SessionsResult(BaseModel):
    website_id: str
    window: WindowInfo
    segment: str | None = Field(default=None, description="Filter applied; the page holds matches only")
    scanned: int | None = Field(default=None, description="With a segment: sessions examined for this page")
    note: str | None = None
    page: PageInfo
    sessions: list[SessionRow]
    omitted: int = Field(default=0, description="Rows of this page cut to stay in the output budget")


class ActivityRow(BaseModel):
    at: datetime | None = None
    type: str | None = None
    name: str | None = None
    url: str | None = None
    properties: dict[str, str] = Field(default_factory=dict)


class ActivityResult(BaseModel):
    website_id: str
    session_id: str
    timezone: str
    order: str = Field(description="asc = oldest first")
    total_events: int | None = None
    page: int
    has_more: bool
    next_page: int | None = None
    events: list[ActivityRow]
    omitted: int = Field(default=0, description="Events of this page cut to stay in the output budget")
