"""Runs a stored run: claims it, trains it with the core engine, writes metrics, status and
artifacts to the database and the artifact store. Testable without a queue."""

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import run_folder
from core.data.files import ReadLimits, data_access
from core.engine.checkpoint import CheckpointPolicy, remove_checkpoint
from core.engine.distributed import RankLost
from core.engine.events import Callback, State
from core.engine.plan import plan_experiment
from core.engine.run import train_run
from core.errors import SpecInvalid
from core.insight.series import from_points
from core.insight.verdicts import assess
from core.settings import Settings
from core.spec.schema import ExperimentSpec, parse_spec
from core.status import RunStatus
from core.store import parents, runs
from core.store.datasets import dataset_resolver
from core.store.db import make_engine, migrate, session_factory
from core.store.models import Run, RunKind
from core.store.studies import study_storage
from core.sweep.search import TrialReporter, open_study
from worker.celery_app import make_celery, send

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
    optuna_url: str
    read_limits: ReadLimits  # the caps on an uploaded data set's rows, columns and decoded size
    max_runtime_s: float | None  # the service's cap on any run's training time
    send: Callable[..., None]  # (run ids, countdown=seconds): runs to the workers' queue, noted as sent


def worker_context(settings: Settings) -> WorkerContext:
    """This worker process's database, artifact store, identity and sending (its torch threads are its
    ``ThreadShare``'s, in ``worker.liveness``)."""
    migrate(settings.resolved_database_url)
    sessions = session_factory(make_engine(settings.resolved_database_url))
    queue = make_celery(settings)
    return WorkerContext(
        sessions,
        settings.artifact_dir,
        settings.device,
        f"{socket.gethostname()}:{os.getpid()}",
        settings.data_root,
        settings.lease_seconds,
        settings.quota_running,
        settings.max_attempts,
        CheckpointPolicy(settings.checkpoint_every, settings.checkpoint_min_interval_s),
        settings.report_interval_s,
        settings.resolved_optuna_url,
        ReadLimits.of(settings),
        settings.max_runtime_s,
        lambda run_ids, countdown=0: send(queue, settings, sessions, run_ids, countdown),
    )


def verdicts_of(
    spec: ExperimentSpec, points: list[tuple[int, int, str, float]], *, failure: str | None = None, final: bool = False
) -> list[dict] | None:
    """What the run's series say (``core.insight``); None, logged, if reading them failed: the
    verdicts are advice, and a bug in them must not fail the training."""
    try:
        return [verdict.as_dict() for verdict in assess(spec, from_points(points), failure=failure, final=final)]
    except Exception:
        log.exception("could not assess the run's series")
        return None


def stored_points(sessions: sessionmaker[Session], run_id: str) -> list[tuple[int, int, str, float]]:
    """Every metric point the run has stored (an earlier attempt's too)."""
    with sessions() as session:
        return [
            (row.step, row.epoch, row.name, row.value) for row in runs.metric_rows(session=session, run_ids=[run_id])
        ]


