"""Losses, each knowing which tasks it fits (the model emits logits / raw values)."""

from typing import ClassVar, Literal

from pydantic import Field
from torch import nn

from core.registry import SpecRegistry, TypedSpec

LOSSES = SpecRegistry("loss")


class LossSpec(TypedSpec):
    tasks: ClassVar[tuple[str, ...]] = ()

    def build(self) -> nn.Module:
        raise NotImplementedError


@LOSSES.add
class CrossEntropy(LossSpec):
    """Softmax + negative log-likelihood over C classes."""

    type: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    tasks: ClassVar = ("classification",)

    def build(self) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)


@LOSSES.add
class BCE(LossSpec):
    """Binary cross-entropy on a sigmoid output (computed from logits, numerically stable)."""

    type: Literal["bce"] = "bce"
    tasks: ClassVar = ("binary",)

    def build(self) -> nn.Module:
        return nn.BCEWithLogitsLoss()


@LOSSES.add
class MSE(LossSpec):
    type: Literal["mse"] = "mse"
    tasks: ClassVar = ("regression",)

    def build(self) -> nn.Module:
        return nn.MSELoss()


@LOSSES.add
class MAE(LossSpec):
    type: Literal["mae"] = "mae"
    tasks: ClassVar = ("regression",)

    def build(self) -> nn.Module:
        return nn.L1Loss()


@LOSSES.add
class Huber(LossSpec):
    type: Literal["huber"] = "huber"
    delta: float = Field(1.0, gt=0.0)
    tasks: ClassVar = ("regression",)

    def build(self) -> nn.Module:
        return nn.HuberLoss(delta=self.delta)


DEFAULT_LOSS: dict[str, type[LossSpec]] = {"classification": CrossEntropy, "binary": BCE, "regression": MSE}
