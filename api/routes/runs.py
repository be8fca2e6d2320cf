"""Runs: submit, list, read, children, metrics, live events, cancel, retry."""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import Row

from api.deps import Service, ServiceDep, SessionDep, TenantDep, data_access_for
from api.openapi import SPEC_BODY, errors
from api.problems import Problem, invalid_spec
from api.schemas import ChildList, ChildPublic, RunList, RunMetrics, RunPublic, Series, finite
from core.engine.plan import Plan, plan_experiment
from core.errors import SpecInvalid
from core.insight.downsample import downsample
from core.spec.patch import apply_patch
from core.spec.schema import parse_spec
from core.status import RunStatus
from core.store import parents, runs, submit
from core.store.models import Run, RunKind
from worker.celery_app import send

router = APIRouter(prefix="/v1/runs", tags=["runs"])
log = logging.getLogger("trainyard.api")
METRIC_NAME = r"^[\w.:/\-]{1,200}$"  # train_loss, act/0.relu, grad_norm/layers.0.weight
SpecDocument = Annotated[dict[str, Any], Body(description="an experiment spec; see GET /v1/specs/schema")]


def get_run_or_404(session: SessionDep, run_id: str, tenant: str) -> Run:
    """The tenant's run; another tenant's run is a 404 too (its existence is not disclosed)."""
    run = runs.get_run(session=session, run_id=run_id, tenant=tenant)
    if run is None:
        raise Problem(404, "Run not found", f"no run {run_id!r}")
    return run


def submit_document(
    document: dict[str, Any],
    *,
    session: SessionDep,
    service: ServiceDep,
    tenant: str,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
) -> Run:
    """Validate a spec against its data and the tenant's limits, store it and queue it (a sweep or
    k-fold parent: its first children); a repeated Idempotency-Key returns the original run."""

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
            retry_of=retry_of,
        )
    except submit.IdempotencyConflict as exc:
        raise Problem(409, "Idempotency-Key reused", str(exc)) from None
    except submit.QuotaExceeded as exc:
        raise Problem(429, "Quota exceeded", str(exc)) from None
    run = submission.run
    if submission.created:  # if the broker is down (or the parent cannot advance), the sweeper does it later
        queued = [run.id]
        if run.kind != RunKind.RUN:
            try:
                queued = parents.advance(
                    session=session, parent_id=run.id, optuna_url=service.settings.resolved_optuna_url
                )
            except Exception:
                log.exception("could not start parent run %s; the sweeper will", run.id)
                queued = []
            session.refresh(run)
        send(service.queue, service.settings, service.sessions, queued)
    return run


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    responses=errors(e409="the Idempotency-Key was used with another spec", e429="over the tenant's queued quota"),
    openapi_extra=SPEC_BODY,
)
def submit_run(
    document: SpecDocument,
    session: SessionDep,
    service: ServiceDep,
    tenant: TenantDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunPublic:
    """Validate the spec against its data and the tenant's limits, store it and queue it: 202 with
    the queued run. A repeated Idempotency-Key returns the original run. A sweep or k-fold spec
    is stored as a parent, and its first children are queued."""
    run = submit_document(document, session=session, service=service, tenant=tenant, idempotency_key=idempotency_key)
    return RunPublic.of(run)


class RetryRequest(BaseModel):
    patch: list[dict[str, Any]] = Field(
        default_factory=list, max_length=1000, description="JSON Patch ops (RFC 6902) on the run's spec"
    )


@router.post(
    "/{run_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    responses=errors(404, e409="the Idempotency-Key was used with another spec", e429="over the tenant's queued quota"),
)
def retry(
    run_id: str,
    session: SessionDep,
    service: ServiceDep,
    tenant: TenantDep,
    request: Annotated[RetryRequest | None, Body()] = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunPublic:
    """Submit a new run from this run's spec (a sweep's: as submitted) with ``patch`` applied, such
    as a verdict's suggestion, validated as any spec; 202 with the new run, whose ``retry_of``
    names this one. An op that does not apply is a 422 at ``/patch/<i>``; a patched spec the
    schema refuses is a 422 whose pointers are into the patched spec."""
    old = get_run_or_404(session, run_id, tenant)
    document = apply_patch(old.document or old.spec, request.patch if request else [])
    try:
        run = submit_document(
            document,
            session=session,
            service=service,
            tenant=tenant,
            idempotency_key=idempotency_key,
            retry_of=old.id,
        )
    except SpecInvalid as exc:
        problem = invalid_spec(exc)
        problem.detail += " (the run's spec with the patch applied)"
        raise problem from None
    return RunPublic.of(run)


@router.get("", response_model=RunList, responses=errors(e404="no such parent run for this tenant"))
def list_runs(
    session: SessionDep,
    tenant: TenantDep,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(RunStatus) + ")$")] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
    parent: Annotated[str | None, Query(max_length=40, description="list this parent's children")] = None,
) -> RunList:
    """Top-level runs (or ``parent``'s children), newest first; pass ``next_cursor`` back as
    ``cursor`` for the next page."""
    if parent is not None:
        get_run_or_404(session, parent, tenant)
    page = runs.list_runs(
        session=session, tenant=tenant, status=status, name=name, limit=limit, cursor=cursor, parent=parent
    )
    return RunList(items=[RunPublic.listed(r) for r in page], next_cursor=page[-1].id if len(page) == limit else None)


