"""Datasets: upload a CSV / NPZ once, train on it by id (`{"type": "dataset", "id": "ds_..."}`)."""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile, status
from pydantic import BaseModel

from api.deps import ServiceDep, SessionDep, TenantDep
from api.problems import Problem
from core.data.files import inspect_table
from core.store.models import DatasetFile
from core.store.runs import new_id

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


def dataset_path(data_dir: Path, dataset_id: str, fmt: str) -> Path:
    return (data_dir / "datasets" / f"{dataset_id}.{fmt}").resolve()


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
def upload_dataset(
    file: Annotated[UploadFile, File(description="a CSV (header row) or an NPZ archive")],
    session: SessionDep,
    service: ServiceDep,
    tenant: TenantDep,
    format: Annotated[str | None, Form(pattern="^(csv|npz)$")] = None,
) -> DatasetPublic:
    """Store an upload and report what reading it found (rows, columns, malformed lines);
    a file that cannot be read is a 422 and nothing is stored."""
    limit = service.settings.max_upload_mb * 2**20
    raw = file.file.read(limit + 1)
    if len(raw) > limit:
        raise Problem(413, "Upload too large", f"the limit is {service.settings.max_upload_mb} MiB")
    report = inspect_table(raw, format=format, name=file.filename, at="/file")  # SpecInvalid → 422
    dataset_id = new_id("ds")
    path = dataset_path(service.settings.data_dir, dataset_id, report.format)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    row = DatasetFile(
        id=dataset_id,
        tenant=tenant,
        filename=file.filename or "upload",
        format=report.format,
        uri=str(path),
        size=len(raw),
        rows=report.rows,
        columns={"names": report.columns},
        report=report.as_dict(),
    )
    session.add(row)
    try:
        session.commit()
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return DatasetPublic.of(row)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def read_dataset(dataset_id: str, session: SessionDep, tenant: TenantDep) -> DatasetPublic:
    row = session.get(DatasetFile, dataset_id)
    if row is None or row.tenant != tenant:
        raise Problem(404, "Dataset not found", f"no dataset {dataset_id!r}")
    return DatasetPublic.of(row)
