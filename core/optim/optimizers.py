"""Optimizers; on CUDA they run PyTorch's fused (SGD, Adam, AdamW) or foreach implementations."""

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from core.registry import SpecRegistry, TypedSpec

OPTIMIZERS = SpecRegistry("optimizer")


class OptimizerSpec(TypedSpec):
    lr: float = Field(0.001, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0, lt=1.0)
    torch_class: ClassVar[type[torch.optim.Optimizer]]
    fusable: ClassVar[bool] = False
    state_per_weight: ClassVar[int] = 1  # optimizer state tensors per weight (memory estimate)

    def options(self) -> dict[str, Any]:
        """Constructor arguments beyond lr and weight_decay."""
        return {}

    def build(
        self, params: Iterable[torch.nn.Parameter], device: torch.device, *, lr_tensor: bool = False
    ) -> torch.optim.Optimizer:
        """The optimizer; ``lr_tensor`` gives it the lr as a (CPU, float64) tensor, which a schedule
        changes in place, so a compiled optimizer step is not compiled again for each new lr."""
        on_gpu = device.type == "cuda"
        speed = {"fused": True} if on_gpu and self.fusable else {"foreach": on_gpu}
        lr = torch.tensor(self.lr, dtype=torch.float64) if lr_tensor else self.lr
        return self.torch_class(params, lr=lr, weight_decay=self.weight_decay, **self.options(), **speed)


@OPTIMIZERS.add
class SGD(OptimizerSpec):
    """Plain SGD, or with momentum (optionally Nesterov's)."""

    type: Literal["sgd"] = "sgd"
    lr: float = Field(0.01, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    nesterov: bool = False
    torch_class: ClassVar = torch.optim.SGD
    fusable: ClassVar = True

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "SGD":
        if self.nesterov and self.momentum == 0:
            raise PydanticCustomError(
                "spec_rule",
                "nesterov needs momentum > 0",
                {"path": ["optimizer", "nesterov"], "hint": "set momentum, e.g. 0.9"},
            )
        return self

    def options(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "nesterov": self.nesterov}


@OPTIMIZERS.add
class Adagrad(OptimizerSpec):
    type: Literal["adagrad"] = "adagrad"
    lr: float = Field(0.01, gt=0.0, le=10.0)
    eps: float = Field(1e-10, gt=0.0)
    torch_class: ClassVar = torch.optim.Adagrad

    def options(self) -> dict[str, Any]:
        return {"eps": self.eps}


@OPTIMIZERS.add
class RMSprop(OptimizerSpec):
    type: Literal["rmsprop"] = "rmsprop"
    alpha: float = Field(0.99, gt=0.0, lt=1.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    eps: float = Field(1e-8, gt=0.0)
    torch_class: ClassVar = torch.optim.RMSprop
    state_per_weight: ClassVar = 2

    def options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "momentum": self.momentum, "eps": self.eps}


@OPTIMIZERS.add
class Adam(OptimizerSpec):
    type: Literal["adam"] = "adam"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    amsgrad: bool = False
    torch_class: ClassVar = torch.optim.Adam
    fusable: ClassVar = True
    state_per_weight: ClassVar = 2

    @model_validator(mode="after")
    def _betas_in_range(self) -> "Adam":
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise PydanticCustomError(
                "spec_rule",
                "betas must each be in [0, 1)",
                {"path": ["optimizer", "betas"], "hint": "e.g. [0.9, 0.999]"},
            )
        return self

    def options(self) -> dict[str, Any]:
        return {"betas": self.betas, "eps": self.eps, "amsgrad": self.amsgrad}


@OPTIMIZERS.add
class AdamW(Adam):
    """Adam with decoupled weight decay (default 0.01)."""

    type: Literal["adamw"] = "adamw"  # type: ignore[assignment]
    weight_decay: float = Field(0.01, ge=0.0, lt=1.0)
    torch_class: ClassVar = torch.optim.AdamW
