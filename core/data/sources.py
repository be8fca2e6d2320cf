"""Data sources: scikit-learn's bundled sets, synthetic generators, inline arrays, CSV / NPZ files
(where ``core.data.files.data_access`` allows) and uploaded data sets. Nothing is downloaded:
every built-in set ships inside a package or is generated."""

import codecs
import inspect
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.data.dataset import DataKind, Dataset, targets_for_task
from core.data.files import BadRows, FileFormat, current_access, load_table, resolve_file
from core.data.text import toy_text
from core.errors import SpecError, SpecInvalid
from core.registry import Registry, SpecRegistry, TypedSpec

SOURCES = SpecRegistry("data source")
# A built-in set's loader returns (x, y, kind); text sets return a list of strings as x. A bundled
# set's loader takes no arguments; a generator's keyword arguments are the spec parameters it takes,
# their defaults the spec's defaults, besides the run's ``seed`` and ``task`` (see ``set_parameters``).
BUILTIN_SETS: Registry[Callable[..., tuple[Any, np.ndarray, DataKind]]] = Registry("built-in data set")
RUN_ARGUMENTS = ("seed", "task")


def _bundled(loader_name: str, image_shape: tuple[int, ...] | None = None) -> Callable[[], Any]:
    def load() -> tuple[np.ndarray, np.ndarray, DataKind]:
        import sklearn.datasets

        x, y = getattr(sklearn.datasets, loader_name)(return_X_y=True)
        if image_shape is not None:
            return x.reshape(-1, *image_shape), y, "image"
        return x, y, "tabular"

    return load


# scikit-learn's bundled sets: the 8×8 digits (1797, 10 classes) as 1×8×8 images or 64 features, and tables
BUNDLED: dict[str, Callable[[], Any]] = {
    "digits": _bundled("load_digits", (1, 8, 8)),
    "digits_flat": _bundled("load_digits"),
    "iris": _bundled("load_iris"),
    "wine": _bundled("load_wine"),
    "breast_cancer": _bundled("load_breast_cancer"),
    "diabetes": _bundled("load_diabetes"),
}
for _name, _loader in BUNDLED.items():
    BUILTIN_SETS.register(_name)(_loader)


