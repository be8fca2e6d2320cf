"""One training run from a validated spec: plan, split, preprocess, build, train, test."""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from core.data.dataset import Dataset, Splits
from core.data.preprocess import apply_preprocessing, fit_preprocessing
from core.data.split import kfold_indices, split_indices
from core.engine.callbacks import EarlyStopping, History, TimeLimit
from core.engine.diagnostics import Diagnostics
from core.engine.events import Callback, State
from core.engine.trainer import Trainer
from core.nn.models import build_model, initialise
from core.spec.schema import ExperimentSpec
from core.spec.validate import Plan, plan_experiment


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else CUDA when present, else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class RunResult:
    status: str  # succeeded | failed | cancelled
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

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary; a non-finite metric (a diverged loss) becomes null."""
        final = {name: value if math.isfinite(value) else None for name, value in self.final.items()}
        return {
            "status": self.status,
            "failure": self.failure,
            "stop_reason": self.stop_reason,
            "epochs": self.epochs,
            "steps": self.steps,
            "params": self.params,
            "seconds": round(self.seconds, 3),
            **final,
        }


def prepare_splits(
    spec: ExperimentSpec, data: Dataset, indices: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
) -> Splits:
    """Split (or take the given train / validation / test row indices), then fit preprocessing on
    the training part only and apply it to every part."""
    classify = spec.task != "regression"
    train, validation, test = indices or split_indices(data, spec.data.split, seed=spec.seed, classify=classify)
    fitted = fit_preprocessing(spec.data.preprocess, data.x[torch.as_tensor(train)])

    def transformed(index: np.ndarray) -> Dataset | None:
        if len(index) == 0:
            return None
        part = data.subset(torch.as_tensor(index))
        return replace(part, x=apply_preprocessing(spec.data.preprocess, fitted, part.x))

    return Splits(transformed(train), transformed(validation), transformed(test), fitted)  # type: ignore[arg-type]


def engine_callbacks(spec: ExperimentSpec) -> list[Callback]:
    """The callbacks the spec itself asks for (early stopping, diagnostics)."""
    callbacks: list[Callback] = []
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
        callbacks.append(TimeLimit(spec.max_runtime_s))
    return callbacks


def training_state(
    spec: ExperimentSpec, model: torch.nn.Module, device: torch.device, train: Dataset
) -> tuple[State, torch.optim.lr_scheduler.LRScheduler]:
    """The trainer's state for ``model`` (already on ``device``) with the spec's optimizer, loss and
    schedule, and its learning-rate scheduler; the first batch of ``train`` primes the state."""
    optimizer = spec.optimizer.build(model.parameters(), device)
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
) -> RunResult:
    """Train ``spec``; reports through ``callbacks``. Raises SpecInvalid before training starts
    if the spec does not fit its data; a run that fails while training returns status 'failed'.
    ``splits`` (prepared, e.g. one k-fold fold) replaces the spec's own split; ``resume_from`` is a
    trainer snapshot (a checkpoint) to continue from."""
    if splits is None and spec.data.split.kfold:
        raise ValueError("a k-fold spec trains once per fold: use run_kfold")
    started = time.perf_counter()
    plan = plan or plan_experiment(spec)
    torch_device = pick_device(device)
    torch.manual_seed(spec.seed)
    splits = (splits or prepare_splits(spec, plan.data)).to(torch_device)
    model, _ = build_model(
        spec.model, plan.input_shape or plan.data.sample_shape, plan.outputs, vocab_size=plan.vocab_size
    )
    initialise(model, spec.model.init)
    model.to(torch_device)
    state, scheduler = training_state(spec, model, torch_device, splits.train)
    history = History()
    generator = torch.Generator(device=torch_device).manual_seed(spec.seed)
    trainer = Trainer(
        state,
        [history, *engine_callbacks(spec), *callbacks],
        scheduler=scheduler,
        generator=generator,
        sync_every=sync_every,
    )
    if resume_from is not None:
        trainer.restore(resume_from)
    failure, retryable = None, False
    try:
        trainer.fit(splits.train, splits.validation, epochs=spec.epochs)
    except torch.OutOfMemoryError as exc:
        state.stop(f"out of memory on {torch_device}: {exc}".splitlines()[0], status="failed")
        retryable = True  # an infrastructure failure: another attempt (another device) may succeed
    if state.status == "failed":
        failure = state.stop_reason
    elif state.status == "running":
        state.status = "succeeded"
    final = dict(state.epoch_metrics)  # the last epoch's; with early stopping, also the best epoch's
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.best_epoch:
            final.update({"best_epoch": callback.best_epoch, f"best_{callback.monitor}": callback.best})
    if state.status == "succeeded" and splits.test is not None:
        trainer.evaluate(splits.test, "test")
        synced = trainer.sync()
        final.update({name: synced[name] for name in ("test_loss", "test_accuracy") if name in synced})
    return RunResult(
        status=state.status,
        failure=failure,
        stop_reason=state.stop_reason if state.status != "failed" else None,
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
    )


FOLD_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


@dataclass
class KFoldResult:
    """k trainings, one per fold: each fold's run, its row indices, and the held-out test rows."""

    status: str
    failure: str | None
    folds: list[RunResult]
    fold_indices: list[tuple[np.ndarray, np.ndarray]]  # (train, validation) rows of each fold
    test_indices: np.ndarray
    plan: Plan
    seconds: float

    def fold_summaries(self) -> list[dict[str, Any]]:
        return [
            {"fold": i + 1, "validation_samples": len(held), **result.summary()}
            for i, (result, (_, held)) in enumerate(zip(self.folds, self.fold_indices, strict=True))
        ]

    def aggregate(self) -> tuple[dict[str, float], dict[str, float]]:
        """Mean and standard deviation (population, as numpy's) of each metric over the folds."""
        mean, std = {}, {}
        for name in FOLD_METRICS:
            values = [r.final[name] for r in self.folds if name in r.final and math.isfinite(r.final[name])]
            if values and len(values) == len(self.folds):
                mean[name], std[name] = float(np.mean(values)), float(np.std(values))
        return mean, std

    def summary(self) -> dict[str, Any]:
        mean, std = self.aggregate()
        return {
            "status": self.status,
            "failure": self.failure,
            "kfold": len(self.folds),
            "params": self.plan.params,
            "seconds": round(self.seconds, 3),
            "folds": self.fold_summaries(),
            "mean": mean,
            "std": std,
        }


