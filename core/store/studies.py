"""Where sweeps' Optuna studies live. Optuna's RDB storage brings its own tables (``studies``,
``trials``, ``trial_params``, ... and its own ``alembic_version``), kept apart from Trainyard's: a
separate SQLite file on the embedded default, schema ``optuna`` of the PostgreSQL database in
production (or any URL in TRAINYARD_OPTUNA_URL)."""

from functools import cache

import optuna
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SCHEMA = "optuna"


@cache
def study_storage(url: str) -> optuna.storages.RDBStorage:
    """The process's Optuna storage at ``url``, its tables created on first use. On PostgreSQL the
    tables go to schema ``optuna`` (created if missing) through the connection's search_path."""
    kwargs: dict = {"pool_pre_ping": True}
    if make_url(url).get_backend_name() == "postgresql":
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
        finally:
            engine.dispose()
        kwargs["connect_args"] = {"options": f"-c search_path={SCHEMA}"}
    else:
        kwargs["connect_args"] = {"timeout": 30}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
