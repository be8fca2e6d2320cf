"""Callbacks the engine ships: metric history, the metrics file, early stopping, the time limit."""

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from core.engine.events import Callback, MetricPoint, State
from core.status import RunStatus


class History(Callback):
    """Keeps every synced metric point (the run's full record)."""

    def __init__(self) -> None:
        self.points: list[MetricPoint] = []

    def on_metrics(self, state: State) -> None:
        self.points.extend(state.new_points)

    def series(self, name: str) -> list[float]:
        return [p.value for p in self.points if p.name == name]


class MetricsFile(Callback):
    """Appends every synced metric point to a JSON-lines file. A resumed training keeps the points
    of the epochs its checkpoint covers (``keep_through_epoch``) and drops the rest, which it repeats."""

    def __init__(self, path: Path, *, keep_through_epoch: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = ""
        if keep_through_epoch is not None and path.is_file():
            lines = path.read_text().splitlines(keepends=True)
            kept = "".join(line for line in lines if json.loads(line)["epoch"] <= keep_through_epoch)
        path.write_text(kept)
        self.path = path

    def on_metrics(self, state: State) -> None:
        with self.path.open("a") as out:
            out.writelines(json.dumps(point.as_dict()) + "\n" for point in state.new_points)


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs;
    optionally restores the best weights at the end."""

    def __init__(self, monitor: str, patience: int, mode: str, min_delta: float, restore_best: bool) -> None:
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.waited = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def improved(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_validation_end(self, state: State) -> None:
        value = state.epoch_metrics[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch, self.waited = value, state.epoch, 0
            if self.restore_best:
                self.best_weights = copy.deepcopy(state.model.state_dict())
            return
        self.waited += 1
        if self.waited > self.patience:
            state.stop(
                f"early stopping: {self.monitor} has not improved for {self.waited} epochs "
                f"(best {self.best:.4g} at epoch {self.best_epoch})"
            )

    def on_fit_end(self, state: State) -> None:
        if self.restore_best and self.best_weights is not None and state.status != RunStatus.FAILED:
            state.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "waited": self.waited,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.waited = state["best"], state["best_epoch"], state["waited"]
        self.best_weights = state["best_weights"]


class TimeLimit(Callback):
    """Fails the run once it has trained for ``seconds`` in all (checked every step; no device
    sync). The time used is part of the checkpoint, so a resumed attempt has only what is left;
    ``shared_s`` is what the other folds of the same k-fold run took, which share the budget."""

    def __init__(self, seconds: float, *, shared_s: float = 0.0) -> None:
        self.seconds, self.shared_s = seconds, shared_s
        self.used = 0.0  # seconds trained by earlier attempts (restored from the checkpoint)
        self.started = math.inf
        self.deadline = math.inf

    def on_fit_start(self, state: State) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + self.seconds - self.shared_s - self.used

    def on_step_end(self, state: State) -> None:
        if time.monotonic() > self.deadline:
            shared = f", {self.shared_s:.1f} s of it by the other folds" if self.shared_s else ""
            state.stop(
                f"time limit: stopped after {self.seconds:g} s (max_runtime_s{shared}) at epoch {state.epoch}",
                status=RunStatus.FAILED,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"used": self.used + max(time.monotonic() - self.started, 0.0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.used = state["used"]