@BUILTIN_SETS.register("moons")
def _moons(*, seed: int, n_samples: int = 1000, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """Two interleaving half circles (2 classes)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return x, y, "tabular"


@BUILTIN_SETS.register("spirals")
def _spirals(
    *, seed: int, n_samples: int = 1000, noise: float = 0.1, classes: int = 3
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
    *, seed: int, task: str, n_samples: int = 1000, noise: float = 0.1, length: int = 32, classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, DataKind]:
    """Windows of noisy sine waves of random frequency and phase, shape (length, 1). For regression
    the target is the next value (forecasting); for classification it is the frequency band
    (``classes`` equal bands of 0.05-0.25 cycles per step, default 3; a binary task has 2)."""
    if classes is not None and task != "classification":
        raise SpecInvalid(
            [
                SpecError(
                    "/data/source/classes",
                    f"sine_series takes 'classes' (frequency bands) for task 'classification' only, not {task!r}",
                    "remove 'classes'" + (" (a binary task has 2 bands)" if task == "binary" else ""),
                )
            ]
        )
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)
    freq = rng.uniform(0.05, 0.25, (n_samples, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_samples, 1))
    wave = np.sin(2 * np.pi * freq * t + phase) + rng.normal(0.0, noise, (n_samples, length + 1))
    if task == "regression":
        return wave[:, :length, None], wave[:, length], "sequence"
    bands = 2 if task == "binary" else classes or 3
    band = np.minimum(((freq[:, 0] - 0.05) / 0.2 * bands).astype(np.int64), bands - 1)
    return wave[:, :length, None], band, "sequence"


@BUILTIN_SETS.register("toy_text")
def _toy_text(
    *, seed: int, n_samples: int = 1000, noise: float = 0.1, length: int = 32
) -> tuple[list[str], np.ndarray, DataKind]:
    """Short generated movie reviews of 1-3 sentences; 2 classes (0 negative, 1 positive);
    ``noise`` is the fraction of flipped labels; ``length``, the most tokens kept, applies when the
    texts are encoded (``core.engine.plan``)."""
    texts, labels = toy_text(n_samples, seed, noise)
    return texts, labels, "text"


def set_parameters(name: str) -> dict[str, Any]:
    """The spec parameters built-in set ``name`` takes, with their defaults: ``n_samples`` for a
    bundled set (a subset's size; None: the whole set), a generator's keyword arguments otherwise."""
    if name in BUNDLED:
        return {"n_samples": None}
    parameters = inspect.signature(BUILTIN_SETS.get(name)).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in RUN_ARGUMENTS}


def _subset(y: np.ndarray, n_samples: int, seed: int, name: str) -> np.ndarray:
    """Sorted row indices of a seeded subset of ``n_samples`` rows, stratified on integer class
    labels: each class gets its share rounded down or up (largest remainders), so within ±1."""
    if n_samples > len(y):
        raise SpecInvalid(
            [
                SpecError(
                    "/data/source/n_samples",
                    f"{name!r} has {len(y)} samples; n_samples {n_samples} asks for more",
                    f"use at most {len(y)}, or leave n_samples out for the whole set",
                )
            ]
        )
    rng = np.random.default_rng(seed)
    if y.dtype.kind not in "iu":  # regression targets: a plain random subset
        return np.sort(rng.choice(len(y), n_samples, replace=False))
    labels, counts = np.unique(y, return_counts=True)
    share = counts * n_samples / len(y)
    take = np.floor(share).astype(np.int64)
    remainder = share - take
    take[np.lexsort((rng.random(len(labels)), -remainder))[: n_samples - take.sum()]] += 1
    rows = [rng.choice(np.flatnonzero(y == label), k, replace=False) for label, k in zip(labels, take, strict=True)]
    return np.sort(np.concatenate(rows))


# A generator builds its whole set in memory while the spec is validated (the API's dry run, a
# submission), before any other limit can look at it: 100k sine windows of 1000 steps took 9 s and
# 1.6 GB there. 20M values (160 MB as float64 while generating) answer in well under a second.
MAX_GENERATED_VALUES = 20_000_000


class SourceSpec(TypedSpec):
    def load(self, *, task: str, seed: int) -> Dataset:
        raise NotImplementedError


@SOURCES.add
class Builtin(SourceSpec):
    """A bundled set: digits (1×8×8 images), digits_flat (64 features), iris, wine, breast_cancer,
    diabetes, where ``n_samples`` draws a seeded subset (stratified for the classification sets); or
    a generator with its own parameters: moons (n_samples, noise), spirals (n_samples, noise,
    classes), sine_series (n_samples, noise, length, classes), toy_text (n_samples, noise, length).
    A parameter the named set does not take is an error."""

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
    n_samples: int | None = Field(
        None, ge=10, le=1_000_000, description="generators: how many (1000); bundled sets: a subset (the whole set)"
    )
    noise: float | None = Field(None, ge=0.0, description="generators (0.1); toy_text: fraction of flipped labels")
    length: int | None = Field(
        None, ge=2, le=10_000, description="sine_series: steps per window; toy_text: most tokens kept (32)"
    )
    classes: int | None = Field(
        None, ge=2, le=20, description="spirals: number of arms; sine_series: frequency bands (3)"
    )

    @model_validator(mode="after")
    def _parameters_of_the_set(self) -> "Builtin":
        """Refuse a parameter the named set does not take; fill in the defaults of those it takes."""
        takes = set_parameters(self.name)
        for key in ("n_samples", "noise", "length", "classes"):
            if getattr(self, key) is None:
                if takes.get(key) is not None:
                    setattr(self, key, takes[key])
            elif key not in takes:
                others = [name for name in BUILTIN_SETS.names() if key in set_parameters(name)]
                raise PydanticCustomError(
                    "spec_rule",
                    "'{key}' does not apply to the {what} '{name}', which takes {takes}",
                    {
                        "key": key,
                        "what": "bundled set" if self.name in BUNDLED else "generator",
                        "name": self.name,
                        "takes": "only n_samples (a subset's size)" if self.name in BUNDLED else ", ".join(takes),
                        "path": ["data", "source", key],
                        "hint": f"remove '{key}'; the sets that take it: " + ", ".join(others),
                    },
                )
        values = (self.n_samples or 0) * ((self.length or 0) + 1)
        if self.name not in BUNDLED and values > MAX_GENERATED_VALUES:
            raise PydanticCustomError(
                "spec_rule",
                "n_samples × length = {values} values; a generated set holds at most {most}",
                {
                    "values": f"{values:,}",
                    "most": f"{MAX_GENERATED_VALUES:,}",
                    "path": ["data", "source", "n_samples"],
                    "hint": "generate fewer or shorter samples, or upload the data set",
                },
            )
        return self

    def load(self, *, task: str, seed: int) -> Dataset:
        build = BUILTIN_SETS.get(self.name)
        if self.name in BUNDLED:
            x, y, kind = build()
            if self.n_samples is not None:
                rows = _subset(y, self.n_samples, seed, self.name)
                x, y = x[rows], y[rows]
        else:
            accepted = inspect.signature(build).parameters
            run = {key: value for key, value in {"seed": seed, "task": task}.items() if key in accepted}
            x, y, kind = build(**run, **{key: getattr(self, key) for key in set_parameters(self.name)})
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
    """A local CSV or NPZ file: the CLI reads any path, a relative one from the spec file's folder; the
    service reads only under its data root (``TRAINYARD_DATA_ROOT``)."""

    type: Literal["file"] = "file"
    path: str = Field(min_length=1, max_length=1000)
    format: FileFormat | None = Field(None, description="default: from the file name's suffix")

    def load(self, *, task: str, seed: int) -> Dataset:
        path = resolve_file(self.path, current_access(), "/data/source/path")
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
