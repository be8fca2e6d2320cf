"""Worker liveness: each worker process's row in ``workers``, renewed by its beat. The live rows are
the registry the service reads to route runs (how many devices the largest worker has), to refuse
at submit what no live worker can train, and to share a host's cores among its workers."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core.store.models import Run, Worker, utcnow

ALIVE_BEATS = 3  # a worker is alive while its last beat is at most this many beats old


@dataclass(frozen=True)
class Advert:
    """What a worker can train: how many devices it has, their kind (torch's: cpu, cuda) and
    whether they compute in bfloat16."""

    devices: int
    device_kind: str
    bf16: bool


def beat(*, session: Session, name: str, host: str, pid: int, advert: Advert) -> None:
    """Record that worker ``name`` is alive now, with what it can train (its row is made on the
    first beat)."""
    now = utcnow()
    worker = session.get(Worker, name)
    if worker is None:
        session.add(
            Worker(
                name=name,
                host=host,
                pid=pid,
                started_at=now,
                seen_at=now,
                devices=advert.devices,
                device_kind=advert.device_kind,
                bf16=advert.bf16,
            )
        )
    else:  # a restarted process may reuse a killed one's name (host:pid): what it has is its own
        worker.seen_at = now
        worker.devices, worker.device_kind, worker.bf16 = advert.devices, advert.device_kind, advert.bf16
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


def live(*, session: Session, within_s: float) -> list[Worker]:
    """The workers seen within the last ``within_s`` seconds, the most devices first."""
    cutoff = utcnow() - timedelta(seconds=within_s)
    query = select(Worker).where(Worker.seen_at >= cutoff).order_by(Worker.devices.desc(), Worker.name)
    return list(session.scalars(query))


def alive_on_host(*, session: Session, host: str, within_s: float) -> int:
    """How many workers of ``host`` were seen within the last ``within_s`` seconds."""
    cutoff = utcnow() - timedelta(seconds=within_s)
    query = select(func.count()).select_from(Worker).where(Worker.host == host, Worker.seen_at >= cutoff)
    return session.scalar(query) or 0


def devices_of(spec: dict[str, Any]) -> int:
    """The devices a stored spec asks for (``resources.devices``; 1 for a spec stored before it)."""
    return int((spec.get("resources") or {}).get("devices", 1))


def devices_needed(*, session: Session, run_ids: list[str]) -> dict[str, int]:
    """The devices each of these runs asks for, by id (runs that do not exist are left out)."""
    rows = session.execute(select(Run.id, Run.spec).where(Run.id.in_(run_ids)))
    return {run_id: devices_of(spec) for run_id, spec in rows}