class DatabaseReporter(Callback):
    """Stores metric points, progress and the verdicts so far, and checks for a cancel request,
    in one transaction at most every ``interval_s`` seconds (and at the end), so short epochs cost
    no round trip each. The verdicts read every point of the run (``earlier``: those an earlier
    attempt stored). A resumed attempt first stores what the run folder's metrics file holds
    through its checkpoint (``metrics_file``): the attempt that died may have checkpointed epochs
    it had not reported yet."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_id: str,
        *,
        held_by: tuple[str, int],
        interval_s: float,
        lost: threading.Event,
        earlier: list[tuple[int, int, str, float]] | None = None,
        metrics_file: Path | None = None,
    ) -> None:
        self.sessions, self.run_id, self.interval_s = sessions, run_id, interval_s
        self.held_by, self.lost = held_by, lost
        self.points: list[tuple[int, int, str, float]] = []
        self.seen = list(earlier or [])
        self.verdicts: list[dict] | None = None
        self.last = time.monotonic()
        self.metrics_file = metrics_file

    def on_fit_start(self, state: State) -> None:
        if state.step == 0 or self.metrics_file is None or not self.metrics_file.is_file():
            return
        stored = {(step, name) for step, _, name, _ in self.seen}
        with self.metrics_file.open() as lines:
            kept = [json.loads(line) for line in lines]
        missing = [(p["step"], p["epoch"], p["name"], p["value"]) for p in kept if (p["step"], p["name"]) not in stored]
        self.points += missing
        self.seen += missing

    def on_metrics(self, state: State) -> None:
        new = [(p.step, p.epoch, p.name, p.value) for p in state.new_points]
        self.points += new
        self.seen += new

    def on_epoch_end(self, state: State) -> None:
        if self.lost.is_set():  # the heartbeat found the run requeued: stop before writing more
            raise runs.LeaseLost(self.run_id)
        if time.monotonic() - self.last >= self.interval_s:
            self.report(state)

    def on_fit_end(self, state: State) -> None:
        self.report(state)

    def report(self, state: State) -> None:
        """Raises LeaseLost (nothing stored) when the run is no longer this attempt's."""
        verdicts = verdicts_of(state.spec, self.seen)
        changed = verdicts if verdicts is not None and verdicts != self.verdicts else None
        worker, attempt = self.held_by
        with self.sessions() as session:
            cancel = runs.report_progress(
                session=session,
                run_id=self.run_id,
                worker=worker,
                attempt=attempt,
                epoch=state.epoch,
                points=self.points,
                verdicts=changed,
            )
        self.points, self.last = [], time.monotonic()
        self.verdicts = verdicts if changed is not None else self.verdicts
        if cancel:
            state.stop("cancelled by request", status=RunStatus.CANCELLED)


class Heartbeat:
    """Renews the run's lease from a background thread while it trains; sets ``lost`` when the
    run is no longer this attempt's. A database error is logged and the beat goes on (the lease
    outlives a few missed beats)."""

    def __init__(self, context: WorkerContext, run_id: str, attempt: int) -> None:
        self.context, self.run_id, self.attempt = context, run_id, attempt
        self.stopped, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        context = self.context
        while not self.stopped.wait(context.lease_s / 3):
            try:
                with context.sessions() as session:
                    held = runs.renew_lease(
                        session=session,
                        run_id=self.run_id,
                        worker=context.name,
                        attempt=self.attempt,
                        lease_s=context.lease_s,
                    )
            except Exception:
                log.exception("could not renew the lease of run %s; trying again", self.run_id)
                continue
            if not held:
                log.warning("run %s is no longer attempt %d's: stopping it here", self.run_id, self.attempt)
                self.lost.set()
                return

    def __enter__(self) -> "Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


@dataclass(frozen=True)
class _Claimed:
    """What the worker needs of the run it claimed, read in the claim's session."""

    spec: dict
    tenant: str
    attempt: int
    parent_id: str | None
    trial: int | None
    parent_kind: str | None
    parent_spec: dict | None
    shared_s: float  # a k-fold run's fold: the seconds of its max_runtime_s the other folds took


def _trial_callbacks(context: WorkerContext, run: _Claimed) -> list[Callback]:
    """A sweep trial with early stopping reports its metric to its Optuna trial each epoch."""
    if run.parent_kind != RunKind.SWEEP or run.parent_spec is None or run.trial is None:
        return []
    sweep = parents.sweep_of_spec(run.parent_spec)
    if sweep.early_stop is None:
        return []
    study = open_study(
        study_storage(context.optuna_url),
        run.parent_id or "",
        sweep,
        seed=run.parent_spec["seed"],
        epochs=run.parent_spec["epochs"],
    )
    return [TrialReporter(study, run.trial, sweep)]


