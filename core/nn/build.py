"""Builds a model from layer specs, propagating shapes and producing the per-layer table."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass

from torch import nn

from core.errors import SpecError, SpecInvalid
from core.nn.activations import ActivationSpec
from core.nn.layers import LayerShapeError, LayerSpec, Shape
from core.nn.modules import ChannelsLast, Recurrent


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


def layer_flops(module: nn.Module, shape: Shape, out: Shape, inner: list[LayerRow]) -> int:
    """Forward FLOPs of a built layer for one sample, from its input and output shapes: 2 per
    multiply-add of its matrix products and convolutions, bias additions and elementwise ops left
    out (the numbers of PyTorch's FlopCounterMode). A block (residual) sums its ``inner`` rows.

    Counted without running the module: a forward pass on the meta device would load PyTorch's
    compiler stack (torch._dynamo, sympy), seconds of start-up for `trainyard validate`."""
    if isinstance(module, ChannelsLast):
        module = module.inner
    if isinstance(module, Recurrent):
        module = module.rnn
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * math.prod(out)
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        return 2 * math.prod(out) * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.RNNBase):
        steps = math.prod(shape) // module.input_size
        directions = 2 if module.bidirectional else 1
        sizes = [module.input_size] + [module.hidden_size * directions] * (module.num_layers - 1)
        per_step = sum(2 * GATES[module.mode] * module.hidden_size * (size + module.hidden_size) for size in sizes)
        return steps * directions * per_step
    return sum(row.flops for row in inner)


class LayerBuilder:
    """Builds layers in order, recording a row per layer.

    ``last_module`` lets a layer (dropconnect) modify its predecessor; ``count_flops`` fills the
    rows' FLOPs (validation's layer table)."""

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
            first_inner = len(self.rows)
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
                    inner = [r for r in self.rows[first_inner:] if "." not in r.name[len(row.name) + 1 :]]
                    row.flops = layer_flops(built.module, shape, built.shape, inner)
            shape = built.shape
        return nn.Sequential(OrderedDict(modules)), shape

    def nested(self, layers: list[LayerSpec], shape: Shape) -> tuple[nn.Sequential, Shape]:
        """Build a block's inner layers (a residual body); their rows follow the block's row."""
        return self.sequence([(layer, f"{self._pointer}/layers/{i}") for i, layer in enumerate(layers)], shape)