@router.get("/{run_id}", response_model=RunPublic, responses=errors(404))
def read_run(run_id: str, session: SessionDep, tenant: TenantDep) -> RunPublic:
    return RunPublic.of(get_run_or_404(session, run_id, tenant))


@router.get("/{run_id}/children", response_model=ChildList, responses=errors(404))
def read_children(
    run_id: str,
    session: SessionDep,
    tenant: TenantDep,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(RunStatus) + ")$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,9}$", description="the last trial number seen")] = None,
) -> ChildList:
    """A sweep's trials or a k-fold run's folds, in trial order: each with its parameters, status,
    summary and the best value of the sweep's metric it reached; the best child marked. Pass
    ``next_cursor`` back as ``cursor`` for the next page."""
    parent = get_run_or_404(session, run_id, tenant)
    after = int(cursor) if cursor is not None else None
    page = parents.list_children(session=session, parent_id=run_id, status=status, limit=limit, after_trial=after)
    metric = mode = best_id = None
    values: dict[str, float | None] = {}
    if parent.kind == RunKind.SWEEP:
        sweep = parents.sweep_of(parent)
        metric, mode = sweep.metric, sweep.mode
        values = {t.run: t.value for t in parents.outcomes(session, sweep, page)}
        best = parents.best_child(session, parent)
        best_id = best.run if best else None
    items = [
        ChildPublic(**RunPublic.of(child).model_dump(), metric=values.get(child.id), best=child.id == best_id)
        for child in page
    ]
    return ChildList(
        items=items,
        next_cursor=str(page[-1].trial) if len(page) == limit else None,
        metric=metric,
        mode=mode,
        best_id=best_id,
    )


@router.get("/{run_id}/metrics", response_model=RunMetrics, responses=errors(404))
def read_metrics(
    run_id: str,
    session: SessionDep,
    tenant: TenantDep,
    names: Annotated[
        list[Annotated[str, StringConstraints(pattern=METRIC_NAME)]] | None,
        Query(max_length=100, description="only these metric names"),
    ] = None,
    max_points: Annotated[
        int | None, Query(ge=2, le=100_000, description="thin each longer series to this many points (min/max)")
    ] = None,
) -> RunMetrics:
    """Every metric series of the run (per epoch and per step), read in one query. With
    ``max_points``, a longer series keeps its first and last points and each bucket's minimum
    and maximum, in order."""
    get_run_or_404(session, run_id, tenant)
    series: dict[str, Series] = {}
    for row in runs.metric_rows(session=session, run_ids=[run_id], names=names):
        points = series.setdefault(row.name, Series(step=[], epoch=[], value=[]))
        points.step.append(row.step)
        points.epoch.append(row.epoch)
        points.value.append(finite(row.value))
    if max_points is not None:
        for name, points in series.items():
            step, epoch, value = downsample(points.step, points.epoch, points.value, max_points)
            series[name] = Series(step=step, epoch=epoch, value=value)
    return RunMetrics(run_id=run_id, series=series)


