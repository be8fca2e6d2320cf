"""Data sources: scikit-learn's bundled sets, synthetic generators, inline arrays, CSV / NPZ files
under an allowed data root and uploaded data sets. Nothing is downloaded: every built-in set ships
inside a package or is generated."""

import codecs
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.data.dataset import DataKind, Dataset
from core.data.files import BadRows, FileFormat, current_access, load_table, resolve_in_root
from core.data.text import toy_text
from core.registry import Registry
from core.spec.base import SpecRegistry, TypedSpec
from core.spec.errors import SpecError, SpecInvalid

SOURCES = SpecRegistry("data source")
# A built-in set returns (x, y, kind); text sets return a list of strings as x.
BUILTIN_SETS: Registry[Callable[..., tuple[Any, np.ndarray, DataKind]]] = Registry("built-in data set")


@BUILTIN_SETS.register("digits")
def _digits(**_: object) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """8×8 handwritten digits (1797 images, 10 classes), as (1, 8, 8) images."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.reshape(-1, 1, 8, 8), y, "image"


@BUILTIN_SETS.register("digits_flat")
def _digits_flat(**_: object) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """The same 8×8 digits as flat vectors of 64 features."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x, y, "tabular"


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
    *, n_samples: int, noise: float, seed: int, length: int, classes: int, task: str = "regression", **_: object
) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """Windows of noisy sine waves of random frequency and phase, shape (length, 1). For regression
    the target is the next value (forecasting); for classification it is the frequency band
    (``classes`` equal bands of 0.05-0.25 cycles per step; 2 for a binary task)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)
    freq = rng.uniform(0.05, 0.25, (n_samples, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_samples, 1))
    wave = np.sin(2 * np.pi * freq * t + phase) + rng.normal(0.0, noise, (n_samples, length + 1))
    if task == "regression":
        return wave[:, :length, None], wave[:, length], "sequence"
    bands = 2 if task == "binary" else classes
    band = np.minimum(((freq[:, 0] - 0.05) / 0.2 * bands).astype(np.int64), bands - 1)
    return wave[:, :length, None], band, "sequence"


@BUILTIN_SETS.register("toy_text")
def _toy_text(*, n_samples: int, noise: float, seed: int, **_: object) -> tuple[list[str], np.ndarray, DataKind]:
    """Short generated movie reviews of 1-3 sentences; 2 classes (0 negative, 1 positive);
    ``noise`` is the fraction of flipped labels."""
    texts, labels = toy_text(n_samples, seed, noise)
    return texts, labels, "text"


class SourceSpec(TypedSpec):
    def load(self, *, task: str, seed: int) -> Dataset:
        raise NotImplementedError


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


@SOURCES.add
class Builtin(SourceSpec):
    """A bundled or generated set: digits (1×8×8 images), digits_flat (64 features), iris, wine,
    breast_cancer, diabetes, moons, spirals, sine_series, toy_text."""

    type: Literal["builtin"] = "builtin"
    name: Literal[
        "digits",
        "digits_flat",
        "iris",
        "wine",
        "breast_cancer",
        "diabetes",
        "moons",
        "spirals",
        "sine_series",
        "toy_text",
    ]
    n_samples: int = Field(1000, ge=10, le=1_000_000, description="generated sets only")
    noise: float = Field(0.1, ge=0.0, description="generated sets only (toy_text: fraction of flipped labels)")
    length: int = Field(32, ge=2, le=10_000, description="sine_series: steps per window; toy_text: most tokens kept")
    classes: int = Field(3, ge=2, le=20, description="spirals: number of arms; sine_series: frequency bands")

    def load(self, *, task: str, seed: int) -> Dataset:
        x, y, kind = BUILTIN_SETS.get(self.name)(
            n_samples=self.n_samples, noise=self.noise, seed=seed, length=self.length, classes=self.classes, task=task
        )
        targets, classes = targets_for_task(y, task, "/data/source/name")
        if kind == "text":
            return Dataset(torch.zeros((len(x), 0), dtype=torch.int64), targets, kind, classes, texts=list(x))
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
        try:
            labels = np.asarray(self.y)
        except ValueError:
            labels = np.asarray([None])
        if labels.dtype == object:
            raise SpecInvalid(
                [
                    SpecError(
                        "/data/source/y",
                        "y must be numbers or labels, one per row of x",
                        "for several targets, give every row the same length",
                    )
                ]
            )
        targets, classes = targets_for_task(labels, task, "/data/source/y")
        return Dataset(torch.as_tensor(x), targets, kind, classes)


class TableOptions(SourceSpec):
    """How a CSV / NPZ file becomes features and targets."""

    target: str | None = Field(None, description="CSV: the target column (default the last); NPZ: its array ('y')")
    features: list[str] | None = Field(
        None, min_length=1, description="CSV: feature columns (default all but the target); NPZ: arrays ('x')"
    )
    bad_rows: BadRows = Field("error", description="CSV rows with a different field count than the header")
    delimiter: str = Field(",", min_length=1, max_length=1)
    encoding: str = "utf-8"

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r}") from None
        return value

    def read(self, path: Any, *, task: str, format: FileFormat | None, file_at: str) -> Dataset:
        data, _ = load_table(
            path,
            task=task,
            format=format,
            target=self.target,
            features=self.features,
            bad_rows=self.bad_rows,
            delimiter=self.delimiter,
            encoding=self.encoding,
            at="/data/source",
            file_at=file_at,
        )
        return data


@SOURCES.add
class File(TableOptions):
    """A local CSV or NPZ file, read only under the allowed data root (the CLI: the current folder)."""

    type: Literal["file"] = "file"
    path: str = Field(min_length=1, max_length=1000)
    format: FileFormat | None = Field(None, description="default: from the file name's suffix")

    def load(self, *, task: str, seed: int) -> Dataset:
        path = resolve_in_root(self.path, current_access().data_root, "/data/source/path")
        return self.read(path, task=task, format=self.format, file_at="/data/source/path")


@SOURCES.add
class UploadedDataset(TableOptions):
    """An uploaded CSV / NPZ (``POST /v1/datasets``), resolved by the service from its id."""

    type: Literal["dataset"] = "dataset"
    id: str = Field(min_length=1, max_length=200)

    def load(self, *, task: str, seed: int) -> Dataset:
        resolve = current_access().resolve_dataset
        if resolve is None:
            raise SpecInvalid([SpecError("/data/source/id", "uploaded data sets are not available here")])
        try:
            path = resolve(self.id)
        except (KeyError, FileNotFoundError, ValueError):
            raise SpecInvalid(
                [SpecError("/data/source/id", f"no uploaded data set {self.id!r}", "upload it with POST /v1/datasets")]
            ) from None
        return self.read(path, task=task, format=None, file_at="/data/source/id")
