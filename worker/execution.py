"""Runs a stored run: claims it, trains it with the core engine, writes metrics, status and
artifacts to the database and the artifact store. Testable without a queue."""

import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from sqlalchemy.orm import Session, sessionmaker

from core.artifacts import save_run
from core.data.files import data_access
from core.engine.checkpoint import Checkpointer, load_checkpoint
from core.engine.events import Callback, State
from core.engine.run import run_experiment, run_kfold
from core.settings import Settings
from core.spec.errors import SpecInvalid
from core.spec.validate import parse_spec
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
    checkpoint_every: int
    checkpoint_min_interval_s: float
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
        settings.checkpoint_every,
        settings.checkpoint_min_interval_s,
        settings.report_interval_s,
    )


class DatabaseReporter(Callback):
    """Stores metric points and progress, and checks for a cancel request, in one transaction at
    most every ``interval_s`` seconds (and at the end), so short epochs cost no round trip each."""

    def __init__(self, sessions: sessionmaker[Session], run_id: str, *, interval_s: float, prefix: str = "") -> None:
        self.sessions, self.run_id, self.interval_s = sessions, run_id, interval_s
        self.prefix = prefix  # "fold2/" in k-fold runs
        self.points: list[tuple[int, int, str, float]] = []
        self.last = time.monotonic()

    def on_metrics(self, state: State) -> None:
        self.points += [(p.step, p.epoch, self.prefix + p.name, p.value) for p in state.new_points]

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
            state.stop("cancelled by request", status="cancelled")


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


def execute_run(*, run_id: str, context: WorkerContext) -> str:
    """Train run ``run_id`` if this worker wins the claim, from its last checkpoint when an earlier
    attempt died. Returns the final status, 'skipped' (not queued any more), 'deferred' (its tenant
    already has its quota of running runs) or 'queued' (an infrastructure failure: try again)."""
    with context.sessions() as session:
        if not runs.claim_run(
            session=session,
            run_id=run_id,
            worker=context.name,
            lease_s=context.lease_s,
            max_running=context.max_running,
        ):
            run = session.get(Run, run_id)
            if run is not None and run.status == "queued":
                return "deferred"
            log.info("run %s is not queued any more; skipping", run_id)
            return "skipped"
        run = session.get(Run, run_id)
        spec_document, tenant = run.spec, run.tenant
    try:
        with (
            Heartbeat(context, run_id),
            data_access(data_root=context.data_root, resolve_dataset=dataset_resolver(context.sessions, tenant)),
        ):
            spec = parse_spec(spec_document)
            if spec.data.split.kfold:
                folds = run_kfold(
                    spec,
                    device=context.device,
                    callbacks_for=lambda i: [
                        DatabaseReporter(
                            context.sessions, run_id, interval_s=context.report_interval_s, prefix=f"fold{i}/"
                        )
                    ],
                )
                return _finish(context, run_id, folds.status, folds.summary(), folds.failure, None)
            checkpoints = context.artifact_dir / run_id / "checkpoint"
            resume_from = load_checkpoint(checkpoints)
            if resume_from is not None:
                log.info("run %s resumes after epoch %d", run_id, resume_from["epoch"])
            callbacks = [
                DatabaseReporter(context.sessions, run_id, interval_s=context.report_interval_s),
                Checkpointer(checkpoints, context.checkpoint_every, context.checkpoint_min_interval_s),
            ]
            result = run_experiment(spec, callbacks=callbacks, device=context.device, resume_from=resume_from)
    except SpecInvalid as exc:
        return _finish(context, run_id, "failed", None, f"invalid spec: {exc}", None)
    except Exception as exc:
        log.exception("run %s crashed", run_id)
        return _finish(context, run_id, "failed", None, f"{type(exc).__name__}: {exc}", None)
    if result.retryable:
        with context.sessions() as session:
            return runs.requeue(
                session=session,
                run_id=run_id,
                worker=context.name,
                reason=result.failure or "",
                max_attempts=context.max_attempts,
            )
    folder = context.artifact_dir / run_id
    save_run(folder, result)
    shutil.rmtree(checkpoints, ignore_errors=True)
    with context.sessions() as session:
        for path in sorted(folder.iterdir()):
            runs.add_artifact(session=session, run_id=run_id, kind=path.name, uri=str(path), size=path.stat().st_size)
    return _finish(context, run_id, result.status, result.summary(), result.failure, result.stop_reason)


def _finish(
    context: WorkerContext, run_id: str, status: str, summary: dict | None, failure: str | None, stop_reason: str | None
) -> str:
    with context.sessions() as session:
        runs.finish_run(
            session=session, run_id=run_id, status=status, summary=summary, failure=failure, stop_reason=stop_reason
        )
    log.info("run %s %s%s", run_id, status, f": {failure}" if failure else "")
    return status
