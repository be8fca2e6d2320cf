"""Uploaded data sets: storing an upload with what reading it found, reading its row, and
resolving an id to its stored file."""

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session, sessionmaker

from core.data.files import DataReport
from core.store.models import DatasetFile
from core.store.runs import new_id


def dataset_path(data_dir: Path, dataset_id: str, fmt: str) -> Path:
    """Where an upload is kept: ``DATA_DIR/datasets/<id>.<format>``."""
    return (data_dir / "datasets" / f"{dataset_id}.{fmt}").resolve()


def create_dataset(
    *, session: Session, data_dir: Path, tenant: str, filename: str, source: BinaryIO, report: DataReport
) -> DatasetFile:
    """Copy the upload (a binary stream, from its start, in blocks) and store its row; if either
    fails, the file goes too."""
    dataset_id = new_id("ds")
    path = dataset_path(data_dir, dataset_id, report.format)
    path.parent.mkdir(parents=True, exist_ok=True)
    source.seek(0)
    try:
        with path.open("wb") as stored:
            shutil.copyfileobj(source, stored)
    except OSError:
        path.unlink(missing_ok=True)
        raise
    row = DatasetFile(
        id=dataset_id,
        tenant=tenant,
        filename=filename,
        format=report.format,
        uri=str(path),
        size=path.stat().st_size,
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
    return row


def get_dataset(*, session: Session, dataset_id: str, tenant: str) -> DatasetFile | None:
    """The tenant's upload (another tenant's does not exist for this one)."""
    row = session.get(DatasetFile, dataset_id)
    return row if row is not None and row.tenant == tenant else None


def dataset_resolver(sessions: sessionmaker[Session], tenant: str) -> Callable[[str], Path]:
    """id → path of the tenant's stored upload; KeyError for an unknown id or another tenant's."""

    def resolve(dataset_id: str) -> Path:
        with sessions() as session:
            row = get_dataset(session=session, dataset_id=dataset_id, tenant=tenant)
        if row is None:
            raise KeyError(dataset_id)
        return Path(row.uri)

    return resolve
