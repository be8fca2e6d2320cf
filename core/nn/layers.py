"""Layers: one spec class each. ``build`` takes the input shape (no batch axis) and returns
the module with its output shape, so impossible shapes are found before any training."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from pydantic import Field, PrivateAttr
from torch import nn
from torch.nn.utils import parametrize

from core.nn.activations import ACTIVATIONS, ActivationSpec
from core.nn.modules import ChannelsLast, DropConnectMask, Recurrent, Residual, ToSequence
from core.registry import SpecRegistry, TypedSpec

if TYPE_CHECKING:
    from core.nn.build import LayerBuilder

LAYERS = SpecRegistry("layer")
Shape = tuple[int, ...]


class LayerShapeError(ValueError):
    """The layer cannot take this input shape (message says why, with the numbers)."""


@dataclass
class Built:
    module: nn.Module | None  # None: the layer modified the previous module (dropconnect)
    shape: Shape


def fmt(shape: Shape) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def _spatial_rank(shape: Shape, layer: str) -> int:
    """1 for (steps, features) sequences, 2 for (channels, height, width) images."""
    if len(shape) == 2:
        return 1
    if len(shape) == 3:
        return 2
    raise LayerShapeError(
        f"{layer} needs a (steps, features) sequence or a (channels, height, width) image; got {fmt(shape)}"
    )


def _spatial(shape: Shape, rank: int) -> tuple[int, list[int]]:
    """(channels, spatial sizes) of a sequence (T, F) or an image (C, H, W)."""
    return (shape[1], [shape[0]]) if rank == 1 else (shape[0], list(shape[1:]))


def _with_spatial(channels: int, sizes: list[int], rank: int) -> Shape:
    return (sizes[0], channels) if rank == 1 else (channels, *sizes)


def window_output(n: int, kernel: int, stride: int, padding: int, layer: str) -> int:
    """floor((n + 2p - k) / s) + 1, refusing sizes below 1."""
    out = (n + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise LayerShapeError(
            f"{layer}: output size floor(({n} + 2·{padding} - {kernel}) / {stride}) + 1 = {out} ≤ 0; "
            "the input is too small for this kernel/stride"
        )
    return out


class LayerSpec(TypedSpec):
    # Why torch.compile cannot capture a training step through this layer (the run then trains
    # eagerly, this reason in its summary); None when it can.
    uncapturable: ClassVar[str | None] = None

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        raise NotImplementedError


@LAYERS.add
class Conv(LayerSpec):
    """Convolution over images (C, H, W → Conv2d) or sequences (T, F → Conv1d over steps)."""

    type: Literal["conv"] = "conv"
    filters: int = Field(ge=1, le=65536)
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    padding: Literal["valid", "same", "full"] | int = "valid"
    bias: bool = True

    def pad(self) -> int | str:
        if isinstance(self.padding, int):
            if self.padding < 0:
                raise LayerShapeError("conv: padding must be ≥ 0")
            return self.padding
        if self.padding == "valid":
            return 0
        if self.padding == "full":
            return self.kernel - 1
        if self.kernel % 2 == 1:
            return (self.kernel - 1) // 2
        if self.stride != 1:
            raise LayerShapeError("conv: padding 'same' with an even kernel needs stride 1")
        return "same"

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        rank = _spatial_rank(shape, "conv")
        channels, sizes = _spatial(shape, rank)
        pad = self.pad()
        out = [n if pad == "same" else window_output(n, self.kernel, self.stride, pad, "conv") for n in sizes]
        conv_class = nn.Conv1d if rank == 1 else nn.Conv2d
        conv = conv_class(channels, self.filters, self.kernel, self.stride, pad, bias=self.bias)
        return Built(ChannelsLast(conv) if rank == 1 else conv, _with_spatial(self.filters, out, rank))


class PoolSpec(LayerSpec):
    kernel: int = Field(2, ge=1)
    stride: int | None = Field(None, ge=1, description="defaults to the kernel size")
    padding: int = Field(0, ge=0)

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        rank = _spatial_rank(shape, self.type)
        channels, sizes = _spatial(shape, rank)
        stride = self.stride or self.kernel
        if self.padding * 2 > self.kernel:
            raise LayerShapeError(f"{self.type}: padding {self.padding} exceeds half the kernel {self.kernel}")
        out = [window_output(n, self.kernel, stride, self.padding, self.type) for n in sizes]
        pool = self.pool_class(rank)(self.kernel, stride, self.padding)
        return Built(ChannelsLast(pool) if rank == 1 else pool, _with_spatial(channels, out, rank))

    def pool_class(self, rank: int) -> Callable[..., nn.Module]:
        raise NotImplementedError


@LAYERS.add
class MaxPool(PoolSpec):
    type: Literal["max_pool"] = "max_pool"

    def pool_class(self, rank: int) -> Callable[..., nn.Module]:
        return nn.MaxPool1d if rank == 1 else nn.MaxPool2d


@LAYERS.add
class AvgPool(PoolSpec):
    """Mean pooling."""

    type: Literal["avg_pool"] = "avg_pool"

    def pool_class(self, rank: int) -> Callable[..., nn.Module]:
        return nn.AvgPool1d if rank == 1 else nn.AvgPool2d


@LAYERS.add
class FractionalMaxPool(LayerSpec):
    """Fractional max pooling (Graham): pooling regions of random sizes shrink by ``ratio``."""

    type: Literal["fractional_max_pool"] = "fractional_max_pool"
    uncapturable: ClassVar = "fractional max pooling draws random pooling regions in every forward pass"
    ratio: float = Field(0.7, gt=0.0, lt=1.0)
    kernel: int = Field(2, ge=1)

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        if _spatial_rank(shape, self.type) != 2:
            raise LayerShapeError("fractional_max_pool needs a (channels, height, width) image")
        channels, sizes = shape[0], shape[1:]
        out = [int(n * self.ratio) for n in sizes]
        for n, o in zip(sizes, out, strict=True):
            if o < 1 or o + self.kernel - 1 > n:
                raise LayerShapeError(
                    f"fractional_max_pool: input {n} × ratio {self.ratio} gives {o}, which with kernel "
                    f"{self.kernel} does not fit (needs 1 ≤ output and output + kernel - 1 ≤ {n})"
                )
        return Built(nn.FractionalMaxPool2d(self.kernel, output_ratio=self.ratio), (channels, *out))


@LAYERS.add
class BatchNorm(LayerSpec):
    """Batch normalisation over features (vectors), channels (images) or features per step (sequences)."""

    type: Literal["batch_norm"] = "batch_norm"
    momentum: float = Field(0.1, gt=0.0, le=1.0)
    eps: float = Field(1e-5, gt=0.0)

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        if len(shape) == 1:
            return Built(nn.BatchNorm1d(shape[0], self.eps, self.momentum), shape)
        if len(shape) == 2:
            return Built(ChannelsLast(nn.BatchNorm1d(shape[1], self.eps, self.momentum)), shape)
        if len(shape) == 3:
            return Built(nn.BatchNorm2d(shape[0], self.eps, self.momentum), shape)
        raise LayerShapeError(f"batch_norm: unsupported input shape {fmt(shape)}")


@LAYERS.add
class Dropout(LayerSpec):
    """Inverted dropout: zeroes units with probability p and scales the rest by 1/(1-p) in training;
    identity at evaluation."""

    type: Literal["dropout"] = "dropout"
    p: float = Field(0.5, ge=0.0, lt=1.0)

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        return Built(nn.Dropout(self.p), shape)


@LAYERS.add
class DropConnect(LayerSpec):
    """DropConnect (Wan et al.) on the previous dense or conv layer: drops weights, not units,
    with probability p in training (inverted scaling); identity at evaluation."""

    type: Literal["dropconnect"] = "dropconnect"
    uncapturable: ClassVar = "dropconnect resamples the layer's weights (a parametrization) in every forward pass"
    p: float = Field(0.5, ge=0.0, lt=1.0)

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        target = builder.last_module
        if isinstance(target, ChannelsLast):
            target = target.inner
        if not isinstance(target, nn.Linear | nn.Conv1d | nn.Conv2d):
            raise LayerShapeError("dropconnect must follow a dense or conv layer (it drops that layer's weights)")
        parametrize.register_parametrization(target, "weight", DropConnectMask(self.p))
        return Built(None, shape)


@LAYERS.add
class Activation(LayerSpec):
    """An activation layer: ``fn`` or the model's default activation."""

    type: Literal["activation"] = "activation"
    fn: ACTIVATIONS.union() | None = None  # type: ignore[valid-type]

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        fn: ActivationSpec = self.fn or builder.activation
        factor = fn.width_factor
        if factor == 1:
            return Built(fn.build(), shape)
        dim = 0 if len(shape) == 3 else len(shape) - 1
        if shape[dim] % factor:
            raise LayerShapeError(f"{fn.type}: {shape[dim]} features are not divisible into {factor} pieces")
        out = list(shape)
        out[dim] //= factor
        return Built(fn.build(dim=dim + 1), tuple(out))


