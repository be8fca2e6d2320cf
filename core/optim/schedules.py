"""Learning-rate schedules as a multiplier of the base lr over (fractional) epochs, stepped every
optimizer step; ``reduce_on_plateau`` reacts to a validation metric instead."""

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field

from core.registry import SpecRegistry, TypedSpec

SCHEDULES = SpecRegistry("schedule")


class ScheduleSpec(TypedSpec):
    # Whether it changes the optimizer's momentum (betas) as well as its lr every step: a compiled
    # optimizer step takes the lr as a tensor, but would be compiled again for each new momentum.
    changes_momentum: ClassVar[bool] = False

    def multiplier(self, epoch: float, epochs: int) -> float:
        """lr / base lr at ``epoch`` (fractional, 0-based) of ``epochs``."""
        raise NotImplementedError

    def build(
        self, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        """A scheduler stepped once per optimizer step."""
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: self.multiplier(step / steps_per_epoch, epochs)
        )


@SCHEDULES.add
class Constant(ScheduleSpec):
    type: Literal["constant"] = "constant"

    def multiplier(self, epoch: float, epochs: int) -> float:
        return 1.0


@SCHEDULES.add
class StepDecay(ScheduleSpec):
    """lr · gamma^floor(epoch / step_size)."""

    type: Literal["step"] = "step"
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0.0, le=1.0)

    def multiplier(self, epoch: float, epochs: int) -> float:
        return self.gamma ** math.floor(epoch / self.step_size)


@SCHEDULES.add
class ExponentialDecay(ScheduleSpec):
    """lr · gamma^floor(epoch)."""

    type: Literal["exponential"] = "exponential"
    gamma: float = Field(0.95, gt=0.0, le=1.0)

    def multiplier(self, epoch: float, epochs: int) -> float:
        return self.gamma ** math.floor(epoch)


def _cosine(progress: float, floor: float) -> float:
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


@SCHEDULES.add
class Cosine(ScheduleSpec):
    """Half a cosine from lr down to min_factor · lr over the run."""

    type: Literal["cosine"] = "cosine"
    min_factor: float = Field(0.0, ge=0.0, le=1.0)

    def multiplier(self, epoch: float, epochs: int) -> float:
        return _cosine(epoch / epochs, self.min_factor)


@SCHEDULES.add
class WarmupCosine(ScheduleSpec):
    """Linear warmup from 0 over ``warmup_epochs``, then cosine decay to min_factor · lr."""

    type: Literal["warmup_cosine"] = "warmup_cosine"
    warmup_epochs: float = Field(2.0, ge=0.0)
    min_factor: float = Field(0.0, ge=0.0, le=1.0)

    def multiplier(self, epoch: float, epochs: int) -> float:
        if epoch < self.warmup_epochs:
            return epoch / self.warmup_epochs
        return _cosine((epoch - self.warmup_epochs) / max(epochs - self.warmup_epochs, 1e-9), self.min_factor)


@SCHEDULES.add
class WarmupLinear(ScheduleSpec):
    """Linear warmup from 0 over ``warmup_epochs``, then linear decay to 0 at the last epoch."""

    type: Literal["warmup_linear"] = "warmup_linear"
    warmup_epochs: float = Field(2.0, ge=0.0)

    def multiplier(self, epoch: float, epochs: int) -> float:
        if epoch < self.warmup_epochs:
            return epoch / self.warmup_epochs
        return max(0.0, 1.0 - (epoch - self.warmup_epochs) / max(epochs - self.warmup_epochs, 1e-9))


@SCHEDULES.add
class OneCycle(ScheduleSpec):
    """Smith's one-cycle: cosine up from max_lr/div_factor to ``max_lr`` over ``pct_start`` of the run, then down."""

    type: Literal["one_cycle"] = "one_cycle"
    changes_momentum: ClassVar = True
    max_lr: float = Field(0.01, gt=0.0, le=10.0)
    pct_start: float = Field(0.3, gt=0.0, lt=1.0)
    div_factor: float = Field(25.0, ge=1.0)

    def build(
        self, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=self.max_lr,
            total_steps=epochs * steps_per_epoch + 1,
            pct_start=self.pct_start,
            div_factor=self.div_factor,
        )


@SCHEDULES.add
class ReduceOnPlateau(ScheduleSpec):
    """Multiply lr by ``factor`` when ``monitor`` has not improved for ``patience`` epochs."""

    type: Literal["reduce_on_plateau"] = "reduce_on_plateau"
    monitor: Literal["val_loss", "train_loss"] = "val_loss"
    factor: float = Field(0.1, gt=0.0, lt=1.0)
    patience: int = Field(3, ge=0)
    min_lr: float = Field(0.0, ge=0.0)

    def build(
        self, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int
    ) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=self.factor, patience=self.patience, min_lr=self.min_lr
        )
