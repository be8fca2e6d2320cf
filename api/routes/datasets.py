"""Datasets: upload a CSV / NPZ once, train on it by id (`{"type": "dataset", "id": "ds_..."}`)."""

import os
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status
from pydantic import BaseModel

from api.deps import ServiceDep, SessionDep, TenantDep
from api.openapi import errors
from api.problems import Problem, invalid_upload
from core.data.files import ReadLimits, inspect_table
from core.errors import SpecInvalid
from core.store.datasets import create_dataset, get_dataset
from core.store.models import DatasetFile

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


class DatasetPublic(BaseModel):
    id: str
    filename: str
    format: str
    size: int
    rows: int
    columns: list[str]
    bad_lines: list[dict[str, int]]
    report: dict[str, Any]

    @classmethod
    def of(cls, row: DatasetFile) -> "DatasetPublic":
        return cls(
            id=row.id,
            filename=row.filename,
            format=row.format,
            size=row.size,
            rows=row.rows,
            columns=row.columns["names"],
            bad_lines=row.report.get("bad_lines", []),
            report=row.report,
        )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses=errors(e422="the file cannot be read as a data set, or is past the limits (errors at /file)"),
)
def upload_dataset(
    file: Annotated[UploadFile, File(description="a CSV (header row) or an NPZ archive")],
    session: SessionDep,
    service: ServiceDep,
    tenant: TenantDep,
    format: Annotated[str | None, Form(pattern="^(csv|npz)$")] = None,
) -> DatasetPublic:
    """Store an upload and report what reading it found (rows, columns, malformed lines);
    a file that cannot be read, or one past the limits on data sets, is a 422 and nothing is stored.
    The upload is read as a stream from its spooled file, never whole into memory."""
    settings = service.settings
    upload = file.file
    if upload.seek(0, os.SEEK_END) > settings.max_upload_mb * 2**20:
        raise Problem(413, "Upload too large", f"the limit is {settings.max_upload_mb} MiB")
    try:
        report = inspect_table(upload, format=format, name=file.filename, at="/file", limits=ReadLimits.of(settings))
    except SpecInvalid as exc:
        raise invalid_upload(exc) from None
    row = create_dataset(
        session=session,
        data_dir=settings.data_dir,
        tenant=tenant,
        filename=file.filename or "upload",
        source=upload,
        report=report,
    )
    return DatasetPublic.of(row)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=errors(e404="no such dataset for this tenant"))
def read_dataset(dataset_id: str, session: SessionDep, tenant: TenantDep) -> DatasetPublic:
    row = get_dataset(session=session, dataset_id=dataset_id, tenant=tenant)
    if row is None:
        raise Problem(404, "Dataset not found", f"no dataset {dataset_id!r}")
    return DatasetPublic.of(row)