@router.post("/{run_id}/cancel", response_model=RunPublic, responses=errors(404, e409="the run already finished"))
def cancel(run_id: str, session: SessionDep, tenant: TenantDep) -> RunPublic:
    """Stop a queued run at once or a running one within an epoch; 409 if it already finished.
    A parent is cancelled at once with all its children (running ones stop within an epoch)."""
    run = get_run_or_404(session, run_id, tenant)
    if RunStatus(run.status).terminal:
        raise Problem(409, "Run already finished", f"run {run_id} is {run.status}")
    runs.cancel_run(session=session, run_id=run_id)
    session.refresh(run)
    return RunPublic.of(run)


def _family(service: Service, run_id: str, after: int) -> tuple[list[Run], list[Row]]:
    """A poll's reads, in a session of its own: the run, its children, and its family's metric rows
    after ``after``."""
    with service.sessions() as session:
        family = [session.get(Run, run_id), *parents.children_of(session, run_id)]
        rows = runs.metric_rows(session=session, run_ids=[run.id for run in family], after_id=after)
    return family, rows


def _check_run(service: Service, run_id: str, tenant: str) -> None:
    with service.sessions() as session:
        get_run_or_404(session, run_id, tenant)


async def stream_slot(run_id: str, service: ServiceDep, tenant: TenantDep) -> AsyncIterator[None]:
    """404 for another tenant's run, 429 when the tenant has ``max_streams_per_tenant`` streams
    open; else one of its streams is held until this one ends, however it ends."""
    await service.streams.read(_check_run, service, run_id, tenant)
    with service.streams.slot(tenant, service.settings.max_streams_per_tenant):
        yield


@router.get(
    "/{run_id}/events",
    response_class=EventSourceResponse,
    dependencies=[Depends(stream_slot)],
    responses=errors(404, e429="the tenant has max_streams_per_tenant streams open"),
)
async def events(
    run_id: str,
    request: Request,
    service: ServiceDep,
    last_event_id: Annotated[int | None, Header()] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: ``status`` on every status change, ``metric`` for every point, in order,
    ``verdicts`` whenever what the run's series say changes; ends after the run finishes.
    Reconnect with Last-Event-ID to resume after a metric. On a parent the stream carries its
    children's events too: every event names its run (``run_id``), and the stream ends once the
    parent and every child have finished. A stream also ends after ``max_stream_s`` (reconnect);
    a tenant may have ``max_streams_per_tenant`` open (429 past them)."""
    settings = service.settings
    deadline = time.monotonic() + settings.max_stream_s
    seen: dict[str, str] = {}
    judged: dict[str, list | None] = {}
    after = last_event_id or 0
    while True:
        family, rows = await service.streams.read(_family, service, run_id, after)
        for row in rows:
            after = row.id
            point = {"run_id": row.run_id, "step": row.step, "epoch": row.epoch, "name": row.name}
            yield ServerSentEvent(event="metric", data={**point, "value": finite(row.value)}, id=str(row.id))
        for run in family:
            if run.verdicts and judged.get(run.id) != run.verdicts:
                judged[run.id] = run.verdicts
                yield ServerSentEvent(event="verdicts", data={"run_id": run.id, "verdicts": run.verdicts})
            if seen.get(run.id) != run.status:
                seen[run.id] = run.status
                status = {"run_id": run.id, "status": run.status, "epoch": run.epoch, "failure": run.failure}
                yield ServerSentEvent(event="status", data={**status, "trial": run.trial} if run.parent_id else status)
        if all(RunStatus(run.status).terminal for run in family) and not rows:
            return
        if time.monotonic() >= deadline:
            yield ServerSentEvent(comment="max_stream_s reached: reconnect with Last-Event-ID")
            return
        await asyncio.sleep(settings.sse_poll_seconds)
        if await request.is_disconnected():
            return
