"""A succeeded run's model: predictions over HTTP and the downloadable artifact."""

import asyncio
import io
import zipfile
from typing import Annotated, Any

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api.deps import ServiceDep, TenantDep
from api.problems import Problem
from api.serving import ServedModel
from core.store.runs import get_run

router = APIRouter(prefix="/v1/runs", tags=["models"])


class PredictRequest(BaseModel):
    inputs: list[Any] = Field(min_length=1, max_length=10_000, description="samples shaped like the training inputs")


class PredictResponse(BaseModel):
    predictions: list[Any]
    probabilities: list[list[float]] | None = None


def _succeeded_run(service: ServiceDep, run_id: str, tenant: str) -> None:
    with service.sessions() as session:
        run = get_run(session=session, run_id=run_id, tenant=tenant)
        if run is None:
            raise Problem(404, "Run not found", f"no run {run_id!r}")
        if run.status != "succeeded":
            raise Problem(409, "Run has no model", f"run {run_id} is {run.status}; only succeeded runs predict")
        if not (service.settings.artifact_dir / run_id / "model.safetensors").is_file():
            raise Problem(409, "Run has no model", f"run {run_id} stored no single model (a k-fold run reports folds)")


async def _served(service: ServiceDep, run_id: str, tenant: str) -> ServedModel:
    served = service.models.cached(run_id)  # a cached model's run already succeeded: no query
    if served is None or served.tenant != tenant:
        await asyncio.to_thread(_succeeded_run, service, run_id, tenant)
        served = await service.models.get(run_id, service.settings.artifact_dir / run_id, tenant)
    return served


@router.post("/{run_id}/predict", response_model=PredictResponse, response_model_exclude_none=True)
async def predict(
    run_id: str, request: Annotated[PredictRequest, Body()], service: ServiceDep, tenant: TenantDep
) -> JSONResponse:
    """Predictions for new inputs with the run's stored preprocessing; concurrent requests are
    batched into one forward pass. Class labels and probabilities for classifiers."""
    served = await _served(service, run_id, tenant)
    result = await served.batcher.predict(served.trained.inputs_tensor(request.inputs))
    return JSONResponse(result)  # built by the model itself: no second validation on the hot path


@router.get("/{run_id}/artifacts/model", response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def model_artifact(run_id: str, service: ServiceDep, tenant: TenantDep) -> Response:
    """A zip of the weights (safetensors), resolved spec, preprocessing state and summary;
    `trainyard predict ARCHIVE INPUT.json` predicts from it offline."""
    _succeeded_run(service, run_id, tenant)
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
