"""What a spec's ``task`` can be, and how a model's outputs meet its targets."""

from typing import Literal

import torch

Task = Literal["classification", "binary", "regression"]


def fit_output(output: torch.Tensor, target_dims: int = 1) -> torch.Tensor:
    """A single output unit against one target value per sample: (N, 1) → (N,); else unchanged."""
    return output.squeeze(-1) if output.shape[-1] == 1 and target_dims == 1 else output


Monitor = Literal["val_loss", "val_accuracy", "train_loss", "train_accuracy"]  # per-epoch metrics a run can watch


def improves_when(metric: str) -> Literal["min", "max"]:
    """The direction in which ``metric`` gets better: accuracy up, losses down."""
    return "max" if metric.endswith("accuracy") else "min"
