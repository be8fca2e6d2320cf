"""Model types: each expands into a list of layer specs (with the JSON pointer each came from),
so one builder, one shape check and one layer table serve them all."""

from typing import ClassVar, Literal

from pydantic import Field
from torch import nn

from core.errors import SpecError, SpecInvalid
from core.nn.activations import ACTIVATIONS, ActivationSpec, ReLU
from core.nn.build import LayerBuilder, LayerRow
from core.nn.inits import INITS, Default, InitSpec, Kaiming
from core.nn.layers import (
    GRU,
    LAYERS,
    LSTM,
    RNN,
    Activation,
    BatchNorm,
    Dense,
    DropConnect,
    Dropout,
    Embedding,
    Flatten,
    LayerSpec,
    LayerUnion,
    RecurrentSpec,
    Shape,
    ToSequenceLayer,
)
from core.nn.modules import Residual
from core.registry import SpecRegistry, TypedSpec

MODELS = SpecRegistry("model")
Placed = list[tuple[LayerSpec, str]]
MAX_LAYERS = 256  # layers in one list: a spec of 10,000 layers took 9 s of API CPU to be refused

ActivationField = ACTIVATIONS.union()
InitField = INITS.union()


class ModelSpec(TypedSpec):
    kind: ClassVar[str] = "model"
    init: InitField = Field(default_factory=Kaiming)  # type: ignore[valid-type]

    @property
    def default_activation(self) -> ActivationSpec:
        return getattr(self, "activation", None) or ReLU()

    def layer_specs(self, shape: Shape, outputs: int) -> Placed:
        """The layers this model is made of, ending in ``outputs`` units."""
        raise NotImplementedError


def _head(shape_rank: int, outputs: int) -> Placed:
    flatten: Placed = [(Flatten(), "/model")] if shape_rank != 1 else []
    return [*flatten, (Dense(units=outputs), "/model")]


def _placed(layers: list[LayerSpec], at: str) -> Placed:
    return [(layer, f"{at}/{i}") for i, layer in enumerate(layers)]


@MODELS.add
class LinearModel(ModelSpec):
    """One linear layer: linear regression, or logistic / softmax regression through the loss."""

    type: Literal["linear"] = "linear"
    init: InitField = Field(default_factory=Default)  # type: ignore[valid-type]

    def layer_specs(self, shape: Shape, outputs: int) -> Placed:
        return _head(len(shape), outputs)


@MODELS.add
class MLP(ModelSpec):
    """Dense layers with an activation between each (dense → [dropconnect] → [batch_norm] →
    activation → [dropout]), then the output layer."""

    type: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(
        default_factory=lambda: [512, 256], max_length=64, description="the widths of the hidden dense layers, in order"
    )
    activation: ActivationField = Field(default_factory=ReLU)  # type: ignore[valid-type]
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    dropconnect: float = Field(0.0, ge=0.0, lt=1.0)
    batch_norm: bool = False

    def layer_specs(self, shape: Shape, outputs: int) -> Placed:
        layers: Placed = [(Flatten(), "/model")] if len(shape) != 1 else []
        for i, units in enumerate(self.hidden):
            at = f"/model/hidden/{i}"
            layers.append((Dense(units=units * self.activation.width_factor), at))
            if self.dropconnect:
                layers.append((DropConnect(p=self.dropconnect), "/model/dropconnect"))
            if self.batch_norm:
                layers.append((BatchNorm(), "/model/batch_norm"))
            layers.append((Activation(), at))
            if self.dropout:
                layers.append((Dropout(p=self.dropout), "/model/dropout"))
        return [*layers, (Dense(units=outputs), "/model")]


@MODELS.add
class CNN(ModelSpec):
    """The given conv / pool / ... layers, then flatten and the output layer."""

    type: Literal["cnn"] = "cnn"
    layers: list[LayerUnion] = Field(  # type: ignore[valid-type]
        min_length=1,
        max_length=MAX_LAYERS,
        description="the conv / pool / ... layers before flatten and the output layer",
    )
    activation: ActivationField = Field(default_factory=ReLU)  # type: ignore[valid-type]

    def layer_specs(self, shape: Shape, outputs: int) -> Placed:
        return [*_placed(self.layers, "/model/layers"), (Flatten(), "/model"), (Dense(units=outputs), "/model")]


class RecurrentModelSpec(ModelSpec):
    cell: Literal["rnn", "lstm", "gru"] = "lstm"
    hidden: int = Field(64, ge=1, le=65536, description="the units of each recurrent layer")
    layers: int = Field(1, ge=1, le=16, description="the number of stacked recurrent layers")
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    def recurrent_layer(self) -> LayerSpec:
        cell: type[RecurrentSpec] = LAYERS.get(self.cell)  # type: ignore[assignment]
        return cell(hidden=self.hidden, layers=self.layers, bidirectional=self.bidirectional, dropout=self.dropout)


