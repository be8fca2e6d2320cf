"""Run, metric and artifact persistence: keyword-only service functions over a Session."""

import secrets
import time
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from core.status import RunStatus
from core.store.models import Artifact, Metric, Run, RunKind, TenantQuota, utcnow

QUEUED, RUNNING, FAILED = RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED


class ClaimOutcome(StrEnum):
    """What a worker's claim of a queued run came to."""

    CLAIMED = "claimed"  # this worker trains it
    DEFERRED = "deferred"  # still queued: its tenant already has its quota of running runs
    SKIPPED = "skipped"  # not queued any more (another worker has it, it finished or was cancelled)


def new_id(prefix: str) -> str:
    """Time-ordered id: milliseconds then randomness, so sorting by id sorts by creation."""
    return f"{prefix}_{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def create_run(
    *,
    session: Session,
    tenant: str,
    spec: dict[str, Any],
    name: str,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    kind: RunKind = RunKind.RUN,
    parent_id: str | None = None,
    trial: int | None = None,
    params: dict[str, Any] | None = None,
    document: dict[str, Any] | None = None,
    retry_of: str | None = None,
) -> Run:
    run = Run(
        id=new_id("run"),
        tenant=tenant,
        name=name,
        status=QUEUED,
        spec=spec,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=utcnow(),
        kind=kind,
        parent_id=parent_id,
        trial=trial,
        params=params,
        document=document,
        retry_of=retry_of,
    )
    session.add(run)
    session.flush()
    return run


def get_run(*, session: Session, run_id: str, tenant: str) -> Run | None:
    """The run if it belongs to ``tenant`` (another tenant's run does not exist for this one)."""
    run = session.get(Run, run_id)
    return run if run is not None and run.tenant == tenant else None


def run_by_idempotency_key(*, session: Session, key: str) -> Run | None:
    return session.scalar(select(Run).where(Run.idempotency_key == key))


def count_active(*, session: Session, tenant: str, status: RunStatus) -> int:
    """The tenant's trainings (not parents) in ``status``."""
    return session.scalar(
        select(func.count()).select_from(Run).where(Run.tenant == tenant, Run.status == status, Run.kind == RunKind.RUN)
    )


def list_runs(
    *,
    session: Session,
    tenant: str,
    status: str | None,
    name: str | None,
    limit: int,
    cursor: str | None,
    parent: str | None = None,
) -> list[Run]:
    """The tenant's top-level runs (or ``parent``'s children), newest first; ``cursor`` is the
    last id of the previous page."""
    query = select(Run).where(Run.tenant == tenant, Run.parent_id == parent).order_by(Run.id.desc()).limit(limit)
    if status:
        query = query.where(Run.status == status)
    if name:
        query = query.where(Run.name == name)
    if cursor:
        query = query.where(Run.id < cursor)
    return list(session.scalars(query))


