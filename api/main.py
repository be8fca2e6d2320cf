"""The FastAPI application: routes mounted in one place, migrations applied at start."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.deps import Service
from api.routes import health, runs, specs
from core.settings import Settings
from core.store.db import make_engine, migrate, schema_is_current, session_factory
from worker.celery_app import make_celery

log = logging.getLogger("trainyard.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        migrate(url)
        engine = make_engine(url)
        if not schema_is_current(engine):
            raise RuntimeError("the database schema is behind the code; run the migrations")
        log.warning("auth is off: single local user (TRAINYARD_AUTH=off)")
        app.state.service = Service(settings, session_factory(engine), make_celery(settings))
        yield
        engine.dispose()

    app = FastAPI(
        title="Trainyard",
        version="0.1.0",
        lifespan=lifespan,
        description="Training as a service: JSON experiment specs → trained PyTorch models.",
    )
    problems.install(app)
    for module in (runs, specs, health):
        app.include_router(module.router)
    return app
