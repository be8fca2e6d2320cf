"""Worker liveness: each worker process's row in ``workers``, renewed by its beat."""

from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.store.models import Worker, utcnow


def beat(*, session: Session, name: str, host: str, pid: int) -> None:
    """Record that worker ``name`` is alive now (its row is made on the first beat)."""
    now = utcnow()
    worker = session.get(Worker, name)
    if worker is None:
        session.add(Worker(name=name, host=host, pid=pid, started_at=now, seen_at=now))
    else:
        worker.seen_at = now
    session.commit()


def leave(*, session: Session, name: str) -> None:
    """A worker that stops cleanly removes its row."""
    session.execute(delete(Worker).where(Worker.name == name))
    session.commit()


def forget_stale(*, session: Session, older_than_s: float) -> int:
    """Remove the rows of workers not seen for ``older_than_s`` seconds (killed ones); how many."""
    result = session.execute(delete(Worker).where(Worker.seen_at < utcnow() - timedelta(seconds=older_than_s)))
    session.commit()
    return result.rowcount


def alive(*, session: Session, within_s: float) -> int:
    """How many workers were seen within the last ``within_s`` seconds."""
    cutoff = utcnow() - timedelta(seconds=within_s)
    return session.scalar(select(func.count()).select_from(Worker).where(Worker.seen_at >= cutoff)) or 0