def execute_run(*, run_id: str, context: WorkerContext) -> runs.ClaimOutcome | RunStatus:
    """Train run ``run_id`` if this worker wins the claim, from its last checkpoint when an earlier
    attempt died. Returns the final status, or why it did not train: SKIPPED (not queued any
    more, or no longer this attempt's), DEFERRED (its tenant already has its quota of running
    runs), QUEUED again (an infrastructure failure: out of memory, a database error, a full disk;
    try again), or RUNNING (the database failed even then: the sweeper requeues it once its lease
    runs out). A child's end moves its parent on (the next trials are asked for and sent, or the
    parent finishes)."""
    status = _execute(run_id, context)
    if isinstance(status, RunStatus) and status.terminal:
        _advance_parent(context, run_id)
    return status


DEFER_SECONDS = 5


def dispatch(context: WorkerContext, run_id: str, outcome: runs.ClaimOutcome | RunStatus) -> None:
    """What the queue does after an attempt: a run deferred by its tenant's quota is sent again a
    little later, one given back after an infrastructure failure at once (maybe to another
    worker); either way it is noted as sent, so the sweeper adds no copy of its own."""
    if outcome == runs.ClaimOutcome.DEFERRED:
        context.send([run_id], countdown=DEFER_SECONDS)
    elif outcome == RunStatus.QUEUED:
        context.send([run_id])


def _advance_parent(context: WorkerContext, run_id: str) -> None:
    with context.sessions() as session:
        parent_id = session.get(Run, run_id).parent_id
    if parent_id is None:
        return
    try:
        with context.sessions() as session:
            created = parents.advance(session=session, parent_id=parent_id, optuna_url=context.optuna_url)
    except Exception:  # the API's sweeper advances it again
        log.exception("could not advance parent run %s", parent_id)
        return
    context.send(created)


def _claim(context: WorkerContext, run_id: str) -> runs.ClaimOutcome | _Claimed:
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
        parent = session.get(Run, run.parent_id) if run.parent_id else None
        kfold = parent is not None and parent.kind == RunKind.KFOLD
        return _Claimed(
            run.spec,
            run.tenant,
            run.attempt,
            run.parent_id,
            run.trial,
            parent.kind if parent else None,
            parent.spec if parent else None,
            parents.other_folds_seconds(session=session, fold_id=run_id) if kfold else 0.0,
        )


def _execute(run_id: str, context: WorkerContext) -> runs.ClaimOutcome | RunStatus:
    run = _claim(context, run_id)
    if not isinstance(run, _Claimed):
        return run
    try:
        return _attempt(context, run_id, run)
    except Exception as exc:
        if not infrastructure(exc):
            raise
        log.exception("run %s: attempt %d met an infrastructure failure; giving it back", run_id, run.attempt)
        return _requeue(context, run_id, f"{type(exc).__name__}: {exc}".splitlines()[0])


