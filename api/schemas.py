"""What the API returns: one public shape per resource, never the ORM object itself."""

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel

from core.store.models import Run


def _utc(moment: datetime) -> datetime:
    """A stored moment with its UTC offset (SQLite gives back naive UTC datetimes): RFC 3339 needs one."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]


class RunPublic(BaseModel):
    id: str
    name: str
    kind: str  # run, or a parent: sweep, kfold
    parent_id: str | None
    trial: int | None  # a sweep trial's number (from 0), a fold's number (from 1)
    params: dict[str, Any] | None  # the values a sweep trial set
    retry_of: str | None  # the run this one retries
    verdicts: list[dict[str, Any]] | None  # what its curves and diagnostics say (live while it trains)
    status: str
    spec: dict[str, Any]
    summary: dict[str, Any] | None
    failure: str | None
    stop_reason: str | None
    epoch: int
    attempt: int
    worker: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, run: Run) -> "RunPublic":
        return cls.model_validate(run, from_attributes=True)

    @classmethod
    def listed(cls, run: Run) -> "RunPublic":
        """The run as a list shows it: its spec without inline data (``data.source.rows`` says how
        many rows it holds; GET /v1/runs/{id} has them), so one inline run cannot make a page megabytes."""
        public = cls.of(run)
        source = public.spec.get("data", {}).get("source", {})
        if source.get("type") == "inline":
            data = {**public.spec["data"], "source": {"type": "inline", "rows": len(source.get("x", []))}}
            public.spec = {**public.spec, "data": data}
        return public


class RunList(BaseModel):
    items: list[RunPublic]
    next_cursor: str | None


class ChildPublic(RunPublic):
    """A child run, with the best value of its sweep's metric and whether it is the best child."""

    metric: float | None
    best: bool


class ChildList(BaseModel):
    items: list[ChildPublic]
    next_cursor: str | None
    metric: str | None  # the sweep's metric (None for a k-fold parent)
    mode: str | None
    best_id: str | None


class Series(BaseModel):
    """One metric's points, columnar: step[i], epoch[i], value[i] (null for a non-finite value)."""

    step: list[int]
    epoch: list[int]
    value: list[float | None]


class RunMetrics(BaseModel):
    run_id: str
    series: dict[str, Series]


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