@LAYERS.add
class Flatten(LayerSpec):
    type: Literal["flatten"] = "flatten"

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        return Built(nn.Flatten(), (math.prod(shape),))


@LAYERS.add
class Dense(LayerSpec):
    """Fully connected layer on the last axis."""

    type: Literal["dense"] = "dense"
    units: int = Field(ge=1, le=1_000_000)
    bias: bool = True

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        if not shape:
            raise LayerShapeError("dense needs at least one feature axis")
        return Built(nn.Linear(shape[-1], self.units, bias=self.bias), (*shape[:-1], self.units))


class TokenEmbedding(nn.Embedding):
    """nn.Embedding that takes token ids of any dtype (padding id 0 maps to a zero vector)."""

    def reset_parameters(self) -> None:
        if not self.weight.is_meta:  # validation's shape-only model: normal_ on meta loads torch._dynamo
            super().reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.long())


@LAYERS.add
class Embedding(LayerSpec):
    """Token ids (steps,) → vectors (steps, dim); the vocabulary size is inferred from text data.
    It must be the first layer (models other than ``sequential`` add one for text data)."""

    type: Literal["embedding"] = "embedding"
    dim: int = Field(32, ge=1, le=65536)
    _vocab: int | None = PrivateAttr(None)

    def with_vocab(self, vocab: int) -> "Embedding":
        layer = self.model_copy()
        layer._vocab = vocab
        return layer

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        if self._vocab is None:
            raise LayerShapeError("embedding needs text data (token ids) and must be the first layer")
        if len(shape) != 1:
            raise LayerShapeError(f"embedding takes a (steps,) sample of token ids; got {fmt(shape)}")
        return Built(TokenEmbedding(self._vocab, self.dim, padding_idx=0), (shape[0], self.dim))


