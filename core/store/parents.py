"""Parent runs. A sweep's trials and a k-fold run's folds are child runs: ordinary runs, each with
its own queue message, metrics, artifacts and predict endpoint. ``advance`` moves a parent on:
it creates the children that may start (a k-fold run's folds all at once; a sweep's trials asked
of its Optuna study as earlier ones end, never more than ``trials`` nor more than
``max_concurrent`` at once), tells the study how each trial ended, and finishes the parent once
every child has ended. It is called after the parent is stored, after each child ends, and by the
API's sweeper for every unfinished parent, so a sweep goes on when whatever called it last died."""

from datetime import UTC
from typing import Any

from optuna.trial import TrialState
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.engine.run import kfold_summary
from core.errors import SpecInvalid
from core.spec.schema import parse_spec
from core.spec.sweep import SweepSpec
from core.spec.trials import trial_document
from core.status import RunStatus
from core.store import runs
from core.store.models import Metric, Run, RunKind, utcnow
from core.store.studies import study_storage
from core.sweep import search
from core.sweep.outcome import TrialOutcome, best_trial, sweep_summary

ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)


def sweep_of_spec(spec: dict[str, Any]) -> SweepSpec:
    """The ``sweep`` of a parent's stored spec."""
    return SweepSpec.model_validate(spec["sweep"])


def sweep_of(run: Run) -> SweepSpec:
    return sweep_of_spec(run.spec)


def children_of(session: Session, parent_id: str) -> list[Run]:
    """Every child of a parent, in trial order."""
    return list(session.scalars(select(Run).where(Run.parent_id == parent_id).order_by(Run.trial)))


def other_folds_seconds(*, session: Session, fold_id: str) -> float:
    """The seconds the other folds of a k-fold run took, from the summaries of those that have ended:
    the part of the run's ``max_runtime_s`` they spent, which fold ``fold_id`` does not get. A fold's
    summary counts its last attempt; a fold still training on another worker counts once it ends."""
    parent_id = session.get(Run, fold_id).parent_id
    siblings = session.scalars(select(Run.summary).where(Run.parent_id == parent_id, Run.id != fold_id))
    return sum(summary.get("seconds") or 0.0 for summary in siblings if summary)


def list_children(
    *, session: Session, parent_id: str, status: str | None, limit: int, after_trial: int | None
) -> list[Run]:
    """A page of a parent's children in trial order, after trial number ``after_trial``."""
    query = select(Run).where(Run.parent_id == parent_id).order_by(Run.trial).limit(limit)
    if status:
        query = query.where(Run.status == status)
    if after_trial is not None:
        query = query.where(Run.trial > after_trial)
    return list(session.scalars(query))


def metric_values(session: Session, run_ids: list[str], name: str) -> dict[str, list[float]]:
    """Each run's per-epoch series of metric ``name``, in epoch order (one query)."""
    values: dict[str, list[float]] = {run_id: [] for run_id in run_ids}
    rows = session.execute(
        select(Metric.run_id, Metric.value).where(Metric.run_id.in_(run_ids), Metric.name == name).order_by(Metric.step)
    )
    for run_id, value in rows:
        values[run_id].append(value)
    return values


def outcomes(session: Session, sweep: SweepSpec, children: list[Run]) -> list[TrialOutcome]:
    """Each trial as it stands, with the best value of the sweep's metric it reached."""
    values = metric_values(session, [child.id for child in children], sweep.metric)
    return [
        TrialOutcome(
            trial=child.trial or 0,
            run=child.id,
            params=child.params or {},
            status=RunStatus(child.status),
            epochs=child.epoch,
            value=search.best_value(values[child.id], sweep.mode or "min"),
        )
        for child in children
    ]


def best_child(session: Session, parent: Run) -> TrialOutcome | None:
    """A sweep's best trial so far (None for a k-fold parent or before any trial succeeded)."""
    if parent.kind != RunKind.SWEEP:
        return None
    sweep = sweep_of(parent)
    return best_trial(sweep, outcomes(session, sweep, children_of(session, parent.id)))


def advance(*, session: Session, parent_id: str, optuna_url: str) -> list[str]:
    """Move a parent on (see the module's docstring); returns the ids of the children it created,
    which the caller sends to the workers. Callers are serialised on the parent's row, so two
    callers at once never ask for the same trial twice."""
    session.execute(update(Run).where(Run.id == parent_id).values(epoch=Run.epoch))  # the lock, until commit
    parent = session.get(Run, parent_id)
    session.refresh(parent)
    if parent.kind == RunKind.KFOLD:
        created = _advance_kfold(session, parent)
    else:
        created = _advance_sweep(session, parent, optuna_url)
    session.commit()
    return [child.id for child in created]


