"""A succeeded run's model as a downloadable artifact (predictions: ``api.predict``)."""

import io
import zipfile

from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import Service, ServiceDep, TenantDep
from api.problems import Problem
from core.store.runs import get_run

router = APIRouter(prefix="/v1/runs", tags=["models"])


def succeeded_run(service: Service, run_id: str, tenant: str) -> None:
    """Raise 404 for an unknown run (to this tenant), 409 for one without a single stored model."""
    with service.sessions() as session:
        run = get_run(session=session, run_id=run_id, tenant=tenant)
        if run is None:
            raise Problem(404, "Run not found", f"no run {run_id!r}")
        if run.status != "succeeded":
            raise Problem(409, "Run has no model", f"run {run_id} is {run.status}; only succeeded runs predict")
        if not (service.settings.artifact_dir / run_id / "model.safetensors").is_file():
            raise Problem(409, "Run has no model", f"run {run_id} stored no single model (a k-fold run reports folds)")


@router.get("/{run_id}/artifacts/model", response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def model_artifact(run_id: str, service: ServiceDep, tenant: TenantDep) -> Response:
    """A zip of the weights (safetensors), resolved spec, preprocessing state and summary;
    `trainyard predict ARCHIVE INPUT.json` predicts from it offline."""
    succeeded_run(service, run_id, tenant)
    folder = service.settings.artifact_dir / run_id
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name != "metrics.jsonl":
                archive.write(path, path.name)
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{run_id}.zip"'},
    )
