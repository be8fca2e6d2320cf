"""The in-memory data set every source produces, and its splits."""

from dataclasses import dataclass, field
from typing import Literal

import torch

DataKind = Literal["tabular", "image", "sequence"]


@dataclass
class Dataset:
    """Features ``x`` (N, *sample_shape) float32 and targets ``y`` (N,) or (N, k).

    Classification targets are class indices (int64) into ``classes``."""

    x: torch.Tensor
    y: torch.Tensor
    kind: DataKind
    classes: list[str] | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: torch.Tensor) -> "Dataset":
        return Dataset(self.x[index], self.y[index], self.kind, self.classes)

    def to(self, device: torch.device) -> "Dataset":
        return Dataset(self.x.to(device), self.y.to(device), self.kind, self.classes)


@dataclass
class Splits:
    """Train / validation / test parts (validation and test may be empty)."""

    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    fitted_preprocessing: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> "Splits":
        return Splits(
            self.train.to(device),
            self.validation.to(device) if self.validation is not None else None,
            self.test.to(device) if self.test is not None else None,
            self.fitted_preprocessing,
        )