def _child(
    session: Session, parent: Run, trial: int, params: dict[str, Any] | None, spec: dict[str, Any] | None = None
) -> Run:
    """A queued child: a sweep's trial (its spec the parent's with ``params`` applied) or a fold."""
    return runs.create_run(
        session=session,
        tenant=parent.tenant,
        spec=spec if spec is not None else _trial_spec(parent, params or {}),
        name=parent.name,
        parent_id=parent.id,
        trial=trial,
        params=params,
    )


def _trial_spec(parent: Run, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's resolved spec: the parent's document as submitted with ``params`` applied (as
    validation built it). A document the schema refuses is stored as it is, and its run fails with
    the schema's reason when a worker picks it up."""
    resolved = {name: value for name, value in parent.spec.items() if name != "sweep"}
    document = trial_document(parent.document or parent.spec, resolved, params)
    try:
        return parse_spec(document).model_dump(mode="json")
    except SpecInvalid:
        return document


def _advance_sweep(session: Session, parent: Run, optuna_url: str) -> list[Run]:
    sweep, spec = sweep_of(parent), parent.spec
    study = search.open_study(study_storage(optuna_url), parent.id, sweep, seed=spec["seed"], epochs=spec["epochs"])
    children = children_of(session, parent.id)
    by_trial = {child.trial: child for child in children}
    trials = study.get_trials(deepcopy=False)
    values = metric_values(session, [c.id for c in children if RunStatus(c.status).terminal], sweep.metric)
    for child in children:  # trials whose run ended and whose end the study has not heard
        if child.id in values and not trials[child.trial].state.is_finished():
            search.tell(study, child.trial, RunStatus(child.status), search.best_value(values[child.id], sweep.mode))
    open_parent = not RunStatus(parent.status).terminal
    created = []
    for trial in trials:  # asked for, but whoever asked died before storing its run
        if trial.number not in by_trial and not trial.state.is_finished() and trial.params:
            if open_parent:
                created.append(_child(session, parent, trial.number, search.decode(sweep, trial.params)))
            else:
                search.tell(study, trial.number, RunStatus.CANCELLED, None)
    active = sum(RunStatus(child.status) in ACTIVE for child in children) + len(created)
    asked = sum(trial.state != TrialState.WAITING for trial in trials)  # a waiting grid point is asked next
    while open_parent and asked < sweep.trial_count and active < sweep.max_concurrent:
        trial = search.ask(study, sweep)
        created.append(_child(session, parent, trial.number, search.decode(sweep, trial.params)))
        asked, active = asked + 1, active + 1
    if open_parent and active == 0 and asked >= sweep.trial_count:
        summary = sweep_summary(sweep, outcomes(session, sweep, children), _seconds(parent))
        failure = None if summary["best"] else "no trial succeeded"
        _finish(session, parent, RunStatus(summary["status"]), summary, failure)
    return created


def _advance_kfold(session: Session, parent: Run) -> list[Run]:
    children = children_of(session, parent.id)
    if not children and parent.status == RunStatus.QUEUED:
        folds = parent.spec["data"]["split"]["kfold"]
        return [_child(session, parent, fold, {"fold": fold}, parent.spec) for fold in range(1, folds + 1)]
    if RunStatus(parent.status).terminal:
        return []
    ended = [child for child in children if child.status != RunStatus.QUEUED and RunStatus(child.status).terminal]
    failed = next((child for child in ended if child.status != RunStatus.SUCCEEDED), None)
    if failed is not None:
        runs.stop_children(session=session, parent_id=parent.id, reason=f"fold {failed.trial} did not succeed")
        children = children_of(session, parent.id)
    if any(RunStatus(child.status) in ACTIVE for child in children):
        return []
    folds = [child.summary for child in children if child.summary]
    spec = parse_spec(parent.spec)
    params = folds[0]["params"] if folds else 0
    status = RunStatus.SUCCEEDED if failed is None else RunStatus(failed.status)
    failure = None
    if failed is not None:
        failure = f"fold {failed.trial}: {failed.failure or failed.stop_reason}"
    _finish(session, parent, status, kfold_summary(spec, params, folds, _seconds(parent), status, failure), failure)
    return []


def _seconds(parent: Run) -> float:
    """Wall time since the parent started (its first child was claimed)."""
    started = parent.started_at or parent.created_at
    if started.tzinfo is None:  # SQLite gives back naive UTC datetimes
        started = started.replace(tzinfo=UTC)
    return (utcnow() - started).total_seconds()


def _finish(session: Session, parent: Run, status: RunStatus, summary: dict[str, Any], failure: str | None) -> None:
    session.execute(
        update(Run)
        .where(Run.id == parent.id, Run.status.in_(ACTIVE))
        .values(status=status, summary=summary, failure=failure, finished_at=utcnow())
    )


def unfinished_parents(*, session: Session) -> list[str]:
    """Parents not yet finished: the sweeper advances each."""
    return list(session.scalars(select(Run.id).where(Run.kind != RunKind.RUN, Run.status.in_(ACTIVE))))
