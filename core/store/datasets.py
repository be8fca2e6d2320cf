"""Uploaded data sets: resolving an id to its stored file."""

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.store.models import DatasetFile


def dataset_resolver(sessions: sessionmaker[Session], tenant: str) -> Callable[[str], Path]:
    """id → path of the tenant's stored upload; KeyError for an unknown id or another tenant's."""

    def resolve(dataset_id: str) -> Path:
        with sessions() as session:
            row = session.get(DatasetFile, dataset_id)
        if row is None or row.tenant != tenant:
            raise KeyError(dataset_id)
        return Path(row.uri)

    return resolve
