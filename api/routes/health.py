"""Liveness (database and queue reachable) and Prometheus metrics."""

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select, text

from api.deps import ServiceDep
from api.problems import Problem
from core.store.models import Run

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(service: ServiceDep) -> dict[str, Any]:
    """200 when the database answers and the broker accepts a connection; 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        with service.sessions() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc}"
    try:
        with service.queue.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        checks["queue"] = "ok"
    except Exception as exc:
        checks["queue"] = f"error: {exc}"
    if any(v != "ok" for v in checks.values()):
        raise Problem(503, "Unhealthy", "; ".join(f"{k}: {v}" for k, v in checks.items()))
    return {"status": "ok", **checks}


@router.get("/metrics", response_class=Response)
def prometheus_metrics(service: ServiceDep, request: Request) -> Response:
    """Prometheus text format: runs by status, prediction forward passes, model loads."""
    registry = CollectorRegistry()
    gauge = Gauge("trainyard_runs", "runs by status", ["status"], registry=registry)
    with service.sessions() as session:
        for status, count in session.execute(select(Run.status, func.count()).group_by(Run.status)):
            gauge.labels(status=status).set(count)
    text = generate_latest(registry) + generate_latest(request.app.state.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
