"""Runs: submit, list, read, metrics, live events, cancel."""

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, status
from fastapi.responses import StreamingResponse

from api.deps import ServiceDep, SessionDep, TenantDep, data_access_for
from api.problems import Problem
from api.schemas import RunList, RunMetrics, RunPublic, Series, finite
from api.sweeper import send
from core.engine.plan import Plan, plan_experiment
from core.spec.schema import parse_spec
from core.status import RunStatus
from core.store import runs, submit
from core.store.models import Run

router = APIRouter(prefix="/v1/runs", tags=["runs"])
SpecDocument = Annotated[dict[str, Any], Body(description="an experiment spec; see GET /v1/specs/schema")]


def get_run_or_404(session: SessionDep, run_id: str, tenant: str) -> Run:
    """The tenant's run; another tenant's run is a 404 too (its existence is not disclosed)."""
    run = runs.get_run(session=session, run_id=run_id, tenant=tenant)
    if run is None:
        raise Problem(404, "Run not found", f"no run {run_id!r}")
    return run


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=RunPublic)
def submit_run(
    document: SpecDocument,
    session: SessionDep,
    service: ServiceDep,
    tenant: TenantDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunPublic:
    """Validate the spec against its data and the tenant's limits, store it and queue it: 202 with
    the queued run. A repeated Idempotency-Key returns the original run."""

    def plan(spec: dict[str, Any]) -> Plan:
        with data_access_for(service, tenant):
            return plan_experiment(parse_spec(spec))

    try:
        submission = submit.submit_run(
            session=session,
            tenant=tenant,
            document=document,
            plan=plan,
            settings=service.settings,
            idempotency_key=idempotency_key,
        )
    except submit.IdempotencyConflict as exc:
        raise Problem(409, "Idempotency-Key reused", str(exc)) from None
    except submit.QuotaExceeded as exc:
        raise Problem(429, "Quota exceeded", str(exc)) from None
    if submission.created:  # if the broker is down, the sweeper sends it later
        send(service.queue, service.settings, service.sessions, [submission.run.id])
    return RunPublic.of(submission.run)


@router.get("", response_model=RunList)
def list_runs(
    session: SessionDep,
    tenant: TenantDep,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(RunStatus) + ")$")] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> RunList:
    """Runs, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = runs.list_runs(session=session, tenant=tenant, status=status, name=name, limit=limit, cursor=cursor)
    return RunList(items=[RunPublic.of(r) for r in page], next_cursor=page[-1].id if len(page) == limit else None)


@router.get("/{run_id}", response_model=RunPublic)
def read_run(run_id: str, session: SessionDep, tenant: TenantDep) -> RunPublic:
    return RunPublic.of(get_run_or_404(session, run_id, tenant))


@router.get("/{run_id}/metrics", response_model=RunMetrics)
def read_metrics(
    run_id: str,
    session: SessionDep,
    tenant: TenantDep,
    names: Annotated[list[str] | None, Query(description="only these metric names")] = None,
) -> RunMetrics:
    """Every metric series of the run (per epoch and per step), read in one query."""
    get_run_or_404(session, run_id, tenant)
    series: dict[str, Series] = {}
    for row in runs.metric_rows(session=session, run_id=run_id, names=names):
        points = series.setdefault(row.name, Series(step=[], epoch=[], value=[]))
        points.step.append(row.step)
        points.epoch.append(row.epoch)
        points.value.append(finite(row.value))
    return RunMetrics(run_id=run_id, series=series)


@router.post("/{run_id}/cancel", response_model=RunPublic)
def cancel(run_id: str, session: SessionDep, tenant: TenantDep) -> RunPublic:
    """Stop a queued run at once or a running one within an epoch; 409 if it already finished."""
    run = get_run_or_404(session, run_id, tenant)
    if RunStatus(run.status).terminal:
        raise Problem(409, "Run already finished", f"run {run_id} is {run.status}")
    runs.cancel_run(session=session, run_id=run_id)
    session.refresh(run)
    return RunPublic.of(run)


def _sse(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


@router.get(
    "/{run_id}/events", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}}
)
def events(
    run_id: str,
    session: SessionDep,
    service: ServiceDep,
    tenant: TenantDep,
    last_event_id: Annotated[int | None, Header()] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``status`` on every status change, ``metric`` for every point, in order;
    ends after the run finishes. Reconnect with Last-Event-ID to resume after a metric."""
    get_run_or_404(session, run_id, tenant)
    poll = service.settings.sse_poll_seconds

    def stream() -> Iterator[str]:
        seen_status, after = None, last_event_id or 0
        while True:
            with service.sessions() as s:
                run = s.get(Run, run_id)
                rows = runs.metric_rows(session=s, run_id=run_id, after_id=after)
            for row in rows:
                after = row.id
                yield _sse(
                    "metric",
                    {"step": row.step, "epoch": row.epoch, "name": row.name, "value": finite(row.value)},
                    row.id,
                )
            if run.status != seen_status:
                seen_status = run.status
                yield _sse("status", {"status": run.status, "epoch": run.epoch, "failure": run.failure})
            if RunStatus(run.status).terminal and not rows:
                return
            time.sleep(poll)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
