"""The FastAPI application: routes mounted in one place, migrations applied at start."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api import openapi, predict, problems
from api.auth import Authenticate
from api.deps import Service
from api.limits import BodyLimit
from api.predict import PredictEndpoint
from api.routes import datasets, health, models, plots, runs, specs, ui
from api.serving import ModelCache
from api.sweeper import sweep_forever
from core.settings import Settings
from core.store.db import make_engine, migrate, schema_is_current, session_factory
from worker.celery_app import make_celery

log = logging.getLogger("trainyard.api")


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the request path, once the app has started.

    The modules and app state (~300k objects with torch) live as long as the process:
    `gc.freeze` takes them out of every later collection. Batched requests wait a few ms, long
    enough to outlive a default young generation (700 allocations); promoted, they triggered
    full collections that took a quarter of the event loop's CPU under load (measured with
    `perf`). A 50k young generation lets reference counting free them first."""
    gc.collect()  # garbage already made is freed, not frozen
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.resolved_database_url
        migrate(url)
        engine = make_engine(url)
        if not schema_is_current(engine):
            raise RuntimeError("the database schema is behind the code; run the migrations")
        if settings.auth == "off":
            log.warning("auth is off: single local user (TRAINYARD_AUTH=off)")
        models = ModelCache(
            settings.model_cache_mb * 2**20,
            settings.predict_max_batch,
            settings.predict_max_wait_ms / 1000,
            app.state.registry,
        )
        sessions, queue = session_factory(engine), make_celery(settings)
        app.state.service = Service(settings, sessions, queue, models)
        sweeper = asyncio.create_task(sweep_forever(queue, settings, sessions))
        tune_gc()
        yield
        sweeper.cancel()
        engine.dispose()

    app = FastAPI(
        title="Trainyard",
        version="0.1.0",
        lifespan=lifespan,
        description="Training as a service: JSON experiment specs → trained PyTorch models.",
        generate_unique_id_function=lambda route: route.name,  # operation ids: submit_run, read_run, ...
        # FastAPI's OpenTelemetry hooks look the providers up on every request: on only when asked
        telemetry=None if settings.otel else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.registry = CollectorRegistry()
    problems.install(app)
    app.add_middleware(PredictEndpoint)  # inside the body limit, ahead of the router
    app.add_middleware(BodyLimit, limit=settings.max_request_mb * 2**20, upload_limit=settings.max_upload_mb * 2**20)
    app.add_middleware(Authenticate)  # outermost: a /v1 request's key is checked before its body is read
    for module in (runs, models, specs, datasets, health, plots, ui):
        app.include_router(module.router)
    app.openapi = lambda: openapi.document(predict.document(FastAPI.openapi(app)))  # type: ignore[method-assign]
    return app
