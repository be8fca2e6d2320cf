"""The worker's Celery tasks; start with `trainyard worker` (or `celery -A worker.tasks worker`)."""

from functools import cache

from core.settings import Settings
from core.status import RunStatus
from core.store.runs import ClaimOutcome
from worker.celery_app import TRAIN_TASK, make_celery
from worker.execution import WorkerContext, execute_run, worker_context

settings = Settings()
app = make_celery(settings)
DEFER_SECONDS = 5


@cache
def context() -> WorkerContext:
    """This worker process's database, artifact store and identity (made on the first task)."""
    return worker_context(settings)


@app.task(name=TRAIN_TASK)
def train_run(run_id: str) -> None:
    """Adapter: a run id from the queue → ``execute_run`` (the domain function). A run deferred by
    its tenant's quota of running runs is sent again a little later."""
    outcome = execute_run(run_id=run_id, context=context())
    if outcome == ClaimOutcome.DEFERRED:
        train_run.apply_async(args=[run_id], countdown=DEFER_SECONDS, queue=settings.queue)
    elif outcome == RunStatus.QUEUED:  # an infrastructure failure: another attempt, maybe on another worker
        train_run.apply_async(args=[run_id], queue=settings.queue)
