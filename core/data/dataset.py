"""The in-memory data set every source produces, and its splits."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from core.data.text import Tokenizer

DataKind = Literal["tabular", "image", "sequence", "text"]


@dataclass
class Dataset:
    """Features ``x`` (N, *sample_shape) float32 and targets ``y`` (N,) or (N, k).

    Classification targets are class indices (int64) into ``classes``. Text data keeps its raw
    ``texts`` from the source; once encoded (``core.data.text.encode_dataset``), ``x`` holds int64
    token ids (N, steps), left-padded with 0, and ``tokenizer`` the vocabulary built on the
    training split. ``report`` records how a file was read (rows read, dropped, bad lines)."""

    x: torch.Tensor
    y: torch.Tensor
    kind: DataKind
    classes: list[str] | None = None
    texts: list[str] | None = None
    tokenizer: "Tokenizer | None" = None
    report: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.y.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: torch.Tensor) -> "Dataset":
        texts = [self.texts[i] for i in index.tolist()] if self.texts is not None else None
        return Dataset(self.x[index], self.y[index], self.kind, self.classes, texts, self.tokenizer, self.report)

    def to(self, device: torch.device) -> "Dataset":
        return Dataset(
            self.x.to(device), self.y.to(device), self.kind, self.classes, self.texts, self.tokenizer, self.report
        )


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
