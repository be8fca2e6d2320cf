"""Run, metric and artifact persistence: keyword-only service functions over a Session."""

import secrets
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.store.models import TERMINAL_STATUSES, Artifact, Metric, Run, utcnow


def new_id(prefix: str) -> str:
    """Time-ordered id: milliseconds then randomness, so sorting by id sorts by creation."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def create_run(
    *,
    session: Session,
    spec: dict[str, Any],
    name: str,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> Run:
    run = Run(
        id=new_id("run"),
        name=name,
        status="queued",
        spec=spec,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def run_by_idempotency_key(*, session: Session, key: str) -> Run | None:
    return session.scalar(select(Run).where(Run.idempotency_key == key))


def list_runs(*, session: Session, status: str | None, name: str | None, limit: int, cursor: str | None) -> list[Run]:
    """Newest first; ``cursor`` is the last id of the previous page."""
    query = select(Run).order_by(Run.id.desc()).limit(limit)
    if status:
        query = query.where(Run.status == status)
    if name:
        query = query.where(Run.name == name)
    if cursor:
        query = query.where(Run.id < cursor)
    return list(session.scalars(query))


def claim_run(*, session: Session, run_id: str, worker: str) -> bool:
    """queued → running as a compare-and-set: only one worker can win, a redelivery loses."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "queued")
        .values(status="running", worker=worker, started_at=utcnow(), attempt=Run.attempt + 1)
    )
    session.commit()
    return result.rowcount == 1


def finish_run(
    *,
    session: Session,
    run_id: str,
    status: str,
    summary: dict[str, Any] | None,
    failure: str | None,
    stop_reason: str | None,
) -> None:
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running")
        .values(status=status, summary=summary, failure=failure, stop_reason=stop_reason, finished_at=utcnow())
    )
    session.commit()


def cancel_run(*, session: Session, run_id: str) -> str:
    """Cancel a queued run at once, or ask a running one to stop; returns the status seen."""
    queued = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "queued")
        .values(status="cancelled", finished_at=utcnow(), stop_reason="cancelled before it started")
    )
    if queued.rowcount == 1:
        session.commit()
        return "cancelled"
    session.execute(update(Run).where(Run.id == run_id, Run.status == "running").values(cancel_requested=True))
    session.commit()
    run = session.get(Run, run_id)
    session.refresh(run)
    return run.status


def cancel_requested(*, session: Session, run_id: str) -> bool:
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def set_epoch(*, session: Session, run_id: str, epoch: int) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(epoch=epoch))
    session.commit()


def add_metrics(*, session: Session, run_id: str, points: Iterable[tuple[int, int, str, float]]) -> None:
    """One batched insert of (step, epoch, name, value) points."""
    rows = [{"run_id": run_id, "step": s, "epoch": e, "name": n, "value": v} for s, e, n, v in points]
    if rows:
        session.execute(Metric.__table__.insert(), rows)
        session.commit()


def metric_rows(*, session: Session, run_id: str, after_id: int = 0, names: list[str] | None = None) -> list[Metric]:
    """Metric points of a run in insertion order (one query), optionally only some names."""
    query = select(Metric).where(Metric.run_id == run_id, Metric.id > after_id).order_by(Metric.id)
    if names:
        query = query.where(Metric.name.in_(names))
    return list(session.scalars(query))


def add_artifact(*, session: Session, run_id: str, kind: str, uri: str, size: int) -> None:
    session.add(Artifact(run_id=run_id, kind=kind, uri=uri, size=size))
    session.commit()


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES


def timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
