"""One training run from a validated spec: plan, split, preprocess, build, train, test."""

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.data.dataset import Dataset, Splits
from core.data.preprocess import apply_preprocessing, fit_preprocessing
from core.data.split import split_dataset
from core.engine.callbacks import EarlyStopping, History
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


def prepare_splits(spec: ExperimentSpec, data: Dataset) -> Splits:
    """Split, then fit preprocessing on the training part only and apply it to every part."""
    train, validation, test = split_dataset(data, spec.data.split, seed=spec.seed, classify=spec.task != "regression")
    fitted = fit_preprocessing(spec.data.preprocess, train.x)

    def transformed(part: Dataset | None) -> Dataset | None:
        if part is None:
            return None
        return Dataset(apply_preprocessing(spec.data.preprocess, fitted, part.x), part.y, part.kind, part.classes)

    return Splits(transformed(train), transformed(validation), transformed(test), fitted)


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
    return callbacks


def run_experiment(
    spec: ExperimentSpec,
    *,
    callbacks: Sequence[Callback] = (),
    device: str | None = None,
    plan: Plan | None = None,
    sync_every: int = 50,
) -> RunResult:
    """Train ``spec``; reports through ``callbacks``. Raises SpecInvalid before training starts
    if the spec does not fit its data; a run that fails while training returns status 'failed'."""
    started = time.perf_counter()
    plan = plan or plan_experiment(spec)
    torch_device = pick_device(device)
    torch.manual_seed(spec.seed)
    splits = prepare_splits(spec, plan.data).to(torch_device)
    model, _ = build_model(spec.model, plan.data.sample_shape, plan.outputs)
    initialise(model, spec.model.init)
    model.to(torch_device)
    optimizer = spec.optimizer.build(model.parameters(), torch_device)
    steps_per_epoch = math.ceil(len(splits.train) / spec.data.batch_size)
    scheduler = spec.schedule.build(optimizer, spec.epochs, steps_per_epoch)
    state = State(
        spec=spec,
        model=model,
        optimizer=optimizer,
        loss_fn=spec.loss.build(),
        device=torch_device,
        steps_per_epoch=steps_per_epoch,
    )
    state.batch = (splits.train.x[: spec.data.batch_size], splits.train.y[: spec.data.batch_size])
    history = History()
    trainer = Trainer(state, [history, *engine_callbacks(spec), *callbacks], scheduler=scheduler, sync_every=sync_every)
    generator = torch.Generator(device=torch_device).manual_seed(spec.seed)
    failure = None
    try:
        trainer.fit(splits.train, splits.validation, generator=generator, epochs=spec.epochs)
    except torch.OutOfMemoryError as exc:
        state.stop(f"out of memory on {torch_device}: {exc}".splitlines()[0], status="failed")
    if state.status == "failed":
        failure = state.stop_reason
    elif state.status == "running":
        state.status = "succeeded"
    final = dict(state.epoch_metrics)
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
    )
