"""The sweeper: finds runs whose worker died (lease expired) or whose queue message was lost, and
sends them to the workers again, and moves every unfinished parent on (a sweep whose last caller
died asks for its next trials here). Runs in the API process; several API replicas may run it at
once."""

import asyncio
import logging

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from core.store import parents, runs
from worker.celery_app import send

log = logging.getLogger("trainyard.sweeper")


def advance_parents(queue: Celery, settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Advance every unfinished parent and send the children it creates."""
    with sessions() as session:
        unfinished = parents.unfinished_parents(session=session)
    for parent_id in unfinished:
        try:
            with sessions() as session:
                created = parents.advance(session=session, parent_id=parent_id, optuna_url=settings.resolved_optuna_url)
        except Exception:
            log.exception("could not advance parent run %s; trying again next sweep", parent_id)
            continue
        send(queue, settings, sessions, created)


def sweep_once(queue: Celery, settings: Settings, sessions: sessionmaker[Session]) -> list[str]:
    with sessions() as session:
        lost = runs.sweep(session=session, max_attempts=settings.max_attempts, requeue_after_s=settings.requeue_after_s)
    if lost:
        log.info("sending %d run(s) again: %s", len(lost), ", ".join(lost[:10]))
        send(queue, settings, sessions, lost)
    advance_parents(queue, settings, sessions)
    return lost


async def sweep_forever(queue: Celery, settings: Settings, sessions: sessionmaker[Session]) -> None:
    while True:
        await asyncio.sleep(settings.sweep_interval_s)
        try:
            await asyncio.to_thread(sweep_once, queue, settings, sessions)
        except Exception:
            log.exception("sweep failed; trying again next interval")
