"""A sweep run locally, no service: its trials train in this process one after another, or in
``jobs`` worker processes at once. The Optuna study lives in an SQLite file in the sweep's folder
(``optuna.db``), so worker processes report to it and prune against each other; each trial is an
ordinary run folder (``trial-000/``, ...) and the folder's ``summary.json`` names the best one."""

import json
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from core import run_folder
from core.data.files import data_access
from core.engine.checkpoint import CheckpointPolicy, remove_checkpoint
from core.engine.events import Callback, State
from core.engine.plan import plan_experiment
from core.engine.run import DEFAULT_CHECKPOINTS, RunResult, train_run
from core.errors import SpecInvalid
from core.spec.schema import ExperimentSpec, parse_spec
from core.spec.sweep import SweepSpec
from core.spec.trials import trial_document
from core.status import RunStatus
from core.sweep import search
from core.sweep.outcome import TrialOutcome, sweep_summary

STORAGE = "optuna.db"
STUDY = "sweep"


def trial_folder(out: Path, number: int) -> Path:
    """The run folder of trial ``number`` (0-based, as Optuna counts) of the sweep in ``out``."""
    return out / f"trial-{number:03d}"


@dataclass(frozen=True)
class TrialEpoch:
    """One epoch of one trial, as the trial reports it (from a worker process: through a queue)."""

    trial: int
    params: dict[str, Any]
    fold: int | None
    epoch: int
    epochs: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class TrialJob:
    """Everything one trial needs to train, in this process or a worker's (so: picklable)."""

    number: int
    params: dict[str, Any]
    document: dict[str, Any]  # the trial's spec document
    folder: Path
    local_base: Path | None  # where a file source's relative path starts
    device: str | None
    checkpoints: CheckpointPolicy


@dataclass(frozen=True)
class SweepResult:
    """How a local sweep came out: every trial's outcome, in trial order, and the summary."""

    folder: Path
    sweep: SweepSpec
    trials: list[TrialOutcome]
    summary: dict[str, Any]


class _EpochReport(Callback):
    """Sends each epoch's metrics of a trial to ``send`` (the caller's hook, or a queue's put)."""

    def __init__(self, job: TrialJob, send: Callable[[TrialEpoch], Any]) -> None:
        self.job, self.send = job, send

    def on_epoch_end(self, state: State) -> None:
        report = TrialEpoch(
            self.job.number, self.job.params, state.fold, state.epoch, state.spec.epochs, dict(state.epoch_metrics)
        )
        self.send(report)


def _storage(url: str) -> optuna.storages.RDBStorage:
    # processes writing the same SQLite file wait for each other's locks instead of failing
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def _train_trial(job: TrialJob, study: optuna.Study, sweep: SweepSpec, callbacks: Sequence[Callback]) -> TrialOutcome:
    """Plan and train one trial in its folder and save it there as ``trainyard train`` does; a
    trial whose spec does not fit its data or its device fails without training (its summary says why)."""
    failed = TrialOutcome(job.number, job.folder.name, job.params, RunStatus.FAILED, 0, None)
    with data_access(local_base=job.local_base):
        try:
            plan = plan_experiment(parse_spec(job.document))
            reporter = [search.TrialReporter(study, job.number, sweep)] if sweep.early_stop is not None else []
            result = train_run(
                plan,
                folder=job.folder,
                callbacks=[*reporter, *callbacks],
                device=job.device,
                checkpoints=job.checkpoints,
            )  # SpecInvalid before it trains when the device cannot train the trial (its precision)
        except SpecInvalid as exc:
            job.folder.mkdir(parents=True, exist_ok=True)
            failure = "; ".join(f"{e.pointer or '/'}: {e.message}" for e in exc.errors)
            (job.folder / run_folder.SUMMARY).write_text(json.dumps({"status": failed.status, "failure": failure}))
            return failed
    assert isinstance(result, RunResult)  # the schema refuses k-fold trials
    result.save(job.folder)
    remove_checkpoint(run_folder.checkpoint_folder(job.folder))
    value = search.best_value(result.history.series(sweep.metric), sweep.mode or "min")
    return TrialOutcome(job.number, job.folder.name, job.params, result.status, result.epochs, value)


