"""Weight initialisations: one spec class each; ``apply`` initialises every weight matrix / kernel."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize

from core.registry import SpecRegistry, TypedSpec

INITS = SpecRegistry("init")

_PARAMETRIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.RNNBase)


def fan_in(weight: torch.Tensor) -> int:
    return weight.shape[1] * (weight[0][0].numel() if weight.dim() > 2 else 1)


def _own_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """A layer's own parameters, including those under a parametrization (DropConnect's weight)."""
    params = dict(module.named_parameters(recurse=False))
    if parametrize.is_parametrized(module):
        params.update({name: plist.original for name, plist in module.parametrizations.items()})
    return params


class InitSpec(TypedSpec):
    """Initialises weights (matrices and kernels) in place; biases are set to zero."""

    zero_bias: bool = True

    def init_weight(self, weight: torch.Tensor) -> None:
        raise NotImplementedError

    def apply(self, model: nn.Module) -> None:
        """Initialise every linear, conv and recurrent layer of ``model``."""
        with torch.no_grad():
            for module in model.modules():
                if not isinstance(module, _PARAMETRIC):
                    continue
                for name, param in _own_parameters(module).items():
                    if name.startswith("weight"):
                        self.init_weight(param)
                    elif name.startswith("bias") and self.zero_bias:
                        param.zero_()


@INITS.add
class Default(InitSpec):
    """PyTorch's own per-layer initialisation (what the notes recommend in practice)."""

    type: Literal["default"] = "default"
    zero_bias: bool = False

    def apply(self, model: nn.Module) -> None:
        return None


@INITS.add
class Zeros(InitSpec):
    """All weights zero: every unit of a layer stays identical (symmetry is never broken)."""

    type: Literal["zeros"] = "zeros"

    def init_weight(self, weight: torch.Tensor) -> None:
        nn.init.zeros_(weight)


@INITS.add
class Normal(InitSpec):
    """Gaussian N(mean, std²): std 0.01 is 'small' (signals vanish), 1.0 'large' (they explode)."""

    type: Literal["normal"] = "normal"
    std: float = Field(0.01, gt=0.0)
    mean: float = 0.0

    def init_weight(self, weight: torch.Tensor) -> None:
        nn.init.normal_(weight, self.mean, self.std)


@INITS.add
class XavierNormal(InitSpec):
    """Glorot normal: std = gain·sqrt(2 / (fan_in + fan_out))."""

    type: Literal["xavier_normal"] = "xavier_normal"
    gain: float = Field(1.0, gt=0.0)

    def init_weight(self, weight: torch.Tensor) -> None:
        nn.init.xavier_normal_(weight, self.gain)


@INITS.add
class XavierUniform(InitSpec):
    """Glorot uniform: U(-a, a), a = gain·sqrt(6 / (fan_in + fan_out))."""

    type: Literal["xavier_uniform"] = "xavier_uniform"
    gain: float = Field(1.0, gt=0.0)

    def init_weight(self, weight: torch.Tensor) -> None:
        nn.init.xavier_uniform_(weight, self.gain)


@INITS.add
class LecunNormal(InitSpec):
    """std = 1/sqrt(fan_in): the notes' 'Xavier' (keeps the variance of a linear/tanh layer)."""

    type: Literal["lecun_normal"] = "lecun_normal"

    def init_weight(self, weight: torch.Tensor) -> None:
        nn.init.normal_(weight, 0.0, 1.0 / math.sqrt(fan_in(weight)))


@INITS.add
class Kaiming(InitSpec):
    """He / MSRA: std = gain/sqrt(fan), gain = sqrt(2) for ReLU (normal or uniform)."""

    type: Literal["kaiming"] = "kaiming"
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "tanh", "sigmoid", "linear", "selu"] = "relu"
    negative_slope: float = Field(0.0, ge=0.0, lt=1.0)
    distribution: Literal["normal", "uniform"] = "normal"

    def init_weight(self, weight: torch.Tensor) -> None:
        init = nn.init.kaiming_normal_ if self.distribution == "normal" else nn.init.kaiming_uniform_
        init(weight, a=self.negative_slope, mode=self.mode, nonlinearity=self.nonlinearity)


@INITS.add
class Orthogonal(InitSpec):
    """A (semi-)orthogonal matrix scaled by ``gain`` (Saxe et al.)."""

    type: Literal["orthogonal"] = "orthogonal"
    gain: float = Field(1.0, gt=0.0)

    def init_weight(self, weight: torch.Tensor) -> None:
        nn.init.orthogonal_(weight, self.gain)
