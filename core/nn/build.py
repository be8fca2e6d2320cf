"""Builds a model from layer specs, propagating shapes and producing the per-layer table."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from core.errors import SpecError, SpecInvalid
from core.nn.activations import ActivationSpec
from core.nn.layers import LayerShapeError, LayerSpec, Shape


@dataclass
class LayerRow:
    """One line of the layer table: where the layer is in the spec and what it produces."""

    name: str
    pointer: str
    type: str
    output_shape: list[int]
    params: int
    flops: int

    def as_dict(self) -> dict:
        return asdict(self)


GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}  # weight blocks per recurrent cell


def _weighted_flops(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> int:
    """FLOPs of one call of a dense, conv or recurrent module from its shapes: 2 per multiply-add of
    its matrix products and convolutions (bias additions, elementwise ops and gates not counted)."""
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * output.numel()
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return 2 * output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.RNNBase):
        rows = inputs[0].numel() // module.input_size  # batch × steps
        directions = 2 if module.bidirectional else 1
        width = GATES[module.mode] * module.hidden_size
        sizes = [module.input_size] + [module.hidden_size * directions] * (module.num_layers - 1)
        return 2 * rows * directions * width * sum(size + module.hidden_size for size in sizes)
    return 0


def forward_flops(module: nn.Module, shape: Shape) -> int:
    """Forward FLOPs of a meta-device ``module`` for one sample: a batch of two runs on the meta
    device (shapes only) with a hook on every submodule adding up ``_weighted_flops``."""
    total = 0

    def count(sub: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        nonlocal total
        total += _weighted_flops(sub, inputs, output)

    hooks = [sub.register_forward_hook(count) for sub in module.modules()]
    try:
        module(torch.empty((2, *shape), device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return total // 2


class LayerBuilder:
    """Builds layers in order, recording a row per layer.

    ``last_module`` lets a layer (dropconnect) modify its predecessor; ``count_flops`` needs the
    modules on the meta device (validation builds them there)."""

    def __init__(self, activation: ActivationSpec, *, count_flops: bool = False) -> None:
        self.activation = activation
        self.count_flops = count_flops
        self.last_module: nn.Module | None = None
        self.rows: list[LayerRow] = []
        self._pointer = ""
        self._name = ""

    def sequence(self, layers: list[tuple[LayerSpec, str]], shape: Shape) -> tuple[nn.Sequential, Shape]:
        """Build ``layers`` (each with its JSON pointer) on input ``shape``; return the stack and output shape."""
        modules: dict[str, nn.Module] = {}
        prefix = f"{self._name}." if self._name else ""
        for index, (layer, where) in enumerate(layers):
            key = f"{index}_{layer.type}"
            row = LayerRow(prefix + key, where, layer.type, [], 0, 0)
            self.rows.append(row)
            outer = (self._pointer, self._name)
            self._pointer, self._name = where, row.name
            try:
                built = layer.build(shape, self)
            except LayerShapeError as exc:
                raise SpecInvalid([SpecError(where, f"{exc} (input {'×'.join(map(str, shape))})")]) from None
            finally:
                self._pointer, self._name = outer
            row.output_shape = list(built.shape)
            if built.module is not None:
                modules[key] = built.module
                self.last_module = built.module
                row.params = sum(p.numel() for p in built.module.parameters())
                if self.count_flops:
                    row.flops = forward_flops(built.module, shape)
            shape = built.shape
        return nn.Sequential(OrderedDict(modules)), shape

    def nested(self, layers: list[LayerSpec], shape: Shape) -> tuple[nn.Sequential, Shape]:
        """Build a block's inner layers (a residual body); their rows follow the block's row."""
        return self.sequence([(layer, f"{self._pointer}/layers/{i}") for i, layer in enumerate(layers)], shape)
