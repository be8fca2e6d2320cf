"""The training loop's events, its state, and the callback base that subscribes to events."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import torch

from core.engine.distributed import Ranks
from core.status import RunStatus

if TYPE_CHECKING:
    from core.spec.schema import ExperimentSpec


class Event(StrEnum):
    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    BATCH_START = "batch_start"
    AFTER_BACKWARD = "after_backward"
    STEP_END = "step_end"
    METRICS = "metrics"  # a batch of metric points was synced from the device
    VALIDATION_END = "validation_end"
    EPOCH_END = "epoch_end"
    FIT_END = "fit_end"


@dataclass(frozen=True)
class MetricPoint:
    """One measured value: ``step`` counts optimizer steps from 0; ``epoch`` is 1-based when per-epoch."""

    step: int
    epoch: int
    name: str
    value: float

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "name": self.name, "value": self.value}


@dataclass
class State:
    """Everything a callback may read; callbacks change the run only via ``record`` and ``stop``."""

    spec: ExperimentSpec
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: torch.nn.Module
    device: torch.device
    steps_per_epoch: int
    epoch: int = 0  # the current (1-based) epoch once started
    step: int = 0  # optimizer steps taken
    batch: tuple[torch.Tensor, torch.Tensor] | None = None
    epoch_metrics: dict[str, float] = field(default_factory=dict)
    stop_reason: str | None = None
    status: RunStatus = RunStatus.RUNNING
    fold: int | None = None  # the 1-based fold of a k-fold run's training
    pending: list[tuple[int, int, str, torch.Tensor | float, torch.Tensor | None]] = field(default_factory=list)
    snapshot: Callable[[], dict[str, Any]] | None = None  # the trainer's, for checkpoints
    autocast: Callable[[], AbstractContextManager] = nullcontext  # the run's precision, around a forward pass
    new_points: list[MetricPoint] = field(default_factory=list)
    ranks: Ranks = field(default_factory=Ranks)  # this process's place in a multi-device training
    forward: torch.nn.Module | None = None  # what the training steps call, when not ``model`` (DDP around it)

    def record(
        self, name: str, value: torch.Tensor | float, *, step: int | None = None, keep: torch.Tensor | None = None
    ) -> None:
        """Queue a metric; device tensors stay on the device until the next sync. ``keep`` (a bool
        tensor on the device) drops the point at the sync when false, so the device decides
        without a host sync whether a point is kept."""
        self.pending.append((self.step if step is None else step, self.epoch, name, value, keep))

    def stop(self, reason: str, status: RunStatus = RunStatus.SUCCEEDED) -> None:
        """Ask the loop to stop after the current step (early stopping, cancellation, divergence)."""
        if self.stop_reason is None:
            self.stop_reason, self.status = reason, status

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None


HOOKS = frozenset(f"on_{event.value}" for event in Event)


class Callback:
    """Subscribes to events by overriding ``on_<event>`` methods (``on_epoch_end(state)``, ...);
    every hook is declared here as a no-op, and a subclass defining an ``on_`` method that names no
    event is a TypeError at class creation, so a misspelt hook cannot pass silently."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = sorted(name for name in vars(cls) if name.startswith("on_") and name not in HOOKS)
        if unknown:
            names = ", ".join(unknown)
            raise TypeError(f"{cls.__name__} defines {names}, which no event fires; hooks: {sorted(HOOKS)}")

    def run_event(self, event: Event, state: State) -> None:
        getattr(self, f"on_{event.value}")(state)

    def observes(self, step: int) -> bool:
        """Whether this callback looks inside the model at ``step`` (forward hooks, gradients):
        that step runs on the eager module, never a captured one."""
        return False

    def handles(self, event: Event) -> bool:
        """Whether this callback does anything on ``event`` (the loop skips the no-ops)."""
        cls, hook = type(self), f"on_{event.value}"
        return cls.run_event is not Callback.run_event or getattr(cls, hook) is not getattr(Callback, hook)

    def on_fit_start(self, state: State) -> None: ...
    def on_epoch_start(self, state: State) -> None: ...
    def on_batch_start(self, state: State) -> None: ...
    def on_after_backward(self, state: State) -> None: ...
    def on_step_end(self, state: State) -> None: ...
    def on_metrics(self, state: State) -> None: ...
    def on_validation_end(self, state: State) -> None: ...
    def on_epoch_end(self, state: State) -> None: ...
    def on_fit_end(self, state: State) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
