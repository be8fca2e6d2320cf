"""Activation functions: one spec class each, registered by its ``type``."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from core.registry import SpecRegistry, TypedSpec

ACTIVATIONS = SpecRegistry("activation")


class ActivationSpec(TypedSpec):
    """An activation; ``bounds`` are its asymptotes (saturating units), ``rectifier`` marks ReLU-like units."""

    bounds: ClassVar[tuple[float, float] | None] = None
    rectifier: ClassVar[bool] = False

    @property
    def width_factor(self) -> int:
        """How many input features make one output feature (maxout's pieces; 1 otherwise)."""
        return 1

    def build(self) -> nn.Module:
        raise NotImplementedError


@ACTIVATIONS.add
class Sigmoid(ActivationSpec):
    type: Literal["sigmoid"] = "sigmoid"
    bounds: ClassVar = (0.0, 1.0)

    def build(self) -> nn.Module:
        return nn.Sigmoid()


@ACTIVATIONS.add
class Tanh(ActivationSpec):
    type: Literal["tanh"] = "tanh"
    bounds: ClassVar = (-1.0, 1.0)

    def build(self) -> nn.Module:
        return nn.Tanh()


@ACTIVATIONS.add
class ReLU(ActivationSpec):
    type: Literal["relu"] = "relu"
    rectifier: ClassVar = True

    def build(self) -> nn.Module:
        return nn.ReLU()


@ACTIVATIONS.add
class LeakyReLU(ActivationSpec):
    type: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: float = Field(0.01, ge=0.0, lt=1.0)

    def build(self) -> nn.Module:
        return nn.LeakyReLU(self.negative_slope)


@ACTIVATIONS.add
class PReLU(ActivationSpec):
    """Leaky ReLU whose negative slope is learned (one per layer, starting at ``init``)."""

    type: Literal["prelu"] = "prelu"
    init: float = Field(0.25, ge=0.0, lt=1.0)

    def build(self) -> nn.Module:
        return nn.PReLU(init=self.init)


@ACTIVATIONS.add
class ELU(ActivationSpec):
    type: Literal["elu"] = "elu"
    alpha: float = Field(1.0, gt=0.0)

    def build(self) -> nn.Module:
        return nn.ELU(self.alpha)


@ACTIVATIONS.add
class SELU(ActivationSpec):
    type: Literal["selu"] = "selu"

    def build(self) -> nn.Module:
        return nn.SELU()


@ACTIVATIONS.add
class GELU(ActivationSpec):
    type: Literal["gelu"] = "gelu"

    def build(self) -> nn.Module:
        return nn.GELU()


@ACTIVATIONS.add
class SiLU(ActivationSpec):
    type: Literal["silu"] = "silu"

    def build(self) -> nn.Module:
        return nn.SiLU()


class MaxoutUnit(nn.Module):
    """max over ``pieces`` consecutive features: (…, F) → (…, F / pieces) on ``dim``."""

    def __init__(self, pieces: int, dim: int) -> None:
        super().__init__()
        self.pieces, self.dim = pieces, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.dim % x.dim()
        shape = (*x.shape[:dim], x.shape[dim] // self.pieces, self.pieces, *x.shape[dim + 1 :])
        return x.reshape(shape).amax(dim=dim + 1)


@ACTIVATIONS.add
class Maxout(ActivationSpec):
    """Maxout (Goodfellow et al.): the layer before it produces ``pieces`` × the features."""

    type: Literal["maxout"] = "maxout"
    pieces: int = Field(2, ge=2, le=16)

    @property
    def width_factor(self) -> int:
        return self.pieces

    def build(self, dim: int = -1) -> nn.Module:
        return MaxoutUnit(self.pieces, dim)
