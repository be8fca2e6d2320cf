"""Checkpoints: a trainer snapshot written as safetensors (every tensor) plus JSON (the rest),
atomically and synced to the disk, so a run whose worker dies continues from its last completed
checkpoint, or from the one before when that one cannot be read."""

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from core import durable
from core.engine.events import Callback, State

TENSORS, TREE = "tensors.safetensors", "state.json"
log = logging.getLogger("trainyard.checkpoint")


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a training saves a checkpoint: every ``every_n_epochs`` epochs, but not twice within
    ``min_interval_s`` seconds (short epochs would spend their time writing checkpoints)."""

    every_n_epochs: int = 1
    min_interval_s: float = 10.0


def flatten(tree: Any, tensors: dict[str, torch.Tensor], path: str = "t") -> Any:
    """A JSON-ready copy of ``tree`` whose tensors are moved into ``tensors`` (by path)."""
    if isinstance(tree, torch.Tensor):
        tensors[path] = tree.detach().to("cpu").contiguous()
        return {"__tensor__": path}
    if isinstance(tree, dict):
        if all(isinstance(key, str) for key in tree):
            return {key: flatten(value, tensors, f"{path}.{key}") for key, value in tree.items()}
        return {"__items__": [[key, flatten(value, tensors, f"{path}.{key}")] for key, value in tree.items()]}
    if isinstance(tree, tuple):
        return {"__tuple__": [flatten(value, tensors, f"{path}.{i}") for i, value in enumerate(tree)]}
    if isinstance(tree, list):
        return [flatten(value, tensors, f"{path}.{i}") for i, value in enumerate(tree)]
    return tree


def unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__items__" in tree:
            return {key: unflatten(value, tensors) for key, value in tree["__items__"]}
        if "__tuple__" in tree:
            return tuple(unflatten(value, tensors) for value in tree["__tuple__"])
        return {key: unflatten(value, tensors) for key, value in tree.items()}
    if isinstance(tree, list):
        return [unflatten(value, tensors) for value in tree]
    return tree


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimizer state tensor shaped as its parameter (momentum, moments) the parameter's
    layout. A checkpoint stores them contiguous, and ``load_state_dict`` keeps that, but a CNN on
    CUDA trains in channels_last: a fused optimizer pairs a weight's and its state's elements in
    memory order, so with other strides it updates the wrong elements."""
    for parameter, values in optimizer.state.items():
        for key, value in values.items():
            if (
                isinstance(value, torch.Tensor)
                and value.shape == parameter.shape
                and value.stride() != parameter.stride()
            ):
                # empty_like keeps the parameter's strides (a dense tensor's memory format)
                values[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def save_checkpoint(folder: Path, snapshot: dict[str, Any]) -> None:
    """Write ``snapshot`` to ``folder``: in full and synced to the disk in a sibling folder, which
    then takes its place; the checkpoint it replaces is kept as the previous one (``.old``)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = flatten(snapshot, tensors)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    durable.write_synced(partial / TENSORS, save(tensors))
    durable.write_synced(partial / TREE, json.dumps(tree).encode())
    durable.sync_folder(partial)
    if folder.exists():  # else the previous one is already .old (a save died between the moves)
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(partial, folder)
    durable.sync_folder(folder.parent)


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The newest complete checkpoint in ``folder``, else the previous one (``.old``: when the
    newest is missing, or cannot be read: a truncated or corrupt file is logged and skipped)."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        if not ((candidate / TREE).is_file() and (candidate / TENSORS).is_file()):
            continue
        try:
            return unflatten(json.loads((candidate / TREE).read_text()), load_file(candidate / TENSORS))
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "checkpoint %s cannot be read (%s: %s); trying the one before", candidate, type(exc).__name__, exc
            )
    return None


def remove_checkpoint(folder: Path) -> None:
    """Delete the checkpoint in ``folder``, the previous one and any half-written next one."""
    for candidate in (folder, folder.with_name(folder.name + ".old"), folder.with_name(folder.name + ".partial")):
        shutil.rmtree(candidate, ignore_errors=True)


class Checkpointer(Callback):
    """Saves the trainer's snapshot every ``every_n_epochs`` epochs, but not twice within
    ``min_interval_s`` seconds (short epochs would spend their time writing checkpoints)."""

    def __init__(self, folder: Path, every_n_epochs: int, min_interval_s: float = 0.0) -> None:
        self.folder, self.every, self.min_interval_s = folder, every_n_epochs, min_interval_s
        self.last = -math.inf

    def on_epoch_end(self, state: State) -> None:
        due = state.epoch % self.every == 0 and time.monotonic() - self.last >= self.min_interval_s
        if due and state.snapshot is not None and not state.stopping:
            save_checkpoint(self.folder, state.snapshot())
            self.last = time.monotonic()
