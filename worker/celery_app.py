"""The Celery application: JSON messages, late acks, one task at a time per worker process."""

from celery import Celery

from core.settings import Settings

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
