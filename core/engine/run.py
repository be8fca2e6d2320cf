"""The one way to run a run: ``train_run`` takes a planned spec (the spec and its data), callbacks,
a device, a run folder to write into and whether to resume from the checkpoints in it, and
returns a result that knows its status and summary and saves itself. The CLI, the worker and
sweep trials all call it. A k-fold spec trains once per fold through it, each fold in its own
folder with its own checkpoints. ``run_experiment`` is one training (split, preprocess, build,
train, test) that it is made of."""

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import run_folder
from core.artifacts import save_model
from core.data.dataset import Dataset, Splits
from core.data.preprocess import apply_preprocessing, fit_preprocessing
from core.data.split import kfold_indices, split_indices
from core.durable import replace_files
from core.engine import distributed
from core.engine.callbacks import EarlyStopping, History, MetricsFile, TimeLimit
from core.engine.capture import Capture, plan_capture, to_channels_last
from core.engine.checkpoint import Checkpointer, CheckpointPolicy, load_checkpoint, remove_checkpoint
from core.engine.diagnostics import Diagnostics, InitialLoss
from core.engine.distributed import Ranks
from core.engine.events import Callback, State
from core.engine.plan import Plan, plan_experiment
from core.engine.precision import check_precision
from core.engine.trainer import Trainer
from core.errors import SpecError, SpecInvalid
from core.nn.models import build_model, initialise
from core.spec.schema import ExperimentSpec
from core.status import RunStatus


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else CUDA when present, else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class RunResult:
    """One training's outcome: its status and metrics, the trained model and what it was trained on."""

    status: RunStatus
    failure: str | None
    stop_reason: str | None
    epochs: int
    steps: int
    params: int
    seconds: float
    final: dict[str, float]  # last epoch's metrics plus test_loss / test_accuracy
    model: torch.nn.Module
    plan: Plan
    splits: Splits
    history: History = field(repr=False)
    retryable: bool = False  # failed for a reason another attempt may not meet (out of memory)
    fold: int | None = None  # the fold of a k-fold spec this training was
    devices: int = 1  # the ranks it trained on
    steps_ran: dict[str, Any] = field(default_factory=dict)  # precision, compiled or eager step, and why

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary; a non-finite metric (a diverged loss) becomes null. A fold's names
        the fold and its validation and test sizes first."""
        final = {name: value if math.isfinite(value) else None for name, value in self.final.items()}
        fold = {}
        if self.fold is not None:
            validation, test = self.splits.validation, self.splits.test
            fold = {
                "fold": self.fold,
                "validation_samples": len(validation) if validation is not None else 0,
                "test_samples": len(test) if test is not None else 0,
            }
        return {
            **fold,
            "status": self.status,
            "failure": self.failure,
            "stop_reason": self.stop_reason,
            "epochs": self.epochs,
            "steps": self.steps,
            "params": self.params,
            "seconds": round(self.seconds, 3),
            **({"devices": self.devices} if self.devices > 1 else {}),
            **self.steps_ran,
            **loss_scale(self.plan.spec),
            **final,
        }

    def save(self, folder: Path) -> None:
        """Write the trained model, its preprocessing, the resolved spec and the summary."""
        save_model(
            folder,
            model=self.model,
            fitted_preprocessing=self.splits.fitted_preprocessing,
            fitted_target_preprocessing=self.splits.fitted_target_preprocessing,
            spec=self.plan.spec,
            meta=self.plan.model_meta(),
            tokenizer=self.plan.data.tokenizer,
            summary=self.summary(),
        )


def prepare_splits(
    spec: ExperimentSpec, data: Dataset, indices: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> Splits:
    """Split (or take the given train / validation / test row indices), then fit preprocessing of
    the features and of the targets (``data.target_preprocess``) on the training part only and
    apply it to every part."""
    classify = spec.task != "regression"
    train, validation, test = indices or split_indices(data, spec.data.split, seed=spec.seed, classify=classify)
    rows = torch.as_tensor(train)
    fitted = fit_preprocessing(spec.data.preprocess, data.x[rows])
    fitted_targets = fit_preprocessing(spec.data.target_preprocess, data.y[rows])

    def transformed(index: np.ndarray) -> Dataset | None:
        if len(index) == 0:
            return None
        part = data.subset(torch.as_tensor(index))
        return replace(
            part,
            x=apply_preprocessing(spec.data.preprocess, fitted, part.x),
            y=apply_preprocessing(spec.data.target_preprocess, fitted_targets, part.y),
        )

    parts = transformed(train), transformed(validation), transformed(test)
    return Splits(*parts, fitted, fitted_targets)  # type: ignore[arg-type]


def loss_scale(spec: ExperimentSpec) -> dict[str, str]:
    """``{"loss_scale": ...}`` for a summary when the targets were transformed (its losses are on
    that scale, its predictions in the original units), else nothing."""
    steps = spec.data.target_preprocess
    return {"loss_scale": "targets after " + ", ".join(step.type for step in steps)} if steps else {}


def engine_callbacks(spec: ExperimentSpec, *, shared_s: float = 0.0) -> list[Callback]:
    """The callbacks the spec itself asks for (early stopping, diagnostics, its time limit, of which
    ``shared_s`` seconds are spent: a k-fold run's other folds), after the initial loss every run
    records."""
    callbacks: list[Callback] = [InitialLoss()]
    stopping = spec.regularization.early_stopping
    if stopping is not None:
        callbacks.append(
            EarlyStopping(
                stopping.monitor, stopping.patience, stopping.mode or "min", stopping.min_delta, stopping.restore_best
            )
        )
    diagnostics = spec.diagnostics
    if diagnostics.activations or diagnostics.gradients:
        callbacks.append(
            Diagnostics(
                every_n_steps=diagnostics.every_n_steps,
                activations=diagnostics.activations,
                gradients=diagnostics.gradients,
            )
        )
    if spec.max_runtime_s is not None:
        callbacks.append(TimeLimit(spec.max_runtime_s, shared_s=shared_s))
    return callbacks


def training_state(
    spec: ExperimentSpec, model: torch.nn.Module, device: torch.device, train: Dataset, *, lr_tensor: bool = False
) -> tuple[State, torch.optim.lr_scheduler.LRScheduler]:
    """The trainer's state for ``model`` (already on ``device``) with the spec's optimizer (its lr a
    tensor with ``lr_tensor``), loss and schedule, and its learning-rate scheduler; the first batch
    of ``train`` primes the state."""
    optimizer = spec.optimizer.build(model.parameters(), device, lr_tensor=lr_tensor)
    steps_per_epoch = math.ceil(len(train) / spec.data.batch_size)
    scheduler = spec.schedule.build(optimizer, spec.epochs, steps_per_epoch)
    state = State(
        spec=spec,
        model=model,
        optimizer=optimizer,
        loss_fn=spec.loss.build(),
        device=device,
        steps_per_epoch=steps_per_epoch,
    )
    state.batch = (train.x[: spec.data.batch_size], train.y[: spec.data.batch_size])
    return state, scheduler


def run_experiment(
    spec: ExperimentSpec,
    *,
    callbacks: Sequence[Callback] = (),
    device: str | None = None,
    plan: Plan | None = None,
    sync_every: int = 50,
    splits: Splits | None = None,
    resume_from: dict[str, Any] | None = None,
    fold: int | None = None,
    ranks: Ranks | None = None,
    shared_s: float = 0.0,
) -> RunResult:
    """Train ``spec``; reports through ``callbacks``. Raises SpecInvalid before training starts
    if the spec does not fit its data; a run that fails while training returns status 'failed'.
    ``splits`` (prepared, e.g. one k-fold fold) replaces the spec's own split; ``resume_from`` is a
    trainer snapshot (a checkpoint) to continue from; ``fold`` (1-based) is seen by callbacks as
    ``state.fold``. ``ranks``: this process's place in a training over several devices (the
    launcher's process group is joined here); a rank other than 0 runs none of the callbacks.
    ``shared_s`` is the part of ``max_runtime_s`` the other folds took. A ``precision`` the device
    cannot compute in is SpecInvalid at ``/precision``."""
    if splits is None and spec.data.split.kfold:
        raise ValueError("a k-fold spec trains once per fold: use train_run")
    ranks = ranks or Ranks()
    if ranks.world != spec.resources.devices:
        raise ValueError(f"a spec on {spec.resources.devices} devices trains as that many ranks: use train_run")
    started = time.perf_counter()
    plan = plan or plan_experiment(spec)
    spec = plan.spec  # the resolved spec: augmentations bound to the data
    torch_device = ranks.device(pick_device(device))
    check_precision(spec.precision, torch_device)
    capture = plan_capture(spec, plan.layer_table, torch_device)
    if ranks.distributed and capture.compiled:
        capture = Capture(False, reason=f"a step on {ranks.world} ranks runs eagerly (DDP all-reduces its gradients)")
    torch.manual_seed(spec.seed)
    splits = (splits or prepare_splits(spec, plan.data)).to(torch_device)
    model, _ = build_model(
        spec.model, plan.input_shape or plan.data.sample_shape, plan.outputs, vocab_size=plan.vocab_size
    )
    initialise(model, spec.model.init)
    model.to(torch_device)
    to_channels_last(model, torch_device)  # before DDP wraps it (its buckets take the weights' layout)
    if ranks.rank:  # the same initial weights on every rank, its own dropout masks and augmentations
        torch.manual_seed(spec.seed + ranks.rank)
    with distributed.process_group(ranks, torch_device):
        state, scheduler = training_state(spec, model, torch_device, splits.train, lr_tensor=capture.optimizer)
        state.fold, state.ranks = fold, ranks
        state.forward = distributed.wrap(model, ranks, torch_device)
        history = History()
        generator = torch.Generator(device=torch_device).manual_seed(spec.seed)  # one permutation on every rank
        trainer = Trainer(
            state,
            [history, *engine_callbacks(spec, shared_s=shared_s), *callbacks] if ranks.writer else [history],
            scheduler=scheduler,
            generator=generator,
            sync_every=sync_every,
            capture=capture,
        )
        if resume_from is not None:
            trainer.restore(resume_from)
            if ranks.rank:
                torch.manual_seed(spec.seed + ranks.rank + ranks.world * state.epoch)
        failure, retryable = None, False
        try:
            trainer.fit(splits.train, splits.validation, epochs=spec.epochs)
        except torch.OutOfMemoryError as exc:
            state.stop(f"out of memory on {torch_device}: {exc}".splitlines()[0], status=RunStatus.FAILED)
            retryable = True  # an infrastructure failure: another attempt (another device) may succeed
    if state.status == RunStatus.FAILED:
        failure = state.stop_reason
    elif state.status == RunStatus.RUNNING:
        state.status = RunStatus.SUCCEEDED
    final = dict(state.epoch_metrics)  # the last epoch's; with early stopping, also the best epoch's
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.best_epoch:
            final.update({"best_epoch": callback.best_epoch, f"best_{callback.monitor}": callback.best})
    val_losses = [value for value in history.series("val_loss") if math.isfinite(value)]
    if val_losses and "best_val_loss" not in final:  # the best, not the last, whatever stopped the run
        final["best_val_loss"] = min(val_losses)
    if state.status == RunStatus.SUCCEEDED and splits.test is not None and ranks.writer:
        trainer.evaluate(splits.test, "test")
        synced = trainer.sync()
        final.update({name: synced[name] for name in ("test_loss", "test_accuracy") if name in synced})
    return RunResult(
        status=state.status,
        failure=failure,
        stop_reason=state.stop_reason if state.status != RunStatus.FAILED else None,
        epochs=state.epoch,
        steps=state.step,
        params=plan.params,
        seconds=time.perf_counter() - started,
        final=final,
        model=model,
        plan=plan,
        splits=splits,
        history=history,
        retryable=retryable,
        fold=fold,
        devices=ranks.world,
        steps_ran=trainer.train_step.summary(),
    )


DEFAULT_CHECKPOINTS = CheckpointPolicy()
FOLD_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


@dataclass
class KFoldResult:
    """k trainings, one per fold: each fold's summary (its model is saved in its own folder as the
    fold ends), its row indices, and the held-out test rows."""

    status: RunStatus
    failure: str | None
    folds: list[dict[str, Any]]  # each fold's summary, with "fold", "validation_samples", "test_samples"
    fold_indices: list[tuple[np.ndarray, np.ndarray]]  # (train, validation) rows of each fold
    test_indices: np.ndarray
    plan: Plan
    seconds: float
    retryable: bool = False  # a fold failed for a reason another attempt may not meet

    def summary(self) -> dict[str, Any]:
        return kfold_summary(self.plan.spec, self.plan.params, self.folds, self.seconds, self.status, self.failure)

    def save(self, folder: Path) -> None:
        """The resolved spec and the cross-validation summary at the top (the folds saved themselves),
        staged and moved in, the summary last."""
        spec = self.plan.spec.model_dump_json(indent=2).encode()
        replace_files(
            folder, {run_folder.SPEC: spec, run_folder.SUMMARY: json.dumps(self.summary(), indent=2).encode()}
        )


def kfold_summary(
    spec: ExperimentSpec,
    params: int,
    folds: list[dict[str, Any]],
    seconds: float,
    status: RunStatus,
    failure: str | None,
) -> dict[str, Any]:
    """A k-fold run's summary from its folds' summaries: each fold, and the mean and standard
    deviation (population, as numpy's) of each metric every fold has. The service's k-fold parent
    (whose folds are child runs) summarises the same way."""
    mean, std = {}, {}
    for name in FOLD_METRICS:
        values = [fold[name] for fold in folds if isinstance(fold.get(name), float)]
        if values and len(values) == len(folds):
            mean[name], std[name] = float(np.mean(values)), float(np.std(values))
    return {
        "status": status,
        "failure": failure,
        "kfold": len(folds),
        "params": params,
        "seconds": round(seconds, 3),
        **loss_scale(spec),
        "folds": folds,
        "mean": mean,
        "std": std,
    }


@dataclass(frozen=True)
class _Options:
    """How ``train_run`` trains, the same for every fold."""

    callbacks: Sequence[Callback]
    device: str | None
    resume: bool
    checkpoints: CheckpointPolicy
    sync_every: int
    attempt: int | None
    ranks: Ranks | None  # given by a launcher (torchrun); None: a multi-device spec starts its own
    shared_s: float = 0.0  # the seconds of max_runtime_s a k-fold run's other folds took


def train_run(
    plan: Plan,
    *,
    folder: Path,
    callbacks: Sequence[Callback] = (),
    device: str | None = None,
    resume: bool = False,
    checkpoints: CheckpointPolicy = DEFAULT_CHECKPOINTS,
    sync_every: int = 50,
    fold: int | None = None,
    attempt: int | None = None,
    ranks: Ranks | None = None,
    shared_s: float = 0.0,
) -> RunResult | KFoldResult:
    """Run ``plan`` in ``folder``: metrics to ``metrics.jsonl`` and checkpoints as they come,
    reporting through ``callbacks`` (shared by the folds of a k-fold run: ``state.fold`` tells
    them apart). With ``resume``, continue from the checkpoint the folder holds (a k-fold run
    also skips the folds it already finished). ``fold`` trains that one fold (1-based) of a k-fold
    spec in ``folder`` itself, as the service's fold children do, with ``shared_s`` seconds of its
    ``max_runtime_s`` spent by the other folds (the folds of a k-fold run share one budget).
    ``attempt`` (a service run's) checkpoints into a folder of that attempt's own. A spec asking for several devices
    (``resources.devices``) trains each training on that many ranks, this process being rank 0
    (``distributed.launched``), unless ``ranks`` says a launcher such as torchrun started this
    process as one of them; only rank 0 writes into ``folder``. The caller saves the result
    (rank 0's)."""
    if ranks is not None and ranks.world != plan.spec.resources.devices:
        raise SpecInvalid(
            [
                SpecError(
                    "/resources/devices",
                    f"the spec asks for {plan.spec.resources.devices} device(s); the launcher started "
                    f"{ranks.world} processes",
                    f"set resources.devices to {ranks.world}, or launch {plan.spec.resources.devices} processes",
                )
            ]
        )
    options = _Options(callbacks, device, resume, checkpoints, sync_every, attempt, ranks, shared_s)
    if plan.spec.data.split.kfold:
        if fold is not None:
            return _train_fold(plan, folder, options, fold)
        return _train_kfold(plan, folder, options)
    if fold is not None:
        raise ValueError("fold is for a k-fold spec")
    return _train_in(plan, folder, options)


def _train_in(
    plan: Plan, folder: Path, options: _Options, splits: Splits | None = None, fold: int | None = None
) -> RunResult:
    """One training whose metrics and checkpoints go to ``folder`` (rank 0's), on as many ranks as
    the spec asks for devices."""
    resume_from = None
    if options.resume:  # the newest attempt's checkpoint that is complete
        resume_from = next(filter(None, map(load_checkpoint, run_folder.checkpoint_candidates(folder))), None)
    devices = plan.spec.resources.devices
    if devices == 1 or options.ranks is not None:
        return _train_as(plan, folder, options, splits, fold, resume_from, options.ranks)
    _check_devices(devices, pick_device(options.device))
    splits = splits or prepare_splits(plan.spec, plan.data)  # prepared once, sent to every rank
    follow = (plan, splits, options.device, options.sync_every, fold, resume_from)
    with distributed.launched(devices, _follow, follow) as ranks:
        return _train_as(plan, folder, options, splits, fold, resume_from, ranks)


def _check_devices(devices: int, device: torch.device) -> None:
    """SpecInvalid at ``/resources/devices`` when this machine cannot start ``devices`` ranks on
    ``device``: ranks take ``cuda:0`` to ``cuda:N-1``, so a device index cannot be chosen, and there
    must be that many; on the CPU any number of gloo ranks can start."""
    if device.type != "cuda":
        return
    seen = torch.cuda.device_count()
    if device.index is not None or seen < devices:
        why = f"the device is {device}" if device.index is not None else f"this machine has {seen} CUDA device(s)"
        raise SpecInvalid(
            [
                SpecError(
                    "/resources/devices",
                    f"the run asks for {devices} devices, one rank on each of cuda:0 to cuda:{devices - 1}; {why}",
                    f"ask for at most {seen} devices, or name the device 'cuda'",
                )
            ]
        )


def _train_as(
    plan: Plan,
    folder: Path,
    options: _Options,
    splits: Splits | None,
    fold: int | None,
    resume_from: dict[str, Any] | None,
    ranks: Ranks | None,
) -> RunResult:
    """One training as rank ``ranks`` (or alone): the writer's callbacks on rank 0 only."""
    own: list[Callback] = []
    if ranks is None or ranks.writer:
        policy = options.checkpoints
        own = [
            MetricsFile(folder / run_folder.METRICS, keep_through_epoch=resume_from["epoch"] if resume_from else None),
            Checkpointer(
                run_folder.checkpoint_folder(folder, options.attempt), policy.every_n_epochs, policy.min_interval_s
            ),
        ]
    return run_experiment(
        plan.spec,
        plan=plan,
        callbacks=[*own, *options.callbacks],
        device=options.device,
        sync_every=options.sync_every,
        splits=splits,
        resume_from=resume_from,
        fold=fold,
        ranks=ranks,
        shared_s=options.shared_s,
    )


def _follow(
    ranks: Ranks,
    plan: Plan,
    splits: Splits,
    device: str | None,
    sync_every: int,
    fold: int | None,
    resume_from: dict[str, Any] | None,
) -> tuple[str, bool] | None:
    """A rank other than 0, in a process of its own: the same training, writing nothing; its
    failure and whether it is worth another attempt, when it failed. The snapshot's tensors arrived
    in memory shared with rank 0: copied, so that the optimizer state loaded from them (SGD's
    momentum, Adam's moments) is this rank's own."""
    result = run_experiment(
        plan.spec,
        plan=plan,
        device=device,
        sync_every=sync_every,
        splits=splits,
        resume_from=copy.deepcopy(resume_from),
        fold=fold,
        ranks=ranks,
    )
    return (result.failure or "", result.retryable) if result.status == RunStatus.FAILED else None


def _fold_indices(plan: Plan) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    spec = plan.spec
    return kfold_indices(plan.data, spec.data.split, seed=spec.seed, classify=spec.task != "regression")


def _train_fold(plan: Plan, folder: Path, options: _Options, fold: int) -> RunResult:
    """Fold ``fold`` (1-based): trained on the other folds' rows with preprocessing fitted on them,
    validated on its own, tested on the held-out test rows."""
    indices, test = _fold_indices(plan)
    if not 1 <= fold <= len(indices):
        raise ValueError(f"fold {fold} of a {len(indices)}-fold spec")
    train, held = indices[fold - 1]
    splits = prepare_splits(plan.spec, plan.data, (train, held, test))
    return _train_in(plan, folder, options, splits, fold)


def _train_kfold(plan: Plan, folder: Path, options: _Options) -> KFoldResult:
    """k-fold cross-validation (``data.split.kfold``): one training per fold, each validated on
    its fold and saved in its own folder as it ends; the test split (if any) is held out of every
    fold. Each fold's time limit starts with the seconds the folds before it took. Stops at the
    first fold that does not succeed."""
    started = time.perf_counter()
    indices, test = _fold_indices(plan)
    folds: list[dict[str, Any]] = []
    status, failure, retryable = RunStatus.SUCCEEDED, None, False
    for i in range(1, len(indices) + 1):
        fold_folder = run_folder.fold_folder(folder, i)
        summary = run_folder.finished_summary(fold_folder) if options.resume else None
        if summary is None:
            shared = sum(earlier["seconds"] for earlier in folds)
            result = _train_fold(plan, fold_folder, replace(options, shared_s=shared), i)
            if result.status == RunStatus.SUCCEEDED and (options.ranks is None or options.ranks.writer):
                result.save(fold_folder)
                remove_checkpoint(run_folder.checkpoint_folder(fold_folder))
            summary, retryable = result.summary(), result.retryable
        folds.append(summary)
        if summary["status"] != RunStatus.SUCCEEDED:
            status, failure = RunStatus(summary["status"]), f"fold {i}: {summary['failure'] or summary['stop_reason']}"
            break
    return KFoldResult(
        status, failure, folds, indices[: len(folds)], test, plan, time.perf_counter() - started, retryable
    )
