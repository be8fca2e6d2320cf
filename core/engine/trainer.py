"""The training loop: batches from device-resident tensors, metrics accumulated on the device
and synced every ``sync_every`` steps (never every step), events fired for everything else."""

import math
from collections.abc import Sequence
from typing import Any

import torch

from core.data.dataset import Dataset
from core.engine.capture import EAGER, Capture
from core.engine.checkpoint import match_parameter_layouts
from core.engine.events import Callback, Event, MetricPoint, State
from core.engine.precision import MixedPrecision
from core.engine.step import TrainStep
from core.status import RunStatus
from core.task import fit_output

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")

# Regression targets with a std or |mean| above this give errors (and MSE gradients) that many
# times those on unit-scale targets, and the loss that number squared: a learning rate that suits
# standardized data (SGD 0.01) then diverges, as diabetes (mean 152, std 77) does in epoch 1 or 2.
FAR_FROM_UNIT_SCALE = 10.0


def unscaled_targets(y: torch.Tensor) -> str | None:
    """How regression targets are far from unit scale (a target's std or |mean| over
    ``FAR_FROM_UNIT_SCALE``), or None when they are not; one host sync."""
    flat = y.float().reshape(len(y), -1)
    mean, std = flat.mean(0), flat.std(0, unbiased=False)
    largest = int(torch.maximum(mean.abs(), std).argmax())
    m, s = torch.stack([mean[largest], std[largest]]).tolist()
    if max(abs(m), s) <= FAR_FROM_UNIT_SCALE:
        return None
    return f"the training targets are far from unit scale (mean {m:.3g}, std {s:.3g})"


