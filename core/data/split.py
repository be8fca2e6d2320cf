"""Train / validation / test splitting (stratified, seeded) with scikit-learn."""

import numpy as np
import torch
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from sklearn.model_selection import train_test_split

from core.data.dataset import Dataset
from core.spec.base import SpecModel
from core.spec.errors import SpecError, SpecInvalid


class SplitSpec(SpecModel):
    """Fractions of the data held out for validation and test; the rest trains."""

    validation: float = Field(0.2, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    stratify: bool = True

    @model_validator(mode="after")
    def _leaves_training_data(self) -> "SplitSpec":
        if self.validation + self.test >= 1.0:
            raise PydanticCustomError(
                "spec_rule",
                "validation + test must leave data to train on (sum < 1)",
                {"path": ["data", "split", "test"]},
            )
        return self


def _holdout(index: np.ndarray, labels: np.ndarray | None, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if fraction == 0.0:
        return index, index[:0]
    try:
        kept, held = train_test_split(
            index, test_size=fraction, random_state=seed, stratify=labels[index] if labels is not None else None
        )
    except ValueError as exc:
        raise SpecInvalid(
            [
                SpecError(
                    "/data/split",
                    f"cannot split {len(index)} samples this way: {exc}",
                    "use smaller fractions, more data, or stratify: false",
                )
            ]
        ) from None
    return np.sort(kept), np.sort(held)


def split_dataset(
    data: Dataset, split: SplitSpec, *, seed: int, classify: bool
) -> tuple[Dataset, Dataset | None, Dataset | None]:
    """Split into train / validation / test; stratified on the labels when asked and classifying."""
    labels = data.y.numpy() if split.stratify and classify else None
    index = np.arange(len(data))
    rest, test = _holdout(index, labels, split.test, seed)
    validation_share = split.validation / (1.0 - split.test)
    train, validation = _holdout(rest, labels, validation_share, seed)

    def part(ix: np.ndarray) -> Dataset | None:
        return data.subset(torch.as_tensor(ix)) if len(ix) else None

    return data.subset(torch.as_tensor(train)), part(validation), part(test)
