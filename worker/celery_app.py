"""The Celery application: JSON messages, late acks, one task at a time per worker process; and
sending runs to the workers."""

import logging

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from core.store import runs

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


def send(
    queue: Celery, settings: Settings, sessions: sessionmaker[Session], run_ids: list[str], countdown: float = 0
) -> None:
    """Send runs to the workers (after ``countdown`` seconds) and note when, so the sweeper sends no
    second copy; a broker that is down leaves them for the next sweep."""
    sent = []
    for run_id in run_ids:
        try:
            queue.send_task(TRAIN_TASK, args=[run_id], queue=settings.queue, countdown=countdown or None)
            sent.append(run_id)
        except Exception as exc:  # the broker is down: the runs stay queued in the database
            log.warning("could not queue run %s: %s", run_id, exc)
            break
    if sent:
        with sessions() as session:
            runs.mark_enqueued(session=session, run_ids=sent)