class RecurrentSpec(LayerSpec):
    uncapturable: ClassVar = "torch.compile does not trace recurrent layers (torch._dynamo.config.allow_rnn is off)"
    hidden: int = Field(64, ge=1, le=65536)
    layers: int = Field(1, ge=1, le=16)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="between stacked layers")
    return_sequences: bool = False

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        if len(shape) != 2:
            raise LayerShapeError(f"{self.type} needs a (steps, features) sequence; got {fmt(shape)}")
        rnn_class = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[self.type]
        rnn = rnn_class(
            shape[1],
            self.hidden,
            self.layers,
            batch_first=True,
            dropout=self.dropout if self.layers > 1 else 0.0,
            bidirectional=self.bidirectional,
        )
        width = self.hidden * (2 if self.bidirectional else 1)
        out = (shape[0], width) if self.return_sequences else (width,)
        return Built(Recurrent(rnn, self.return_sequences), out)


@LAYERS.add
class RNN(RecurrentSpec):
    """Elman RNN (tanh)."""

    type: Literal["rnn"] = "rnn"


@LAYERS.add
class LSTM(RecurrentSpec):
    type: Literal["lstm"] = "lstm"


@LAYERS.add
class GRU(RecurrentSpec):
    type: Literal["gru"] = "gru"


@LAYERS.add
class ToSequenceLayer(LayerSpec):
    """Image feature maps (C, H, W) → a sequence (W, C·H) read left to right (for CNN + RNN)."""

    type: Literal["to_sequence"] = "to_sequence"

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        if len(shape) == 2:
            return Built(ToSequence(), shape)
        if len(shape) != 3:
            raise LayerShapeError(f"to_sequence needs an image or a sequence; got {fmt(shape)}")
        c, h, w = shape
        return Built(ToSequence(), (w, c * h))


@LAYERS.add
class ResidualBlock(LayerSpec):
    """x + F(x) over ``layers`` (which must keep the shape); ``drop_path`` is stochastic depth."""

    type: Literal["residual"] = "residual"
    layers: list[LAYERS.union()] = Field(min_length=1, max_length=64)  # type: ignore[valid-type]
    zero_init_last: bool = False
    drop_path: float = Field(0.0, ge=0.0, lt=1.0)

    def build(self, shape: Shape, builder: "LayerBuilder") -> Built:
        body, out = builder.nested(self.layers, shape)
        if out != shape:
            raise LayerShapeError(
                f"residual: the block turns {fmt(shape)} into {fmt(out)}; its layers must keep the shape "
                "(use padding 'same', stride 1 and as many filters as input channels)"
            )
        return Built(Residual(body, self.drop_path, self.zero_init_last), shape)


LayerUnion = LAYERS.union()
