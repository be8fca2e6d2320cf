"""Data sources: scikit-learn's bundled sets, synthetic generators and inline arrays.
Nothing is downloaded: every built-in set ships inside a package or is generated."""

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from core.data.dataset import DataKind, Dataset
from core.registry import Registry
from core.spec.base import SpecRegistry, TypedSpec
from core.spec.errors import SpecError, SpecInvalid

SOURCES = SpecRegistry("data source")
BUILTIN_SETS: Registry[Callable[..., tuple[np.ndarray, np.ndarray, DataKind]]] = Registry("built-in data set")


@BUILTIN_SETS.register("digits")
def _digits(**_: object) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """8×8 handwritten digits (1797 images, 10 classes), as (1, 8, 8) images."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.reshape(-1, 1, 8, 8), y, "image"


def _sklearn_table(loader_name: str) -> Callable[..., tuple[np.ndarray, np.ndarray, DataKind]]:
    def load(**_: object) -> tuple[np.ndarray, np.ndarray, DataKind]:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, loader_name)(return_X_y=True)
        return x, y, "tabular"

    load.__doc__ = f"scikit-learn's {loader_name.removeprefix('load_')} table"
    return load


for _name in ("iris", "wine", "breast_cancer", "diabetes"):
    BUILTIN_SETS.register(_name)(_sklearn_table(f"load_{_name}"))


@BUILTIN_SETS.register("moons")
def _moons(*, n_samples: int, noise: float, seed: int, **_: object) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """Two interleaving half circles (2 classes)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return x, y, "tabular"


@BUILTIN_SETS.register("spirals")
def _spirals(
    *, n_samples: int, noise: float, seed: int, classes: int, **_: object
) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """``classes`` interleaved spiral arms in 2-D (not linearly separable)."""
    rng = np.random.default_rng(seed)
    per = n_samples // classes
    radius = np.tile(np.linspace(0.05, 1.0, per), classes)
    label = np.repeat(np.arange(classes), per)
    angle = label * 2 * np.pi / classes + radius * 4.0 + rng.normal(0.0, noise, radius.shape)
    x = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    return x, label, "tabular"


@BUILTIN_SETS.register("sine_series")
def _sine_series(
    *, n_samples: int, noise: float, seed: int, length: int, **_: object
) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """Windows of noisy sine waves of random frequency and phase, shape (length, 1);
    the target is the next value (forecasting)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)
    freq = rng.uniform(0.05, 0.25, (n_samples, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_samples, 1))
    wave = np.sin(2 * np.pi * freq * t + phase) + rng.normal(0.0, noise, (n_samples, length + 1))
    return wave[:, :length, None], wave[:, length], "sequence"


class SourceSpec(TypedSpec):
    def load(self, *, task: str, seed: int) -> Dataset:
        raise NotImplementedError


def _targets(y: np.ndarray, task: str, at: str) -> tuple[torch.Tensor, list[str] | None]:
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


@SOURCES.add
class Builtin(SourceSpec):
    """A bundled or generated set: digits, iris, wine, breast_cancer, diabetes, moons, spirals, sine_series."""

    type: Literal["builtin"] = "builtin"
    name: Literal["digits", "iris", "wine", "breast_cancer", "diabetes", "moons", "spirals", "sine_series"]
    n_samples: int = Field(1000, ge=10, le=1_000_000, description="generated sets only")
    noise: float = Field(0.1, ge=0.0, description="generated sets only")
    length: int = Field(32, ge=2, le=10_000, description="sine_series: steps per window")
    classes: int = Field(3, ge=2, le=20, description="spirals: number of arms")

    def load(self, *, task: str, seed: int) -> Dataset:
        x, y, kind = BUILTIN_SETS.get(self.name)(
            n_samples=self.n_samples, noise=self.noise, seed=seed, length=self.length, classes=self.classes
        )
        targets, classes = _targets(y, task, "/data/source/name")
        return Dataset(torch.as_tensor(x, dtype=torch.float32), targets, kind, classes)


@SOURCES.add
class Inline(SourceSpec):
    """Small data sent inside the spec: ``x`` rows (any rank) and ``y`` labels or values."""

    type: Literal["inline"] = "inline"
    x: list = Field(min_length=2, max_length=100_000)
    y: list = Field(min_length=2, max_length=100_000)

    @model_validator(mode="after")
    def _same_length(self) -> "Inline":
        if len(self.x) != len(self.y):
            raise PydanticCustomError(
                "spec_rule",
                "x has {nx} rows but y has {ny}",
                {"nx": len(self.x), "ny": len(self.y), "path": ["data", "source", "y"]},
            )
        return self

    def load(self, *, task: str, seed: int) -> Dataset:
        try:
            x = np.asarray(self.x, dtype=np.float32)
        except (TypeError, ValueError):
            raise SpecInvalid(
                [
                    SpecError(
                        "/data/source/x", "x must be a rectangular array of numbers", "every row needs the same shape"
                    )
                ]
            ) from None
        kind: DataKind = {1: "tabular", 2: "tabular", 3: "sequence"}.get(x.ndim, "image")
        if x.ndim == 1:
            x = x[:, None]
        targets, classes = _targets(np.asarray(self.y), task, "/data/source/y")
        return Dataset(torch.as_tensor(x), targets, kind, classes)


def list_builtin_sets() -> list[str]:
    return BUILTIN_SETS.names()
