"""Train / validation / test splitting (stratified, seeded) and k-fold cross-validation, with scikit-learn."""

import warnings

import numpy as np
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from core.data.dataset import Dataset
from core.errors import SpecError, SpecInvalid
from core.registry import SpecModel


class SplitSpec(SpecModel):
    """Fractions of the data held out for validation and test; the rest trains. With ``kfold`` the
    data left after the test split is cut into k folds, each the validation split of one training."""

    validation: float = Field(0.2, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0)
    stratify: bool = True
    kfold: int | None = Field(None, ge=2, le=100, description="k-fold cross-validation: k trainings, one per fold")

    @model_validator(mode="after")
    def _leaves_training_data(self) -> "SplitSpec":
        if self.kfold is not None:
            if "validation" in self.model_fields_set and self.validation > 0:
                raise PydanticCustomError(
                    "spec_rule",
                    "kfold uses each fold in turn as the validation split; it cannot be combined with 'validation'",
                    {"path": ["data", "split", "validation"], "hint": "remove 'validation' (or set it to 0)"},
                )
            self.validation = 0.0
        if self.validation + self.test >= 1.0:
            raise PydanticCustomError(
                "spec_rule",
                "validation + test must leave data to train on (sum < 1)",
                {"path": ["data", "split", "test"]},
            )
        return self

    @property
    def has_validation(self) -> bool:
        """Whether training sees a validation split (a fraction, or the held-out fold)."""
        return self.validation > 0 or self.kfold is not None


def _holdout(index: np.ndarray, labels: np.ndarray | None, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split  # here: validation splits only text data

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


def _labels(data: Dataset, split: SplitSpec, classify: bool) -> np.ndarray | None:
    return data.y.cpu().numpy() if split.stratify and classify else None


def split_indices(
    data: Dataset, split: SplitSpec, *, seed: int, classify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of train / validation / test (sorted); with kfold, validation is empty and
    train is every row outside the test split."""
    labels = _labels(data, split, classify)
    rest, test = _holdout(np.arange(len(data)), labels, split.test, seed)
    validation_share = split.validation / (1.0 - split.test)
    train, validation = _holdout(rest, labels, validation_share, seed)
    return train, validation, test


def kfold_indices(
    data: Dataset, split: SplitSpec, *, seed: int, classify: bool
) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """(train, validation) row indices of each of the k folds, and the held-out test rows.

    The rows outside the test split are shuffled with the seed and cut into k folds
    (StratifiedKFold when stratifying); each fold is the validation split exactly once."""
    from sklearn.model_selection import KFold, StratifiedKFold

    assert split.kfold is not None
    rest, _, test = split_indices(data, split, seed=seed, classify=classify)
    labels = _labels(data, split, classify)
    if len(rest) < split.kfold:
        raise SpecInvalid(
            [SpecError("/data/split/kfold", f"{split.kfold} folds need at least {split.kfold} training samples")]
        )
    splitter = (
        StratifiedKFold(split.kfold, shuffle=True, random_state=seed)
        if labels is not None
        else KFold(split.kfold, shuffle=True, random_state=seed)
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a class with fewer members than folds
            folds = [
                (rest[np.sort(train)], rest[np.sort(held)])
                for train, held in splitter.split(rest, labels[rest] if labels is not None else None)
            ]
    except (ValueError, UserWarning) as exc:
        raise SpecInvalid(
            [
                SpecError(
                    "/data/split/kfold",
                    f"cannot make {split.kfold} stratified folds: {exc}",
                    "use fewer folds or stratify: false",
                )
            ]
        ) from None
    return folds, test
