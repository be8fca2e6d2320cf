"""Preprocessing steps fitted on the training split only; their state is a dict of tensors,
stored with the model (safetensors) and applied again at prediction by ``apply_preprocessing``."""

from typing import Literal

import torch

from core.spec.base import SpecRegistry, TypedSpec

PREPROCESSORS = SpecRegistry("preprocess")
State = dict[str, torch.Tensor]


class PreprocessSpec(TypedSpec):
    def fit(self, x: torch.Tensor) -> State:
        """Statistics of the training features ``x`` (N, *sample_shape)."""
        raise NotImplementedError

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        raise NotImplementedError


@PREPROCESSORS.add
class ZeroCenter(PreprocessSpec):
    """Subtract the training mean of every feature."""

    type: Literal["zero_center"] = "zero_center"

    def fit(self, x: torch.Tensor) -> State:
        return {"mean": x.mean(0)}

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x - state["mean"]


@PREPROCESSORS.add
class Standardize(PreprocessSpec):
    """(x - mean) / std per feature, training statistics; constant features keep std 1."""

    type: Literal["standardize"] = "standardize"

    def fit(self, x: torch.Tensor) -> State:
        std = x.std(0, unbiased=False)
        return {"mean": x.mean(0), "std": torch.where(std > 1e-8, std, torch.ones_like(std))}

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return (x - state["mean"]) / state["std"]


@PREPROCESSORS.add
class MinMax(PreprocessSpec):
    """Scale every feature to [0, 1] by the training minimum and maximum."""

    type: Literal["minmax"] = "minmax"

    def fit(self, x: torch.Tensor) -> State:
        low, high = x.amin(0), x.amax(0)
        span = high - low
        return {"min": low, "span": torch.where(span > 1e-8, span, torch.ones_like(span))}

    def transform(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return (x - state["min"]) / state["span"]


def fit_preprocessing(steps: list[PreprocessSpec], x: torch.Tensor) -> State:
    """Fit each step on the output of the previous one; keys are ``{index}.{name}``."""
    fitted: State = {}
    for index, step in enumerate(steps):
        state = step.fit(x)
        x = step.transform(x, state)
        fitted.update({f"{index}.{key}": value for key, value in state.items()})
    return fitted


def apply_preprocessing(steps: list[PreprocessSpec], fitted: State, x: torch.Tensor) -> torch.Tensor:
    """Apply fitted steps to new features (validation, test, prediction inputs)."""
    for index, step in enumerate(steps):
        prefix = f"{index}."
        state = {
            key.removeprefix(prefix): value.to(x.device) for key, value in fitted.items() if key.startswith(prefix)
        }
        x = step.transform(x, state)
    return x


def list_preprocessors() -> list[str]:
    return PREPROCESSORS.names()
