"""Preprocessing steps fitted on the training split only; their state is a dict of tensors,
stored with the model (safetensors) and applied again at prediction by ``apply_preprocessing``.
The invertible steps also scale regression targets (``data.target_preprocess``): the model's
outputs go back to the targets' units through ``invert_preprocessing``."""

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field

from core.registry import SpecRegistry, TypedSpec

PREPROCESSORS = SpecRegistry("preprocess")
State = dict[str, torch.Tensor]
Shape = tuple[int, ...]


class PreprocessShapeError(ValueError):
    """The step cannot take samples of this shape; ``field`` is the spec field at fault (or None)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PreprocessSpec(TypedSpec):
    invertible: ClassVar[bool] = False  # has ``inverse``: may scale regression targets

    def fit(self, x: torch.Tensor) -> State:
        """Statistics of the training features ``x`` (N, *sample_shape)."""
        raise NotImplementedError

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, x: torch.Tensor, state: State) -> torch.Tensor:
        """Undo ``transform`` (only for ``invertible`` steps)."""
        raise NotImplementedError

    def output_shape(self, shape: Shape) -> Shape:
        """The sample shape after this step (the model's input shape when it is the last step)."""
        return shape


@PREPROCESSORS.add
class ZeroCenter(PreprocessSpec):
    """Subtract the training mean of every feature. Also a ``data.target_preprocess`` step."""

    type: Literal["zero_center"] = "zero_center"
    invertible: ClassVar[bool] = True

    def fit(self, x: torch.Tensor) -> State:
        return {"mean": x.mean(0)}

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x - state["mean"]

    def inverse(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x + state["mean"]


@PREPROCESSORS.add
class Standardize(PreprocessSpec):
    """(x - mean) / std per feature, training statistics; constant features keep std 1. Also a
    ``data.target_preprocess`` step."""

    type: Literal["standardize"] = "standardize"
    invertible: ClassVar[bool] = True

    def fit(self, x: torch.Tensor) -> State:
        std = x.std(0, unbiased=False)
        return {"mean": x.mean(0), "std": torch.where(std > 1e-8, std, torch.ones_like(std))}

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return (x - state["mean"]) / state["std"]

    def inverse(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x * state["std"] + state["mean"]


@PREPROCESSORS.add
class MinMax(PreprocessSpec):
    """Scale every feature to [0, 1] by the training minimum and maximum. Also a
    ``data.target_preprocess`` step."""

    type: Literal["minmax"] = "minmax"
    invertible: ClassVar[bool] = True

    def fit(self, x: torch.Tensor) -> State:
        low, high = x.amin(0), x.amax(0)
        span = high - low
        return {"min": low, "span": torch.where(span > 1e-8, span, torch.ones_like(span))}

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return (x - state["min"]) / state["span"]

    def inverse(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x * state["span"] + state["min"]


def _eigen(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, eigenvalues (descending, ≥ 0) and eigenvectors (columns) of the covariance of the
    flattened samples (N - 1 in the denominator), in float64 with torch.linalg.eigh. Each
    eigenvector's largest entry is made positive so the result is deterministic."""
    flat = x.reshape(x.shape[0], -1).double()
    mean = flat.mean(0)
    centered = flat - mean
    covariance = centered.T @ centered / max(flat.shape[0] - 1, 1)
    values, vectors = torch.linalg.eigh(covariance)
    values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
    biggest = vectors.abs().argmax(0)
    signs = torch.sign(vectors[biggest, torch.arange(vectors.shape[1])])
    return mean, values, vectors * torch.where(signs == 0, 1.0, signs)


@PREPROCESSORS.add
class PCA(PreprocessSpec):
    """Project the (flattened) samples on the ``components`` leading principal axes of the training
    data; with ``whiten`` each axis is divided by its standard deviation (identity covariance).
    The model's input becomes a vector of ``components`` features."""

    type: Literal["pca"] = "pca"
    components: int | None = Field(None, ge=1, description="axes kept (default: all features)")
    whiten: bool = False
    eps: float = Field(1e-5, gt=0.0, description="added to the variances before whitening")

    def kept(self, shape: Shape) -> int:
        features = math.prod(shape)
        if self.components is not None and self.components > features:
            raise PreprocessShapeError(
                f"pca: {self.components} components from samples of only {features} features", "components"
            )
        return self.components or features

    def output_shape(self, shape: Shape) -> Shape:
        return (self.kept(shape),)

    def fit(self, x: torch.Tensor) -> State:
        mean, values, vectors = _eigen(x)
        k = self.kept(tuple(x.shape[1:]))
        scale = (values[:k] + self.eps).rsqrt() if self.whiten else torch.ones(k, dtype=torch.float64)
        return {
            "mean": mean.float(),
            "components": vectors[:, :k].T.contiguous().float(),
            "scale": scale.float(),
            "explained_variance": values[:k].float(),
        }

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return (x.reshape(x.shape[0], -1) - state["mean"]) @ state["components"].T * state["scale"]


@PREPROCESSORS.add
class ZCAWhiten(PreprocessSpec):
    """ZCA whitening: decorrelate the features and give each unit variance (identity covariance on
    the training split) while staying as close as possible to the input, so images stay images."""

    type: Literal["zca_whiten"] = "zca_whiten"
    eps: float = Field(1e-5, gt=0.0, description="added to the variances before whitening")

    def fit(self, x: torch.Tensor) -> State:
        mean, values, vectors = _eigen(x)
        whitening = vectors @ torch.diag((values + self.eps).rsqrt()) @ vectors.T
        return {"mean": mean.float(), "whitening": whitening.float()}

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return ((x.reshape(x.shape[0], -1) - state["mean"]) @ state["whitening"]).reshape(x.shape)


def fit_preprocessing(steps: list[PreprocessSpec], x: torch.Tensor) -> State:
    """Fit each step on the output of the previous one; keys are ``{index}.{name}``."""
    fitted: State = {}
    for index, step in enumerate(steps):
        state = step.fit(x)
        x = step.transform(x, state)
        fitted.update({f"{index}.{key}": value for key, value in state.items()})
    return fitted


def _state_of(index: int, fitted: State, device: torch.device) -> State:
    prefix = f"{index}."
    return {key.removeprefix(prefix): value.to(device) for key, value in fitted.items() if key.startswith(prefix)}


def apply_preprocessing(steps: list[PreprocessSpec], fitted: State, x: torch.Tensor) -> torch.Tensor:
    """Apply fitted steps to new features (validation, test, prediction inputs)."""
    for index, step in enumerate(steps):
        x = step.transform(x, _state_of(index, fitted, x.device))
    return x


def invert_preprocessing(steps: list[PreprocessSpec], fitted: State, x: torch.Tensor) -> torch.Tensor:
    """Undo fitted invertible steps, last first (model outputs back to the targets' units)."""
    for index in reversed(range(len(steps))):
        x = steps[index].inverse(x, _state_of(index, fitted, x.device))
    return x
