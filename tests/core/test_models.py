"""Every model type trains for two epochs on a data set that suits it."""

from __future__ import annotations

import math

import pytest
from torch import nn

from core.nn.models import MODELS
from tests.core.helpers import DIGITS, spec_document, train

SINE = {"type": "builtin", "name": "sine_series", "n_samples": 200, "length": 12}

# name: (spec overrides, torch module classes the built model must contain)
MODEL_CASES: dict[str, tuple[dict, tuple[type[nn.Module], ...]]] = {
    "linear": ({"model": {"type": "linear"}}, (nn.Linear,)),
    "mlp": ({"model": {"type": "mlp", "hidden": [32, 16], "dropout": 0.1}}, (nn.Linear, nn.ReLU, nn.Dropout)),
    "cnn": (
        {
            "model": {
                "type": "cnn",
                "layers": [
                    {"type": "conv", "filters": 8, "padding": "same"},
                    {"type": "activation"},
                    {"type": "max_pool"},
                ],
            }
        },
        (nn.Conv2d, nn.MaxPool2d, nn.Linear),
    ),
    "cnn_rnn": (
        {
            "model": {
                "type": "cnn_rnn",
                "layers": [{"type": "conv", "filters": 8, "padding": "same"}, {"type": "activation"}],
                "rnn": {"type": "gru", "hidden": 16},
            }
        },
        (nn.Conv2d, nn.GRU, nn.Linear),
    ),
    "sequential": (
        {
            "model": {
                "type": "sequential",
                "layers": [
                    {"type": "flatten"},
                    {"type": "dense", "units": 32},
                    {"type": "activation", "fn": {"type": "tanh"}},
                    {"type": "dense", "units": 10},
                ],
            }
        },
        (nn.Linear, nn.Tanh),
    ),
    "rnn": (
        {
            "task": "regression",
            "data": {"source": SINE, "batch_size": 32},
            "model": {"type": "rnn", "cell": "lstm", "hidden": 8},
        },
        (nn.LSTM, nn.Linear),
    ),
}


def test_model_expectations_cover_the_registry():
    assert set(MODEL_CASES) == set(MODELS.names())


@pytest.mark.parametrize("name", MODELS.names())
def test_model_trains_two_epochs(name):
    overrides, modules = MODEL_CASES[name]
    document = spec_document(optimizer={"type": "adam", "lr": 0.01}, **overrides)
    result = train(document)
    assert result.status == "succeeded", result.failure
    assert result.epochs == 2
    train_size = len(result.splits.train)
    assert result.steps == 2 * math.ceil(train_size / document["data"]["batch_size"])
    present = {type(m) for m in result.model.modules()}
    for module in modules:
        assert module in present, f"{name} must contain {module.__name__}"
    losses = result.history.series("train_loss")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert losses[1] < losses[0], "two epochs of training lower the training loss"
    assert math.isfinite(result.final["test_loss"])
    if document.get("task", "classification") == "classification":
        assert document["data"]["source"] == DIGITS
        assert result.final["val_accuracy"] > 0.5  # chance is 0.1


def test_recurrent_model_on_text_gets_an_embedding():
    document = spec_document(
        task="binary",
        data={"source": {"type": "builtin", "name": "toy_text", "n_samples": 200, "length": 16}, "batch_size": 32},
        model={"type": "rnn", "cell": "gru", "hidden": 8, "embedding": 12},
        optimizer={"type": "adam", "lr": 0.01},
    )
    result = train(document)
    assert result.status == "succeeded", result.failure
    first = next(iter(result.model.children()))
    assert isinstance(first, nn.Embedding) and first.embedding_dim == 12
    assert first.num_embeddings == result.plan.vocab_size
    assert result.plan.layer_table[0].pointer == "/model/embedding"
