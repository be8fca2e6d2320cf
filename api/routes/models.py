"""A succeeded run's model as downloadable artifacts: an archive, and ONNX (predictions: ``api.predict``)."""

import logging
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import Service, ServiceDep, TenantDep
from api.openapi import errors
from api.problems import Problem
from core import run_folder
from core.artifacts import load_trained
from core.export import ExportFailed, ExportUnsupported, export_onnx
from core.status import RunStatus
from core.store.runs import get_run

log = logging.getLogger("trainyard.api")
router = APIRouter(prefix="/v1/runs", tags=["models"])
NO_MODEL = "the run has no model: not succeeded, or k-fold"


def succeeded_run(service: Service, run_id: str, tenant: str) -> None:
    """Raise 404 for an unknown run (to this tenant), 409 for one without a single stored model."""
    with service.sessions() as session:
        run = get_run(session=session, run_id=run_id, tenant=tenant)
        if run is None:
            raise Problem(404, "Run not found", f"no run {run_id!r}")
        if run.status != RunStatus.SUCCEEDED:
            raise Problem(409, "Run has no model", f"run {run_id} is {run.status}; only succeeded runs predict")
        if not run_folder.has_model(service.settings.artifact_dir / run_id):
            raise Problem(409, "Run has no model", f"run {run_id} stored no single model (a k-fold run reports folds)")


@router.get(
    "/{run_id}/artifacts/model",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}}}, **errors(404, e409=NO_MODEL)},
)
def model_artifact(run_id: str, service: ServiceDep, tenant: TenantDep) -> FileResponse:
    """A zip of the weights (safetensors), resolved spec, preprocessing state and summary;
    `trainyard predict ARCHIVE INPUT.json` predicts from it offline. Built on disk on the first
    request (never in memory) and kept with the run."""
    succeeded_run(service, run_id, tenant)
    folder = service.settings.artifact_dir / run_id
    path = folder / run_folder.ARCHIVE_FILE
    if not path.is_file():
        with (
            tempfile.NamedTemporaryFile(dir=folder, suffix=".partial", delete=False) as partial,
            zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive,
        ):
            for name in run_folder.ARCHIVE:
                if (folder / name).is_file():
                    archive.write(folder / name, name)
        Path(partial.name).replace(path)  # two first requests: each its own file, one wins
    return FileResponse(path, media_type="application/zip", filename=f"{run_id}.zip")


@router.get(
    "/{run_id}/artifacts/onnx",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        **errors(404, e409=NO_MODEL + ", or its model cannot be exported to ONNX", e500="the exporter failed"),
    },
)
def onnx_artifact(run_id: str, service: ServiceDep, tenant: TenantDep) -> FileResponse:
    """The model as ONNX, exported on the first request and kept with the run. Input `inputs`:
    float32 raw samples [N, *input_shape], the stored preprocessing inside the graph. Output
    `probabilities` [N, classes] (in the order of the archive's `meta.json`) or `values`.
    409 when the model cannot be exported (a text model's tokenizer); 500 when the exporter itself
    fails (the next request tries again). One export runs at a time per API process."""
    succeeded_run(service, run_id, tenant)
    path = service.settings.artifact_dir / run_id / run_folder.ONNX
    if not path.is_file():
        try:
            export_onnx(load_trained(path.parent), path)
        except ExportUnsupported as exc:
            raise Problem(409, "Model not exportable to ONNX", str(exc)) from None
        except ExportFailed as exc:
            log.error("run %s: %s", run_id, exc)
            raise Problem(500, "ONNX export failed", f"{exc}; the next request tries again") from None
    return FileResponse(path, media_type="application/octet-stream", filename=f"{run_id}.onnx")
