"""The in-memory data set every source produces, its splits, and targets as the task needs them."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from core.errors import SpecError, SpecInvalid

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
    """Train / validation / test parts (validation and test may be empty), and the preprocessing
    fitted on the training part: of the features, and of the targets (``data.target_preprocess``)."""

    train: Dataset
    validation: Dataset | None
    test: Dataset | None
    fitted_preprocessing: dict[str, torch.Tensor] = field(default_factory=dict)
    fitted_target_preprocessing: dict[str, torch.Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> "Splits":
        return Splits(
            self.train.to(device),
            self.validation.to(device) if self.validation is not None else None,
            self.test.to(device) if self.test is not None else None,
            self.fitted_preprocessing,
            self.fitted_target_preprocessing,
        )


def targets_for_task(y: np.ndarray, task: str, at: str) -> tuple[torch.Tensor, list[str] | None]:
    """Targets as the task needs them: class indices (classification), 0/1 floats (binary), floats."""
    if task == "regression":
        try:
            return torch.as_tensor(np.asarray(y, dtype=np.float32)), None
        except (TypeError, ValueError):
            raise SpecInvalid([SpecError(at, "regression targets must be numbers")]) from None
    if y.ndim != 1:
        raise SpecInvalid([SpecError(at, f"{task} targets must be one label per sample")])
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
        raise SpecInvalid(
            [
                SpecError(
                    at,
                    f"{task} targets must be class labels, not fractional values",
                    "use task 'regression' for continuous targets",
                )
            ]
        )
    classes, index = np.unique(y, return_inverse=True)
    names = [str(c.item() if hasattr(c, "item") else c) for c in classes]
    if task == "binary":
        if len(classes) != 2:
            raise SpecInvalid(
                [
                    SpecError(
                        at,
                        f"task 'binary' needs exactly 2 classes; the data has {len(classes)}",
                        "use task 'classification' with cross_entropy",
                    )
                ]
            )
        return torch.as_tensor(index, dtype=torch.float32), names
    if len(classes) < 2:
        raise SpecInvalid([SpecError(at, "classification needs at least 2 classes in the data")])
    return torch.as_tensor(index, dtype=torch.int64), names