_REPORTS: list[Any] = []  # a worker process's queue to the parent, set as the worker starts


def _start_worker(reports: Any, threads: int) -> None:
    """A worker process's set-up: where epochs are reported, and its share of the CPU cores."""
    _REPORTS.append(reports)
    torch.set_num_threads(threads)


def _train_in_worker(job: TrialJob, url: str, sweep: SweepSpec, seed: int, epochs: int) -> TrialOutcome:
    study = search.open_study(_storage(url), STUDY, sweep, seed=seed, epochs=epochs)
    return _train_trial(job, study, sweep, [_EpochReport(job, _REPORTS[0].put)])


def run_sweep(
    spec: ExperimentSpec,
    document: dict[str, Any],
    out: Path,
    *,
    jobs: int = 1,
    device: str | None = None,
    local_base: Path | None = None,
    checkpoints: CheckpointPolicy = DEFAULT_CHECKPOINTS,
    on_epoch: Callable[[TrialEpoch], None] = lambda report: None,
) -> SweepResult:
    """Run the sweep of ``spec`` (parsed from ``document``) in ``out``: ask the study for a trial
    while it holds fewer than the sweep's trial count and fewer than ``jobs`` (at most
    ``max_concurrent``) train, train each in its folder, tell the study how it ended (its best
    value of the sweep's metric), and write the resolved spec and the sweep's summary to ``out``.
    ``on_epoch`` sees every trial's epochs. A folder that held an earlier sweep starts afresh."""
    sweep = spec.sweep
    assert sweep is not None
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / run_folder.SPEC).write_text(spec.model_dump_json(indent=2))
    (out / STORAGE).unlink(missing_ok=True)
    url = f"sqlite:///{(out / STORAGE).resolve()}"
    study = search.open_study(_storage(url), STUDY, sweep, seed=spec.seed, epochs=spec.epochs)
    resolved = spec.model_dump(mode="json", exclude={"sweep"})

    def next_job() -> TrialJob | None:
        if len(study.get_trials(deepcopy=False)) >= sweep.trial_count:
            return None
        trial = search.ask(study, sweep)
        params = search.decode(sweep, trial.params)
        document_ = trial_document(document, resolved, params)
        folder = trial_folder(out, trial.number)
        return TrialJob(trial.number, params, document_, folder, local_base, device, checkpoints)

    outcomes: list[TrialOutcome] = []

    def ended(outcome: TrialOutcome) -> None:
        search.tell(study, outcome.trial, outcome.status, outcome.value)
        outcomes.append(outcome)

    slots = min(jobs, sweep.max_concurrent)
    if slots == 1:
        while (job := next_job()) is not None:
            ended(_train_trial(job, study, sweep, [_EpochReport(job, on_epoch)]))
    else:
        _run_in_workers(next_job, ended, slots, on_epoch, (url, sweep, spec.seed, spec.epochs))
    outcomes.sort(key=lambda outcome: outcome.trial)
    summary = sweep_summary(sweep, outcomes, time.perf_counter() - started)
    (out / run_folder.SUMMARY).write_text(json.dumps(summary, indent=2))
    return SweepResult(out, sweep, outcomes, summary)


def _run_in_workers(
    next_job: Callable[[], TrialJob | None],
    ended: Callable[[TrialOutcome], None],
    slots: int,
    on_epoch: Callable[[TrialEpoch], None],
    study_args: tuple[str, SweepSpec, int, int],
) -> None:
    """Train trials in ``slots`` spawned worker processes, each with its share of the cores; their
    epochs come back through a queue that is drained into ``on_epoch`` while they train."""
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // slots)

    def drain() -> None:
        while True:
            try:
                on_epoch(reports.get_nowait())
            except queue.Empty:
                return

    with ProcessPoolExecutor(slots, mp_context=context, initializer=_start_worker, initargs=(reports, threads)) as pool:
        running: set[Future[TrialOutcome]] = set()
        while True:
            while len(running) < slots and (job := next_job()) is not None:
                running.add(pool.submit(_train_in_worker, job, *study_args))
            if not running:
                break
            done, running = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
            drain()
            for future in done:
                ended(future.result())
    drain()
