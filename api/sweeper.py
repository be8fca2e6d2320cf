"""The sweeper: finds runs whose worker died (lease expired) or whose queue message was lost, and
sends them to the workers again. Runs in the API process; several API replicas may run it at once."""

import asyncio
import logging

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from core.store import runs
from worker.celery_app import TRAIN_TASK

log = logging.getLogger("trainyard.sweeper")


def send(queue: Celery, settings: Settings, sessions: sessionmaker[Session], run_ids: list[str]) -> None:
    """Send runs to the workers and note when; a broker that is down leaves them for the next sweep."""
    sent = []
    for run_id in run_ids:
        try:
            queue.send_task(TRAIN_TASK, args=[run_id], queue=settings.queue)
            sent.append(run_id)
        except Exception as exc:  # the broker is down: the runs stay queued in the database
            log.warning("could not queue run %s: %s", run_id, exc)
            break
    if sent:
        with sessions() as session:
            runs.mark_enqueued(session=session, run_ids=sent)


def sweep_once(queue: Celery, settings: Settings, sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        lost = runs.sweep(session=session, max_attempts=settings.max_attempts, requeue_after_s=settings.requeue_after_s)
    if lost:
        log.info("sending %d run(s) again: %s", len(lost), ", ".join(lost[:10]))
        send(queue, settings, sessions, lost)
    return lost


async def sweep_forever(queue: Celery, settings: Settings, sessions: sessionmaker[Session]) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            await asyncio.to_thread(sweep_once, queue, settings, sessions)
        except Exception:
            log.exception("sweep failed; trying again next interval")
