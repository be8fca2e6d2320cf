"""The Celery application: JSON messages, late acks, one task at a time per worker process; and
sending runs to the workers. A run is sent to the queue of the devices it asks for
(``resources.devices``): the base queue (``TRAINYARD_QUEUE``) for one, ``<base>.devices-N`` for N;
a worker with D devices consumes the queues of 1 to D, so a run only reaches a worker that can
train it."""

import logging

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from core.store import runs, workers

log = logging.getLogger("trainyard.queue")

TRAIN_TASK = "trainyard.train_run"


def make_celery(settings: Settings) -> Celery:
    app = Celery("trainyard", broker=settings.resolved_broker_url)
    options = {}
    if settings.resolved_broker_url.startswith("filesystem"):
        folder = settings.broker_folder
        for sub in ("messages", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        options = {
            "data_folder_in": str(folder / "messages"),
            "data_folder_out": str(folder / "messages"),
            "processed_folder": str(folder / "processed"),
            "store_processed": False,
            "polling_interval": 0.05,
            "control_folder": str(folder / "control"),
        }
    if options:
        app.conf.broker_transport = "worker.queue_transport:Transport"  # kombu's, writing each message whole
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    return app


def queue_for(settings: Settings, devices: int) -> str:
    """The queue of runs that ask for ``devices`` devices."""
    return settings.queue if devices == 1 else f"{settings.queue}.devices-{devices}"


def worker_queues(settings: Settings, devices: int) -> list[str]:
    """The queues a worker with ``devices`` devices consumes: those of every run it can train."""
    return [queue_for(settings, count) for count in range(1, devices + 1)]


def send(
    queue: Celery, settings: Settings, sessions: sessionmaker[Session], run_ids: list[str], countdown: float = 0
) -> None:
    """Send runs to the workers (after ``countdown`` seconds), each to the queue of the devices it
    asks for, and note when, so the sweeper sends no second copy; a broker that is down leaves
    them for the next sweep."""
    if not run_ids:
        return
    with sessions() as session:
        needs = workers.devices_needed(session=session, run_ids=run_ids)
    sent = []
    for run_id in run_ids:
        to = queue_for(settings, needs.get(run_id, 1))
        try:
            queue.send_task(TRAIN_TASK, args=[run_id], queue=to, countdown=countdown or None)
            sent.append(run_id)
        except Exception as exc:  # the broker is down: the runs stay queued in the database
            log.warning("could not queue run %s: %s", run_id, exc)
            break
    if sent:
        with sessions() as session:
            runs.mark_enqueued(session=session, run_ids=sent)
