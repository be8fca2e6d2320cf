"""Shared builders for the core tests: small specs, models built through the layer registry, runs on the CPU."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.engine import capture, step
from core.engine.events import Callback, State
from core.engine.run import RunResult, run_experiment
from core.nn.build import LayerRow
from core.nn.models import MODELS, build_model
from core.spec.schema import parse_spec

DIGITS = {"type": "builtin", "name": "digits"}
IRIS = {"type": "builtin", "name": "iris"}
QUIET = {"activations": False, "gradients": False}


def spec_document(**overrides: Any) -> dict[str, Any]:
    """A small, fast digits spec; ``overrides`` replace top-level keys."""
    document: dict[str, Any] = {
        "name": "test",
        "epochs": 2,
        "data": {"source": DIGITS, "batch_size": 128},
        "model": {"type": "mlp", "hidden": [32], "dropout": 0.0},
        "schedule": {"type": "constant"},
        "regularization": {"early_stopping": None},
        "diagnostics": QUIET,
    }
    document.update(overrides)
    return document


def train(document: dict[str, Any], **kwargs: Any) -> RunResult:
    """Parse and run a spec on the CPU."""
    return run_experiment(parse_spec(document), device="cpu", **kwargs)


def channels_last_on_the_cpu(monkeypatch: Any) -> None:
    """Train CNNs in channels_last on the CPU as on CUDA: capture's predicate, which run_experiment
    (the weights) and the step (each batch) ask, says yes for any model with a convolution."""

    def has_conv(model: nn.Module, device: torch.device) -> bool:
        return any(isinstance(m, nn.Conv2d) for m in model.modules())

    monkeypatch.setattr(capture, "channels_last", has_conv)
    monkeypatch.setattr(step, "channels_last", has_conv)


# Two convolutions: the second's weight has several input channels, where the layouts differ
# (with one input channel a weight is contiguous in both).
TWO_CONV_CNN = {
    "type": "cnn",
    "layers": [{"type": "conv", "filters": 4, "padding": "same"}, {"type": "conv", "filters": 4}, {"type": "max_pool"}],
}


def second_conv(model: nn.Module) -> nn.Conv2d:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)][1]


def build_layers(
    layers: list[dict[str, Any]],
    input_shape: tuple[int, ...],
    outputs: int = 3,
    activation: str = "relu",
    vocab_size: int | None = None,
) -> tuple[nn.Sequential, list[LayerRow]]:
    """A ``cnn`` model (the layers, then flatten and a dense head) built through the spec classes;
    ``vocab_size`` for token-id inputs."""
    spec = MODELS.get("cnn").model_validate({"type": "cnn", "layers": layers, "activation": {"type": activation}})
    return build_model(spec, input_shape, outputs, vocab_size=vocab_size)


def top_level_shapes(
    model: nn.Sequential, input_shape: tuple[int, ...], batch: int = 2, vocab_size: int | None = None
) -> dict[str, list[int]]:
    """The actual per-sample output shape of every top-level module on a random batch (eval mode)."""
    model.eval()
    tokens = vocab_size is not None
    x = torch.randint(0, vocab_size, (batch, *input_shape)) if tokens else torch.randn(batch, *input_shape)
    shapes = {}
    with torch.no_grad():
        for name, module in model.named_children():
            x = module(x)
            shapes[name] = list(x.shape[1:])
    return shapes


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value a JSON pointer (RFC 6901) names in ``document``; KeyError / IndexError if it names nothing."""
    node = document
    if pointer == "":
        return node
    assert pointer.startswith("/"), pointer
    for raw in pointer[1:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict):
            node = node[part]
        else:
            raise KeyError(part)
    return node


class StopAfter(Callback):
    """Cancels the run at the end of epoch ``epoch`` (a stopped run, to resume from its checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: State) -> None:
        if state.epoch == self.epoch:
            state.stop("stopped by the test", status="cancelled")
