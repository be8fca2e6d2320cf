"""Whether a run's training step is captured with torch.compile, and how: the spec's ``compile``,
its device, and the traits of its layers, schedule and optimizer decide it before training. A
step that cannot be captured trains eagerly, with the reason kept for the run's summary."""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from core.nn.build import LayerRow
from core.nn.layers import LAYERS
from core.spec.schema import ExperimentSpec


@dataclass(frozen=True)
class Capture:
    """How the step runs. ``compiled``: forward, loss and backward through torch.compile (``mode``
    "reduce-overhead", CUDA graphs, on CUDA; inductor's default elsewhere); ``optimizer``: its step
    compiled too, the lr a tensor. ``reason`` says why the step, or its optimizer part, is eager."""

    compiled: bool
    mode: str | None = None
    optimizer: bool = False
    reason: str | None = None


EAGER = Capture(False, reason="no capture was planned for this trainer")


def uncapturable_layer(rows: Sequence[LayerRow]) -> str | None:
    """The first layer (nested ones included) whose registry entry says it cannot be captured,
    named by its spec pointer, with why; None when every layer can."""
    for row in rows:
        why = LAYERS.get(row.type).uncapturable if row.type in LAYERS else None
        if why is not None:
            return f"{row.pointer} ({row.type}): {why}"
    return None


def _optimizer_reason(spec: ExperimentSpec) -> str | None:
    """Why the optimizer step is not compiled along with the rest, or None when it is."""
    if spec.precision == "fp16":
        return "the optimizer step runs eagerly: fp16's GradScaler steps it (skipping steps with inf gradients)"
    if spec.schedule.changes_momentum:
        return f"the optimizer step runs eagerly: {spec.schedule.type} changes its momentum every step"
    return None


def plan_capture(spec: ExperimentSpec, rows: Sequence[LayerRow], device: torch.device) -> Capture:
    """How ``spec`` (its model's layer table ``rows``) trains on ``device``."""
    if spec.compile == "off":
        return Capture(False, reason="compile is 'off'")
    if spec.compile == "auto" and device.type != "cuda":
        return Capture(False, reason=f"compile 'auto' captures the step on CUDA only (this run's device is {device})")
    layer = uncapturable_layer(rows)
    if layer is not None:
        return Capture(False, reason=layer)
    mode = "reduce-overhead" if device.type == "cuda" else None
    # On CUDA a fusable optimizer (SGD, Adam, AdamW) is fused: one kernel is its whole step, which
    # torch.compile would run outside its graph anyway; the others are compiled with a tensor lr.
    fused = device.type == "cuda" and spec.optimizer.fusable
    why = _optimizer_reason(spec)
    return Capture(True, mode, optimizer=why is None and not fused, reason=why)


def channels_last(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether ``model`` trains in channels_last: a CNN on CUDA (its convolutions' fast layout).
    Its weights are converted once, before anything wraps the model (``to_channels_last``), and
    the step converts each batch."""
    return device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def to_channels_last(model: torch.nn.Module, device: torch.device) -> bool:
    """Put ``model``'s weights in channels_last where ``channels_last`` says it trains so; whether
    it did. Before DDP wraps the model: its gradient buckets take the parameters' layout then."""
    if not channels_last(model, device):
        return False
    model.to(memory_format=torch.channels_last)
    return True
