"""Runs a stored run: claims it, trains it with the core engine, writes metrics, status and
artifacts to the database and the artifact store. Testable without a queue."""

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy.orm import Session, sessionmaker

from core import run_folder
from core.data.files import data_access
from core.engine.checkpoint import CheckpointPolicy, remove_checkpoint
from core.engine.events import Callback, State
from core.engine.plan import plan_experiment
from core.engine.run import train_run
from core.errors import SpecInvalid
from core.settings import Settings
from core.spec.schema import parse_spec
from core.status import RunStatus
from core.store import runs
from core.store.datasets import dataset_resolver
from core.store.db import make_engine, migrate, session_factory
from core.store.models import Run

log = logging.getLogger("trainyard.worker")


@dataclass(frozen=True)
class WorkerContext:
    sessions: sessionmaker[Session]
    artifact_dir: Path
    device: str | None
    name: str
    data_root: Path | None
    lease_s: float
    max_running: int
    max_attempts: int
    checkpoints: CheckpointPolicy
    report_interval_s: float


def worker_context(settings: Settings) -> WorkerContext:
    migrate(settings.resolved_database_url)
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    return WorkerContext(
        session_factory(make_engine(settings.resolved_database_url)),
        settings.artifact_dir,
        settings.device,
        f"{socket.gethostname()}:{os.getpid()}",
        settings.data_root,
        settings.lease_seconds,
        settings.quota_running,
        settings.max_attempts,
        CheckpointPolicy(settings.checkpoint_every, settings.checkpoint_min_interval_s),
        settings.report_interval_s,
    )


class DatabaseReporter(Callback):
    """Stores metric points and progress, and checks for a cancel request, in one transaction at
    most every ``interval_s`` seconds (and at the end), so short epochs cost no round trip each.
    A k-fold run's points are named per fold (``fold2/val_loss``)."""

    def __init__(self, sessions: sessionmaker[Session], run_id: str, *, interval_s: float) -> None:
        self.sessions, self.run_id, self.interval_s = sessions, run_id, interval_s
        self.points: list[tuple[int, int, str, float]] = []
        self.last = time.monotonic()

    def on_metrics(self, state: State) -> None:
        prefix = f"fold{state.fold}/" if state.fold is not None else ""
        self.points += [(p.step, p.epoch, prefix + p.name, p.value) for p in state.new_points]

    def on_epoch_end(self, state: State) -> None:
        if time.monotonic() - self.last >= self.interval_s:
            self.report(state)

    def on_fit_end(self, state: State) -> None:
        self.report(state)

    def report(self, state: State) -> None:
        with self.sessions() as session:
            cancel = runs.report_progress(session=session, run_id=self.run_id, epoch=state.epoch, points=self.points)
        self.points, self.last = [], time.monotonic()
        if cancel:
            state.stop("cancelled by request", status=RunStatus.CANCELLED)


class Heartbeat:
    """Renews the run's lease from a background thread while it trains."""

    def __init__(self, context: WorkerContext, run_id: str) -> None:
        self.context, self.run_id = context, run_id
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.wait(self.context.lease_s / 3):
            with self.context.sessions() as session:
                runs.renew_lease(
                    session=session, run_id=self.run_id, worker=self.context.name, lease_s=self.context.lease_s
                )

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def execute_run(*, run_id: str, context: WorkerContext) -> runs.ClaimOutcome | RunStatus:
    """Train run ``run_id`` if this worker wins the claim, from its last checkpoint when an earlier
    attempt died. Returns the final status, or why it did not train: SKIPPED (not queued any
    more), DEFERRED (its tenant already has its quota of running runs) or QUEUED again (an
    infrastructure failure: try again)."""
    with context.sessions() as session:
        claim = runs.claim_run(
            session=session,
            run_id=run_id,
            worker=context.name,
            lease_s=context.lease_s,
            max_running=context.max_running,
        )
        if claim != runs.ClaimOutcome.CLAIMED:
            if claim == runs.ClaimOutcome.SKIPPED:
                log.info("run %s is not queued any more; skipping", run_id)
            return claim
        run = session.get(Run, run_id)
        spec_document, tenant = run.spec, run.tenant
    folder = context.artifact_dir / run_id
    try:
        with (
            Heartbeat(context, run_id),
            data_access(data_root=context.data_root, resolve_dataset=dataset_resolver(context.sessions, tenant)),
        ):
            plan = plan_experiment(parse_spec(spec_document))
            reporter = DatabaseReporter(context.sessions, run_id, interval_s=context.report_interval_s)
            result = train_run(
                plan,
                folder=folder,
                callbacks=[reporter],
                device=context.device,
                resume=True,  # a later attempt continues from the checkpoint of the one that died
                checkpoints=context.checkpoints,
            )
    except SpecInvalid as exc:
        return _finish(context, run_id, RunStatus.FAILED, None, f"invalid spec: {exc}", None)
    except Exception as exc:
        log.exception("run %s crashed", run_id)
        return _finish(context, run_id, RunStatus.FAILED, None, f"{type(exc).__name__}: {exc}", None)
    if result.retryable:
        with context.sessions() as session:
            return runs.requeue(
                session=session,
                run_id=run_id,
                worker=context.name,
                reason=result.failure or "",
                max_attempts=context.max_attempts,
            )
    result.save(folder)
    with context.sessions() as session:
        for path in run_folder.stored_files(folder):
            kind = str(path.relative_to(folder))
            runs.add_artifact(session=session, run_id=run_id, kind=kind, uri=str(path), size=path.stat().st_size)
    summary = result.summary()
    status = _finish(context, run_id, result.status, summary, result.failure, summary.get("stop_reason"))
    remove_checkpoint(run_folder.checkpoint_folder(folder))
    return status


def _finish(
    context: WorkerContext,
    run_id: str,
    status: RunStatus,
    summary: dict | None,
    failure: str | None,
    stop_reason: str | None,
) -> RunStatus:
    with context.sessions() as session:
        runs.finish_run(
            session=session, run_id=run_id, status=status, summary=summary, failure=failure, stop_reason=stop_reason
        )
    log.info("run %s %s%s", run_id, status, f": {failure}" if failure else "")
    return status
