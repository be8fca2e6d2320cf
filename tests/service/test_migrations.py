"""Migrations bring both databases to the models' schema: here, artifact kinds long enough for
any file of a run folder (a 100-fold run's fold_100/target_preprocessing.safetensors)."""

from pathlib import Path

import sqlalchemy as sa

from core.store.db import migrate
from core.store.models import Artifact
from tests.service.conftest import postgres_database


def kind_length(url: str) -> int:
    migrate(url)
    engine = sa.create_engine(url)
    try:
        column = next(c for c in sa.inspect(engine).get_columns("artifacts") if c["name"] == "kind")
    finally:
        engine.dispose()
    return column["type"].length


def test_artifact_kinds_fit_any_run_folder_path_on_sqlite(tmp_path: Path) -> None:
    assert kind_length(f"sqlite:///{tmp_path / 'trainyard.db'}") == Artifact.__table__.c.kind.type.length == 300


def test_artifact_kinds_fit_any_run_folder_path_on_postgresql() -> None:
    with postgres_database("trainyard_migrations") as url:
        assert kind_length(url) == 300