def run_kfold(
    spec: ExperimentSpec,
    *,
    callbacks_for: Callable[[int], Sequence[Callback]] | None = None,
    device: str | None = None,
    plan: Plan | None = None,
    sync_every: int = 50,
) -> KFoldResult:
    """k-fold cross-validation (``data.split.kfold``): one training per fold, each validated on
    its fold; the test split (if any) is held out of every fold. ``callbacks_for(i)`` gives the
    callbacks of fold i (1-based). Stops at the first fold that does not succeed."""
    started = time.perf_counter()
    plan = plan or plan_experiment(spec)
    indices, test = kfold_indices(plan.data, spec.data.split, seed=spec.seed, classify=spec.task != "regression")
    results: list[RunResult] = []
    status, failure = "succeeded", None
    for i, (train, held) in enumerate(indices, start=1):
        splits = prepare_splits(spec, plan.data, (train, held, test))  # preprocessing fitted on this fold's rows
        callbacks = callbacks_for(i) if callbacks_for is not None else ()
        result = run_experiment(
            spec, callbacks=callbacks, device=device, plan=plan, sync_every=sync_every, splits=splits
        )
        results.append(result)
        if result.status != "succeeded":
            status, failure = result.status, f"fold {i}: {result.failure or result.stop_reason}"
            break
    return KFoldResult(status, failure, results, indices[: len(results)], test, plan, time.perf_counter() - started)
