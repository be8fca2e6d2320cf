"""Uploaded data sets: resolving an id to its stored file."""

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.store.models import DatasetFile


def dataset_resolver(sessions: sessionmaker[Session]) -> Callable[[str], Path]:
    """id → path of the stored upload; KeyError for an unknown id."""

    def resolve(dataset_id: str) -> Path:
        with sessions() as session:
            row = session.get(DatasetFile, dataset_id)
        if row is None:
            raise KeyError(dataset_id)
        return Path(row.uri)

    return resolve