def claim_run(*, session: Session, run_id: str, worker: str, lease_s: float, max_running: int) -> ClaimOutcome:
    """queued → running as a compare-and-set: only one worker can win, a redelivered message loses.
    The claim also waits while the tenant already has its quota of runs training (its own, else
    ``max_running``); on
    PostgreSQL the tenant's claims take turns (a transaction-scoped advisory lock), since under
    READ COMMITTED two claims at once would each count fewer than the limit. A child's claim
    starts its parent (queued → running)."""
    if session.get_bind().dialect.name == "postgresql":
        tenant = select(Run.tenant).where(Run.id == run_id).scalar_subquery()
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(tenant))))
    other = aliased(Run)
    running = (
        select(func.count())
        .select_from(other)
        .where(other.tenant == Run.tenant, other.status == RUNNING, other.kind == RunKind.RUN)
    )
    own = select(TenantQuota.running).where(TenantQuota.tenant == Run.tenant).scalar_subquery()
    limit = func.coalesce(own, max_running)  # the tenant's own quota, else the service's
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.kind == RunKind.RUN, Run.status == QUEUED, running.scalar_subquery() < limit)
        .values(
            status=RUNNING,
            worker=worker,
            started_at=utcnow(),
            attempt=Run.attempt + 1,
            lease_expires_at=utcnow() + timedelta(seconds=lease_s),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:
        parent = select(Run.parent_id).where(Run.id == run_id).scalar_subquery()
        session.execute(
            update(Run)
            .where(Run.id == parent, Run.status == QUEUED)
            .values(status=RUNNING, started_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return ClaimOutcome.CLAIMED
    session.commit()
    still_queued = session.scalar(select(Run.status).where(Run.id == run_id, Run.kind == RunKind.RUN)) == QUEUED
    return ClaimOutcome.DEFERRED if still_queued else ClaimOutcome.SKIPPED


class LeaseLost(Exception):
    """The run is no longer this attempt's: its lease ran out and the run was requeued (another
    attempt has it, or it ended). The attempt must stop writing."""


def _held(run_id: str, worker: str, attempt: int) -> Any:
    """The fence on every write an attempt makes: the run is running, by this worker, in this attempt."""
    return (Run.id == run_id) & (Run.status == RUNNING) & (Run.worker == worker) & (Run.attempt == attempt)


def renew_lease(*, session: Session, run_id: str, worker: str, attempt: int, lease_s: float) -> bool:
    """Extend a running run's lease (the worker's heartbeat); False if the run is no longer this attempt's."""
    result = session.execute(
        update(Run).where(_held(run_id, worker, attempt)).values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
    )
    session.commit()
    return result.rowcount == 1


def holds(*, session: Session, run_id: str, worker: str, attempt: int) -> bool:
    """Whether the run is still this attempt's."""
    return session.scalar(select(func.count()).select_from(Run).where(_held(run_id, worker, attempt))) == 1


def mark_enqueued(*, session: Session, run_ids: list[str]) -> None:
    session.execute(update(Run).where(Run.id.in_(run_ids)).values(enqueued_at=utcnow()))
    session.commit()


def requeue(*, session: Session, run_id: str, worker: str, reason: str, max_attempts: int) -> RunStatus:
    """Give a running run back to the queue after an infrastructure failure, or fail it for good
    once ``max_attempts`` attempts are spent; a run whose cancel was asked is cancelled instead.
    Returns the new status."""
    run = session.get(Run, run_id)
    session.refresh(run)
    if run.cancel_requested:  # a cancel asked of the attempt that was lost holds for the run
        values = {"status": RunStatus.CANCELLED, "finished_at": utcnow(), "stop_reason": "cancelled by request"}
    elif run.attempt >= max_attempts:
        values = {
            "status": FAILED,
            "finished_at": utcnow(),
            "failure": f"{reason}; gave up after {run.attempt} attempts",
        }
    else:
        values = {"status": QUEUED, "worker": None, "lease_expires_at": None, "enqueued_at": None}  # sent at once
    session.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING, Run.worker == worker).values(**values))
    session.commit()
    return values["status"]


def sweep(*, session: Session, max_attempts: int, requeue_after_s: float) -> list[str]:
    """Runs to send to the workers again: those whose worker's lease expired (the worker died) go
    back to the queue (or fail after ``max_attempts``), and queued runs whose message may have been
    lost (enqueued more than ``requeue_after_s`` ago). A duplicate message is harmless: the claim
    is a compare-and-set."""
    now = utcnow()
    trainings = select(Run).where(Run.kind == RunKind.RUN)
    for run in session.scalars(trainings.where(Run.status == RUNNING, Run.lease_expires_at < now)):
        requeue(
            session=session,
            run_id=run.id,
            worker=run.worker or "",
            max_attempts=max_attempts,
            reason=f"worker {run.worker} stopped renewing its lease",
        )
    stale = now - timedelta(seconds=requeue_after_s)
    lost = select(Run.id).where(
        Run.kind == RunKind.RUN, Run.status == QUEUED, (Run.enqueued_at.is_(None)) | (Run.enqueued_at < stale)
    )
    return list(session.scalars(lost))


def finish_run(
    *,
    session: Session,
    run_id: str,
    status: RunStatus,
    summary: dict[str, Any] | None,
    failure: str | None,
    stop_reason: str | None,
    verdicts: list[dict[str, Any]] | None = None,
    held_by: tuple[str, int] | None = None,
    artifacts: Sequence[tuple[str, str, int]] = (),
) -> bool:
    """End a running run, with its artifacts (kind, uri, size), in one transaction. ``held_by``
    (worker, attempt) fences it: an attempt whose lease was lost ends nothing (False)."""
    values: dict[str, Any] = {
        "status": status,
        "summary": summary,
        "failure": failure,
        "stop_reason": stop_reason,
        "finished_at": utcnow(),
    }
    if verdicts is not None:
        values["verdicts"] = verdicts
    where = _held(run_id, *held_by) if held_by else (Run.id == run_id) & (Run.status == RUNNING)
    if session.execute(update(Run).where(where).values(**values)).rowcount != 1:
        session.rollback()
        return False
    session.add_all(Artifact(run_id=run_id, kind=kind, uri=uri, size=size) for kind, uri, size in artifacts)
    session.commit()
    return True


def cancel_run(*, session: Session, run_id: str) -> RunStatus:
    """Cancel a queued run at once, or ask a running one to stop; returns the status seen. A
    parent is cancelled at once, and with it every child: queued ones at once, running ones
    asked to stop (they end within an epoch)."""
    run = session.get(Run, run_id)
    if run is not None and run.kind != RunKind.RUN:
        return _cancel_parent(session, run_id)
    queued = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=utcnow(), stop_reason="cancelled before it started")
    )
    if queued.rowcount == 1:
        session.commit()
        return RunStatus.CANCELLED
    session.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING).values(cancel_requested=True))
    session.commit()
    session.refresh(run)
    return RunStatus(run.status)


