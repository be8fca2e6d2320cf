"""A run's plots as PNG: learning curves (a parent's: its children's validation curves overlaid)
and per-layer health. Once the run (and every child of a parent) has finished, a plot is rendered
on its first request and kept in the run's folder (``plots/``); while it runs, every request
renders it afresh."""

import secrets
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from api.deps import Service, ServiceDep, SessionDep, TenantDep
from api.openapi import errors
from api.routes.runs import get_run_or_404
from core import run_folder
from core.insight.plots import curves_png, health_png, params_label, sweep_curves_png
from core.insight.series import RunSeries, from_points
from core.status import RunStatus
from core.store import parents, runs
from core.store.models import Run, RunKind

router = APIRouter(prefix="/v1/runs", tags=["plots"])

CURVES = ["train_loss", "val_loss", "test_loss", "train_accuracy", "val_accuracy", "test_accuracy", "lr"]
HEALTH = ("act/", "grad_norm/", "update_ratio/")
PNG = {200: {"content": {"image/png": {}}}, **errors(404)}


@router.get("/{run_id}/plots/curves.png", response_class=Response, responses=PNG)
def curves(run_id: str, session: SessionDep, service: ServiceDep, tenant: TenantDep) -> Response:
    """Train/val loss and accuracy, and the learning rate, per epoch. For a sweep parent, every
    trial's curve of the sweep's metric overlaid and labelled by its parameters (a pruned trial's
    line stops early); for a k-fold parent, every fold's val_loss."""
    return _served(session, service, get_run_or_404(session, run_id, tenant), "curves.png", _curves)


@router.get("/{run_id}/plots/health.png", response_class=Response, responses=PNG)
def health(run_id: str, session: SessionDep, service: ServiceDep, tenant: TenantDep) -> Response:
    """Per layer: activation std and the share of dead and saturated units; per weight: gradient
    norm and update/weight ratio (log scales, the ratio against its 1e-3 guide)."""
    return _served(session, service, get_run_or_404(session, run_id, tenant), "health.png", _health)


def _served(
    session: Session, service: Service, run: Run, name: str, render: Callable[[Session, Run], bytes]
) -> Response:
    family = [run, *parents.children_of(session, run.id)] if run.kind != RunKind.RUN else [run]
    if not all(RunStatus(member.status).terminal for member in family):
        return Response(render(session, run), media_type="image/png", headers={"Cache-Control": "no-store"})
    path = service.settings.artifact_dir / run.id / run_folder.PLOTS / name
    if not path.is_file():
        png = render(session, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{name}.{secrets.token_hex(4)}.partial")  # two first requests: one wins
        partial.write_bytes(png)
        partial.replace(path)
    return FileResponse(path, media_type="image/png")


def _series(session: Session, run_ids: list[str], names: list[str] | None) -> dict[str, RunSeries]:
    """Each run's series (of ``names``, or all), read in one query."""
    points: dict[str, list[tuple[int, int, str, float]]] = {run_id: [] for run_id in run_ids}
    for row in runs.metric_rows(session=session, run_ids=run_ids, names=names):
        points[row.run_id].append((row.step, row.epoch, row.name, row.value))
    return {run_id: from_points(rows) for run_id, rows in points.items()}


def _curves(session: Session, run: Run) -> bytes:
    if run.kind == RunKind.RUN:
        return curves_png(_series(session, [run.id], CURVES)[run.id], run.name)
    children = parents.children_of(session, run.id)
    metric = parents.sweep_of(run).metric if run.kind == RunKind.SWEEP else "val_loss"
    by_run = _series(session, [child.id for child in children], [metric])
    overlay = [(_label(child), by_run[child.id]) for child in children]
    return sweep_curves_png(
        overlay, metric, f"{run.name}: {metric} per {'trial' if run.kind == RunKind.SWEEP else 'fold'}"
    )


def _health(session: Session, run: Run) -> bytes:
    if run.kind != RunKind.RUN:
        return health_png({}, f"{run.name}: a {run.kind} parent; each child has its own health.png")
    series = _series(session, [run.id], None)[run.id]
    return health_png({name: points for name, points in series.items() if name.startswith(HEALTH)}, run.name)


def _label(child: Run) -> str:
    label = params_label(child.params or {}) or f"trial {child.trial}"
    status = RunStatus(child.status)
    return label if status in (RunStatus.SUCCEEDED, RunStatus.RUNNING) else f"{label} ({status})"
