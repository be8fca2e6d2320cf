"""The worker's Celery tasks; start with `trainyard worker` (or `celery -A worker.tasks worker`)."""

from functools import cache

from celery.signals import task_prerun, worker_ready, worker_shutdown

from core.settings import Settings
from worker.celery_app import TRAIN_TASK, make_celery
from worker.execution import WorkerContext, dispatch, execute_run, worker_context
from worker.liveness import WorkerBeat, advert_of, start_beat

settings = Settings()
advert = advert_of(settings)  # what this worker can train: the queues it consumes, its row in `workers`
app = make_celery(settings)
beats: list[WorkerBeat] = []


@cache
def context() -> WorkerContext:
    """This worker process's database, artifact store and identity (made on the first task)."""
    return worker_context(settings)


@app.task(name=TRAIN_TASK)
def train_run(run_id: str) -> None:
    """Adapter: a run id from the queue → ``execute_run`` (the domain function), then ``dispatch``
    (a deferred or given-back run is sent again)."""
    dispatch(context(), run_id, execute_run(run_id=run_id, context=context()))


@worker_ready.connect
def _start_beat(**_: object) -> None:
    """Once the worker consumes, it beats (``/healthz`` counts it alive) until it stops."""
    beats.append(start_beat(settings, advert))


@task_prerun.connect
def _apply_threads(**_: object) -> None:
    """Before each run (a safe point: no step in flight), the thread count the last beat counted."""
    for beat in beats:
        beat.share.apply()


@worker_shutdown.connect
def _stop_beat(**_: object) -> None:
    while beats:
        beats.pop().stop()