def infrastructure(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's failure rather than the run's, so another attempt may not
    meet it: the database went away or is locked (OperationalError, a connection invalidated), the
    file system failed (OSError: a full disk, an I/O error), or a rank of a multi-device run died."""
    if isinstance(exc, OperationalError | OSError | RankLost):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _attempt(context: WorkerContext, run_id: str, run: _Claimed) -> runs.ClaimOutcome | RunStatus:
    """Train the claimed run, save its artifacts and end it. An error of the run's own (a bad spec,
    a bug) fails it; an infrastructure failure is raised, for ``_execute`` to give the run back."""
    held_by = (context.name, run.attempt)  # every write below is fenced on it
    folder = context.artifact_dir / run_id
    try:
        with (
            Heartbeat(context, run_id, run.attempt) as heartbeat,
            data_access(
                data_root=context.data_root,
                resolve_dataset=dataset_resolver(context.sessions, run.tenant),
                limits=context.read_limits,
            ),
        ):
            plan = plan_experiment(_capped(parse_spec(run.spec), context.max_runtime_s))
            reporter = DatabaseReporter(
                context.sessions,
                run_id,
                held_by=held_by,
                interval_s=context.report_interval_s,
                lost=heartbeat.lost,
                earlier=stored_points(context.sessions, run_id),  # a later attempt's verdicts read the first's points
                metrics_file=folder / run_folder.METRICS,
            )
            result = train_run(
                plan,
                folder=folder,
                callbacks=[reporter, *_trial_callbacks(context, run)],
                device=context.device,
                resume=True,  # a later attempt continues from the checkpoint of the one that died
                checkpoints=context.checkpoints,
                fold=run.trial if run.parent_kind == RunKind.KFOLD else None,  # a k-fold run's fold
                attempt=run.attempt,
                shared_s=run.shared_s,  # the folds of a k-fold run share its max_runtime_s
            )
        if result.retryable:
            return _requeue(context, run_id, result.failure or "")
        with context.sessions() as session:
            if not runs.holds(session=session, run_id=run_id, worker=context.name, attempt=run.attempt):
                return _lost(run_id, run.attempt)  # not ours any more: its files are the next attempt's to write
        result.save(folder)
        artifacts = [
            (str(path.relative_to(folder)), str(path), path.stat().st_size) for path in run_folder.stored_files(folder)
        ]
    except runs.LeaseLost:
        return _lost(run_id, run.attempt)
    except SpecInvalid as exc:
        return _finish(context, run_id, held_by, RunStatus.FAILED, None, f"invalid spec: {exc}", None)
    except Exception as exc:
        if infrastructure(exc):
            raise
        log.exception("run %s crashed", run_id)
        return _finish(context, run_id, held_by, RunStatus.FAILED, None, f"{type(exc).__name__}: {exc}", None)
    summary = result.summary()
    verdicts = verdicts_of(
        plan.spec, stored_points(context.sessions, run_id), failure=result.failure, final=True
    )  # every point of the run, an earlier attempt's included
    status = _finish(
        context,
        run_id,
        held_by,
        result.status,
        summary,
        result.failure,
        summary.get("stop_reason"),
        verdicts,
        artifacts,
    )
    if status != runs.ClaimOutcome.SKIPPED:
        remove_checkpoint(run_folder.checkpoint_folder(folder))  # every attempt's, once the run has ended
    return status


def _requeue(context: WorkerContext, run_id: str, reason: str) -> RunStatus:
    """Give the run back to the queue (or fail it, once its attempts are spent). When the database
    fails here too, the run is left RUNNING: its lease runs out and the sweeper requeues it."""
    try:
        with context.sessions() as session:
            return runs.requeue(
                session=session, run_id=run_id, worker=context.name, reason=reason, max_attempts=context.max_attempts
            )
    except Exception as exc:
        if not infrastructure(exc):
            raise
        log.exception("could not give run %s back; the sweeper requeues it once its lease runs out", run_id)
        return RunStatus.RUNNING


def _capped(spec: ExperimentSpec, max_runtime_s: float | None) -> ExperimentSpec:
    """The spec with the service's time limit where it asks for none or for more."""
    if max_runtime_s is not None and (spec.max_runtime_s is None or spec.max_runtime_s > max_runtime_s):
        spec.max_runtime_s = max_runtime_s
    return spec


def _lost(run_id: str, attempt: int) -> runs.ClaimOutcome:
    log.warning("run %s: attempt %d lost its lease; it writes nothing more", run_id, attempt)
    return runs.ClaimOutcome.SKIPPED


def _finish(
    context: WorkerContext,
    run_id: str,
    held_by: tuple[str, int],
    status: RunStatus,
    summary: dict | None,
    failure: str | None,
    stop_reason: str | None,
    verdicts: list[dict] | None = None,
    artifacts: list[tuple[str, str, int]] | None = None,
) -> RunStatus | runs.ClaimOutcome:
    """End the run (fenced on this attempt); SKIPPED when it is no longer this attempt's."""
    with context.sessions() as session:
        ended = runs.finish_run(
            session=session,
            run_id=run_id,
            status=status,
            summary=summary,
            failure=failure,
            stop_reason=stop_reason,
            verdicts=verdicts,
            held_by=held_by,
            artifacts=artifacts or [],
        )
    if not ended:
        return _lost(run_id, held_by[1])
    log.info("run %s %s%s", run_id, status, f": {failure}" if failure else "")
    return status