def _cancel_parent(session: Session, parent_id: str) -> RunStatus:
    """The parent row is written first: it serialises with ``core.store.parents.advance`` (which
    locks it), so no child is created after the cancel."""
    now = utcnow()
    session.execute(
        update(Run)
        .where(Run.id == parent_id, Run.status.in_((QUEUED, RUNNING)))
        .values(status=RunStatus.CANCELLED, finished_at=now, stop_reason="cancelled by request")
    )
    stop_children(session=session, parent_id=parent_id, reason="its parent was cancelled")
    session.commit()
    return RunStatus(session.scalar(select(Run.status).where(Run.id == parent_id)))


def stop_children(*, session: Session, parent_id: str, reason: str) -> None:
    """Cancel a parent's queued children and ask its running ones to stop (not committed)."""
    children = Run.parent_id == parent_id
    session.execute(
        update(Run)
        .where(children, Run.status == QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=utcnow(), stop_reason=reason)
    )
    session.execute(update(Run).where(children, Run.status == RUNNING).values(cancel_requested=True))


def report_progress(
    *,
    session: Session,
    run_id: str,
    worker: str,
    attempt: int,
    epoch: int,
    points: list[tuple[int, int, str, float]],
    verdicts: list[dict[str, Any]] | None = None,
) -> bool:
    """One transaction, fenced on (run, worker, attempt): store metric points, the epoch reached
    and (when given) the verdicts so far; returns whether a cancel was asked. LeaseLost (nothing
    stored) when the run is no longer this attempt's."""
    values: dict[str, Any] = {"epoch": epoch}
    if verdicts is not None:
        values["verdicts"] = verdicts
    result = session.execute(
        update(Run).where(_held(run_id, worker, attempt)).values(**values).returning(Run.cancel_requested)
    )
    cancel = result.scalar()
    if cancel is None:
        session.rollback()
        raise LeaseLost(run_id)
    _insert_metrics(session, run_id, points)
    session.commit()
    return bool(cancel)


def add_points(*, session: Session, run_id: str, points: list[tuple[int, int, str, float]]) -> None:
    """Store metric points of a run outside any attempt (imports, benchmarks)."""
    _insert_metrics(session, run_id, points)
    session.commit()


def _insert_metrics(session: Session, run_id: str, points: list[tuple[int, int, str, float]]) -> None:
    """A point already stored for the same (run, name, step), as after a resume from a checkpoint,
    is kept and the repeat ignored."""
    rows = [{"run_id": run_id, "step": s, "epoch": e, "name": n, "value": v} for s, e, n, v in points]
    if rows:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(insert(Metric).on_conflict_do_nothing(index_elements=["run_id", "name", "step"]), rows)


def metric_rows(
    *, session: Session, run_ids: list[str], after_id: int = 0, names: list[str] | None = None
) -> list[Row[tuple[int, str, int, int, str, float]]]:
    """Metric points of some runs in insertion order (one query), optionally only some names:
    rows of (id, run_id, step, epoch, name, value), read as plain columns (no ORM objects: half
    the time on a 100k-point run)."""
    query = (
        select(Metric.id, Metric.run_id, Metric.step, Metric.epoch, Metric.name, Metric.value)
        .where(Metric.run_id.in_(run_ids), Metric.id > after_id)
        .order_by(Metric.id)
    )
    if names:
        query = query.where(Metric.name.in_(names))
    return list(session.execute(query))