@MODELS.add
class RNNModel(RecurrentModelSpec):
    """A recurrent stack (rnn / lstm / gru) over (steps, features) sequences; its last state feeds the output."""

    type: Literal["rnn"] = "rnn"
    init: InitField = Field(default_factory=Default)  # type: ignore[valid-type]
    embedding: int | None = Field(None, ge=1, le=65536, description="token embedding size for text data (default 32)")

    def layer_specs(self, shape: Shape, outputs: int) -> Placed:
        return [(self.recurrent_layer(), "/model"), (Dense(units=outputs), "/model")]


@MODELS.add
class CNNRNN(ModelSpec):
    """Conv layers extract features; their map is read as a sequence by a recurrent stack."""

    type: Literal["cnn_rnn"] = "cnn_rnn"
    layers: list[LayerUnion] = Field(  # type: ignore[valid-type]
        min_length=1,
        max_length=MAX_LAYERS,
        description="the conv / pool / ... layers whose feature map the recurrent stack reads",
    )
    activation: ActivationField = Field(default_factory=ReLU)  # type: ignore[valid-type]
    rnn: RNN | LSTM | GRU = Field(default_factory=LSTM, discriminator="type")

    def layer_specs(self, shape: Shape, outputs: int) -> Placed:
        return [
            *_placed(self.layers, "/model/layers"),
            (ToSequenceLayer(), "/model"),
            (self.rnn.model_copy(update={"return_sequences": False}), "/model/rnn"),
            (Dense(units=outputs), "/model"),
        ]


@MODELS.add
class Sequential(ModelSpec):
    """An explicit layer list; the last layer must produce the task's outputs."""

    type: Literal["sequential"] = "sequential"
    layers: list[LayerUnion] = Field(  # type: ignore[valid-type]
        min_length=1, max_length=MAX_LAYERS, description="every layer of the model, in order"
    )
    activation: ActivationField = Field(default_factory=ReLU)  # type: ignore[valid-type]

    def layer_specs(self, shape: Shape, outputs: int) -> Placed:
        return _placed(self.layers, "/model/layers")


DEFAULT_EMBEDDING = 32


def _text_layers(spec: ModelSpec, input_shape: Shape, outputs: int, vocab_size: int) -> Placed:
    """The layers for text data (token ids of ``vocab_size`` tokens): a leading embedding layer gets
    the vocabulary; other models get one added (``sequential`` models must list it themselves)."""
    dim = getattr(spec, "embedding", None) or DEFAULT_EMBEDDING
    layers = spec.layer_specs((*input_shape, dim), outputs)
    if layers and isinstance(layers[0][0], Embedding):
        first, where = layers[0]
        return [(first.with_vocab(vocab_size), where), *layers[1:]]
    if isinstance(spec, Sequential):
        raise SpecInvalid(
            [
                SpecError(
                    "/model/layers/0",
                    "text data (token ids) needs an embedding layer first",
                    'start with {"type": "embedding", "dim": 32}',
                )
            ]
        )
    where = "/model/embedding" if "embedding" in type(spec).model_fields else "/model"
    return [(Embedding(dim=dim).with_vocab(vocab_size), where), *layers]


def build_model(
    spec: ModelSpec, input_shape: Shape, outputs: int, *, count_flops: bool = False, vocab_size: int | None = None
) -> tuple[nn.Sequential, list[LayerRow]]:
    """Build the network for samples of ``input_shape`` and ``outputs`` output units; ``vocab_size``
    is given for text data (token ids), whose model starts with an embedding.

    Raises SpecInvalid naming the layer whose shape is impossible, or a last layer of the wrong width."""
    builder = LayerBuilder(spec.default_activation, count_flops=count_flops)
    if vocab_size is None:
        layers = spec.layer_specs(input_shape, outputs)
    else:
        layers = _text_layers(spec, input_shape, outputs, vocab_size)
    model, out = builder.sequence(layers, input_shape)
    if out != (outputs,):
        where = builder.rows[-1].pointer if builder.rows else "/model"
        raise SpecInvalid(
            [
                SpecError(
                    where,
                    f"the model ends with shape {'×'.join(map(str, out))} but the task needs {outputs} output(s)",
                    f"end with a flatten and a dense layer of {outputs} units",
                )
            ]
        )
    return model, builder.rows


def initialise(model: nn.Module, init: InitSpec) -> None:
    """Apply the spec's initialisation, then zero the last layer of residual blocks that ask for it."""
    init.apply(model)
    for module in model.modules():
        if isinstance(module, Residual) and module.zero_init_last:
            module.reset_last_layer()
