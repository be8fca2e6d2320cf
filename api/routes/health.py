"""Liveness (database and queue reachable, a worker alive) and Prometheus metrics."""

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select, text

from api.deps import ServiceDep
from api.openapi import errors
from api.problems import PROBLEM_JSON, Problem
from core.store import workers
from core.store.models import Run

router = APIRouter(tags=["health"])
log = logging.getLogger("trainyard.api")


BEATS = 3  # a worker is alive while its last beat is at most this many beats old


@router.get(
    "/healthz",
    response_model=dict[str, Any],
    responses=errors(e503="a check failed: the body names each check's state"),
)
def healthz(service: ServiceDep) -> dict[str, Any] | JSONResponse:
    """200 when the database answers, the broker accepts a connection and at least one worker is
    alive (it beat within three ``TRAINYARD_WORKER_BEAT_S``); 503 otherwise. Either way the body
    has each check (``ok``, ``unavailable`` or ``none alive``; why one failed is logged, never
    answered) and ``workers``, how many are alive."""
    checks: dict[str, str] = {}
    alive = 0
    try:
        with service.sessions() as session:
            session.execute(text("SELECT 1"))
            alive = workers.alive(session=session, within_s=BEATS * service.settings.worker_beat_s)
        checks["database"] = "ok"
    except Exception as exc:
        log.warning("/healthz: the database is unavailable: %s", exc)
        checks["database"] = "unavailable"
    try:
        with service.queue.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        checks["queue"] = "ok"
    except Exception as exc:
        log.warning("/healthz: the queue is unavailable: %s", exc)
        checks["queue"] = "unavailable"
    checks["worker"] = "ok" if alive else "none alive"
    if any(v != "ok" for v in checks.values()):
        detail = "; ".join(f"{k}: {v}" for k, v in checks.items())
        body = {"type": "about:blank", "title": "Unhealthy", "status": 503, "detail": detail, **checks}
        return JSONResponse({**body, "workers": alive}, status_code=503, media_type=PROBLEM_JSON)
    return {"status": "ok", **checks, "workers": alive}


@router.get(
    "/metrics",
    response_class=Response,
    responses=errors(
        e401="no Authorization: Bearer <TRAINYARD_METRICS_TOKEN> (auth on)", e404="no metrics token is set (auth on)"
    ),
)
def prometheus_metrics(
    service: ServiceDep, request: Request, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text format: runs by status, prediction forward passes, model loads. They count
    every tenant's, so with ``TRAINYARD_AUTH=api_key`` a scraper sends ``Authorization: Bearer
    <TRAINYARD_METRICS_TOKEN>`` (401 otherwise; 404 while no token is set)."""
    settings = service.settings
    if settings.auth != "off":
        if settings.metrics_token is None:
            raise Problem(404, "Metrics are off", "set TRAINYARD_METRICS_TOKEN to let a scraper read /metrics")
        expected = f"Bearer {settings.metrics_token}"
        if not hmac.compare_digest((authorization or "").encode(), expected.encode()):
            raise Problem(401, "Unauthorized", "/metrics needs Authorization: Bearer <TRAINYARD_METRICS_TOKEN>")
    registry = CollectorRegistry()
    gauge = Gauge("trainyard_runs", "runs by status", ["status"], registry=registry)
    with service.sessions() as session:
        for status, count in session.execute(select(Run.status, func.count()).group_by(Run.status)):
            gauge.labels(status=status).set(count)
    text = generate_latest(registry) + generate_latest(request.app.state.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