def weight_tensors(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Weight matrices and kernels (what L1/L2 penalise and diagnostics watch); no biases or norms."""
    return [(name, p) for name, p in model.named_parameters() if p.dim() > 1 and p.requires_grad]


def current_lr(optimizer: torch.optim.Optimizer) -> torch.Tensor | float:
    """The first group's lr now: a copy when it is a tensor (a schedule changes that one in place)."""
    lr = optimizer.param_groups[0]["lr"]
    return lr.detach().clone() if isinstance(lr, torch.Tensor) else lr


class Trainer:
    def __init__(
        self,
        state: State,
        callbacks: Sequence[Callback],
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau,
        generator: torch.Generator,
        sync_every: int = 50,
        capture: Capture = EAGER,
    ) -> None:
        self.state = state
        self.generator = generator
        state.snapshot = self.snapshot
        self.callbacks = list(callbacks)
        self.handlers = {event: [cb for cb in self.callbacks if cb.handles(event)] for event in Event}
        self.scheduler = scheduler
        self.plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        self.sync_every = sync_every
        spec = state.spec
        self.classify = spec.task in ("classification", "binary")
        self.augment = list(spec.data.augment)
        self.l1, self.l2 = spec.regularization.l1, spec.regularization.l2
        self.penalised = [p for _, p in weight_tensors(state.model)]
        self.target_scale: str | None = None  # set by ``fit`` for regression targets far from unit scale
        precision = MixedPrecision.of(spec.precision, state.device)
        state.autocast = precision.autocast
        self.observers = [cb for cb in self.callbacks if type(cb).observes is not Callback.observes]
        self.train_step = TrainStep(
            model=state.forward or state.model,  # DDP around the model on several ranks
            optimizer=state.optimizer,
            loss_fn=state.loss_fn,
            precision=precision,
            capture=capture,
            penalty=self.penalty if self.l1 or self.l2 else None,
            score=self.correct if self.classify else None,
        )

    def fire(self, event: Event) -> None:
        for callback in self.handlers[event]:
            callback.run_event(event, self.state)

    def sync(self) -> dict[str, float]:
        """Bring queued metrics (and their ``keep`` flags) to the host in one transfer and hand the
        kept ones to the callbacks."""
        state = self.state
        pending = state.pending
        if not pending:
            return {}
        flagged = [(i, keep) for i, (*_, keep) in enumerate(pending) if keep is not None]
        row = torch.stack(
            [torch.as_tensor(v, dtype=torch.float32, device=state.device).reshape(()) for *_, v, _ in pending]
            + [keep.to(torch.float32).reshape(()) for _, keep in flagged]
        ).tolist()
        dropped = {i for (i, _), flag in zip(flagged, row[len(pending) :], strict=True) if not flag}
        state.new_points = [
            MetricPoint(step, epoch, name, value)
            for i, ((step, epoch, name, *_), value) in enumerate(zip(pending, row, strict=False))
            if i not in dropped
        ]
        state.pending = []
        self.fire(Event.METRICS)
        return {p.name: p.value for p in state.new_points}

    def penalty(self) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        if self.l2:
            total = total + self.l2 * sum(p.pow(2).sum() for p in self.penalised)
        if self.l1:
            total = total + self.l1 * sum(p.abs().sum() for p in self.penalised)
        return total

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Right answers in a batch; a mixed target (mixup) counts as its dominant class."""
        if output.shape[-1] == 1 and target.dim() == 1:
            return ((fit_output(output) > 0) == (target > 0.5)).sum()
        if target.dim() == 2:  # class probabilities
            target = target.argmax(-1)
        return (output.argmax(-1) == target).sum()

    @torch.no_grad()
    def evaluate(self, data: Dataset, prefix: str) -> None:
        """Loss (and accuracy) over a whole split, queued as ``{prefix}_loss`` / ``{prefix}_accuracy``."""
        state = self.state
        state.model.eval()
        loss_sum = torch.zeros((), device=state.device)
        correct = torch.zeros((), device=state.device)
        chunk = max(state.spec.data.batch_size, 1024)
        for start in range(0, len(data), chunk):
            x, y = data.x[start : start + chunk], data.y[start : start + chunk]
            with state.autocast():
                output = state.model(x)
                loss_sum += state.loss_fn(fit_output(output, y.dim()), y) * len(x)
            if self.classify:
                correct += self.correct(output, y)
        state.record(f"{prefix}_loss", loss_sum / len(data))
        if self.classify:
            state.record(f"{prefix}_accuracy", correct / len(data))

    def after_backward(self) -> None:
        self.fire(Event.AFTER_BACKWARD)

    def train_epoch(self, train: Dataset) -> None:
        state = self.state
        ranks = state.ranks
        state.model.train()
        batch_size = state.spec.data.batch_size
        order = torch.randperm(len(train), device=state.device, generator=self.generator)  # the same on every rank
        loss_sum = torch.zeros((), device=state.device)
        correct = torch.zeros((), device=state.device)
        for start in range(0, len(train), batch_size):
            index, weight = ranks.shard(order[start : start + batch_size])  # all of it, alone
            x, y = train.x[index], train.y[index]
            for augmentation in self.augment:
                x, y = augmentation.apply(x, y)
            state.batch = (x, y)
            self.fire(Event.BATCH_START)
            observed = any(callback.observes(state.step) for callback in self.observers)
            loss, right = self.train_step(x, y, observed=observed, after_backward=self.after_backward, weight=weight)
            if not self.plateau:
                self.scheduler.step()
            if weight:  # a rank's placeholder row (weight 0) is not counted
                loss_sum += loss * len(index)
                if right is not None:
                    correct += right
            state.step += 1
            self.fire(Event.STEP_END)
            if state.step % self.sync_every == 0:
                seen = min(start + batch_size, len(train))
                state.record("train_loss_running", ranks.total(loss_sum) / seen)
                self.check_finite(self.sync())
                ranks.follow_writer(state)  # the ranks stop together, at a sync point
                if state.stopping:
                    return
            elif state.stopping and not ranks.distributed:
                return
        totals = ranks.total(torch.stack([loss_sum, correct]))
        state.record("train_loss", totals[0] / len(train))
        if self.classify:
            state.record("train_accuracy", totals[1] / len(train))
        ranks.follow_writer(state)  # a stop rank 0 took since the last sync point (the time limit)

    def check_finite(self, synced: dict[str, float]) -> None:
        for name in ("train_loss_running", "train_loss"):
            value = synced.get(name)
            if value is not None and not math.isfinite(value):
                lr = float(self.state.optimizer.param_groups[0]["lr"])
                advice = "lower the learning rate or check the data"
                if self.target_scale is not None:
                    advice = (
                        f"{self.target_scale}: scale them with /data/target_preprocess "
                        '[{"type": "standardize"}], or lower the learning rate'
                    )
                self.state.stop(
                    f"diverged: the training loss became {value} by step {self.state.step} "
                    f"(epoch {self.state.epoch}, lr {lr:.3g}); {advice}",
                    status=RunStatus.FAILED,
                )

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly from the end of the current epoch."""
        state = self.state
        return {
            "epoch": state.epoch,
            "step": state.step,
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "callbacks": {key: callback.state_dict() for key, callback in self._stateful_callbacks().items()},
            **self._scaler_state(),
        }

    def _scaler_state(self) -> dict[str, Any]:
        """fp16's GradScaler (its scale and growth count), when the run has one."""
        scaler = self.train_step.precision.scaler
        return {"grad_scaler": scaler.state_dict()} if scaler is not None else {}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Continue from ``snapshot`` (taken by ``snapshot`` at an epoch end of the same spec)."""
        state = self.state
        state.epoch, state.step = snapshot["epoch"], snapshot["step"]
        state.model.load_state_dict(snapshot["model"])
        state.optimizer.load_state_dict(snapshot["optimizer"])
        match_parameter_layouts(state.optimizer)  # a channels_last CNN's, stored contiguous
        self.scheduler.load_state_dict(snapshot["scheduler"])
        torch.set_rng_state(snapshot["rng"])
        self.generator.set_state(snapshot["generator"])
        for key, callback in self._stateful_callbacks().items():
            callback.load_state_dict(snapshot["callbacks"][key])
        scaler = self.train_step.precision.scaler
        if scaler is not None and snapshot.get("grad_scaler"):
            scaler.load_state_dict(snapshot["grad_scaler"])

    def _stateful_callbacks(self) -> dict[str, Callback]:
        """Callbacks that carry state (early stopping's counters, ...), keyed by class and order."""
        keyed: dict[str, Callback] = {}
        for callback in self.callbacks:
            if callback.state_dict():
                name = type(callback).__name__
                keyed[f"{name}.{sum(key.startswith(name + '.') for key in keyed)}"] = callback
        return keyed

    def fit(self, train: Dataset, validation: Dataset | None, *, epochs: int) -> None:
        """Train from the epoch after ``state.epoch`` (0, or a restored snapshot's) to ``epochs``."""
        state = self.state
        if state.spec.task == "regression":  # once, before the first step
            self.target_scale = unscaled_targets(train.y)
        self.fire(Event.FIT_START)
        for epoch in range(state.epoch + 1, epochs + 1):
            state.epoch = epoch
            self.fire(Event.EPOCH_START)
            self.train_epoch(train)
            if state.stopping:
                break
            if validation is not None and state.ranks.writer:
                self.evaluate(validation, "val")
            state.record("lr", current_lr(state.optimizer))
            synced = state.ranks.from_writer(self.sync())  # rank 0 evaluates; every rank reads its numbers
            self.check_finite(synced)
            state.epoch_metrics = {name: synced[name] for name in EPOCH_METRICS if name in synced}
            if state.stopping:
                break
            if self.plateau:
                self.scheduler.step(state.epoch_metrics[state.spec.schedule.monitor])
            self.fire(Event.VALIDATION_END)
            self.fire(Event.EPOCH_END)
            state.ranks.follow_writer(state)
            if state.stopping:
                break
        self.sync()
        self.fire(Event.FIT_END)
