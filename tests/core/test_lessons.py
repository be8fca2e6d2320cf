"""The course notes' lessons, each reproduced by a spec and read off the run's metrics."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from core.engine.events import Callback
from core.engine.plan import validate_document
from tests.core.helpers import DIGITS, QUIET, spec_document, train


def first_value(result, name: str) -> float:
    """The first recorded value of a metric (for activations and gradients: at initialisation)."""
    values = result.history.series(name)
    assert values, f"no metric {name!r}; have {sorted({p.name for p in result.history.points})}"
    return values[0]


def layer_metrics(result, prefix: str, suffix: str) -> list[str]:
    """Metric names ``prefix/<layer>/...suffix`` in layer order (layer names start with their index)."""
    names = {p.name for p in result.history.points if p.name.startswith(prefix) and p.name.endswith(suffix)}
    return sorted(names, key=lambda n: int(n.split("/")[1].split("_")[0]))


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


class _AtFirstBatch(Callback):
    """Keeps a copy of the model and the first training batch before the first update
    (what step 0's diagnostics measure)."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def on_batch_start(self, state) -> None:
        if self.model is None:
            self.model = copy.deepcopy(state.model)
            self.x = state.batch[0].clone()


class _FirstGradients(Callback):
    """Gradient norms of every weight matrix after the first backward pass."""

    def __init__(self) -> None:
        self.norms: dict[str, float] | None = None

    def on_after_backward(self, state) -> None:
        if self.norms is None:
            self.norms = {
                name: p.grad.norm().item()
                for name, p in state.model.named_parameters()
                if p.dim() > 1 and p.grad is not None
            }


# --- initialisation -----------------------------------------------------------------------------


def _symmetric_run(init: str):
    return train(
        spec_document(
            epochs=3,
            model={
                "type": "mlp",
                "hidden": [16, 16],
                "activation": {"type": "sigmoid"},
                "init": {"type": init},
                "dropout": 0.0,  # dropout alone would break the symmetry
            },
            optimizer={"type": "sgd", "lr": 0.5},
            regularization={"early_stopping": None},
            diagnostics=QUIET,
        )
    )


def test_zeros_init_keeps_hidden_units_identical():
    result = _symmetric_run("zeros")
    assert result.status == "succeeded"
    first = linear_layers(result.model)[0].weight.detach()
    assert first.abs().max() > 0, "the weights did train"
    assert torch.equal(first, first[:1].expand_as(first)), "every hidden unit has the same incoming weights"
    second = linear_layers(result.model)[1].weight.detach()
    assert torch.equal(second, second[:1].expand_as(second))

    broken = _symmetric_run("xavier_normal")
    weights = linear_layers(broken.model)[0].weight.detach()
    assert not torch.allclose(weights, weights[:1].expand_as(weights))


def test_initial_loss_is_near_ln_c_with_default_init():
    quiet_init = {"activations": False, "gradients": True, "every_n_steps": 1000}
    result = train(spec_document(epochs=1, model={"type": "mlp", "init": {"type": "default"}}, diagnostics=quiet_init))
    assert first_value(result, "init_loss_expected") == pytest.approx(math.log(10))
    assert first_value(result, "init_loss") == pytest.approx(math.log(10), abs=0.25)

    large = train(
        spec_document(epochs=1, model={"type": "mlp", "init": {"type": "normal", "std": 1.0}}, diagnostics=quiet_init)
    )
    assert first_value(large, "init_loss") > 5 * math.log(10), "a large init starts far from ln C"


def test_initial_loss_expected_for_binary_is_ln_2():
    result = train(
        spec_document(
            epochs=1,
            task="binary",
            data={"source": {"type": "builtin", "name": "breast_cancer"}},
            model={"type": "mlp", "hidden": [16], "init": {"type": "default"}},
            diagnostics={"activations": False, "gradients": True, "every_n_steps": 1000},
        )
    )
    assert first_value(result, "init_loss_expected") == pytest.approx(math.log(2))
    assert first_value(result, "init_loss") == pytest.approx(math.log(2), abs=0.25)


# --- vanishing gradients, saturation, dead units ----------------------------------------------


def test_deep_sigmoid_network_has_vanishing_gradients_and_diagnostics_report_them():
    grads = _FirstGradients()
    result = train(
        spec_document(
            epochs=1,
            model={
                "type": "mlp",
                "hidden": [32] * 10,
                "activation": {"type": "sigmoid"},
                "init": {"type": "normal", "std": 0.01},
            },
            optimizer={"type": "sgd", "lr": 0.1},
            diagnostics={"activations": False, "gradients": True, "every_n_steps": 1},
        ),
        callbacks=[grads],
    )
    assert result.status == "succeeded"
    names = layer_metrics(result, "grad_norm/", ".weight")
    assert len(names) == 11, names
    first, last = first_value(result, names[0]), first_value(result, names[-1])
    assert first > 0
    assert last >= 100 * first, f"first layer {first:.3g} vs last layer {last:.3g}"
    # the recorded values are the true gradient norms of the first step
    for name in names:
        assert first_value(result, name) == pytest.approx(grads.norms[name.removeprefix("grad_norm/")], rel=1e-4)
    # recorded every step (every_n_steps 1) along with update / weight ratios
    assert len(result.history.series(names[0])) == result.steps
    assert len(result.history.series("update_ratio/" + names[0].removeprefix("grad_norm/"))) == result.steps


def test_relu_with_kaiming_keeps_gradients_flowing():
    result = train(
        spec_document(
            epochs=1,
            model={"type": "mlp", "hidden": [32] * 10, "init": {"type": "kaiming"}},
            optimizer={"type": "sgd", "lr": 0.01},
            diagnostics={"activations": False, "gradients": True, "every_n_steps": 1},
        )
    )
    names = layer_metrics(result, "grad_norm/", ".weight")
    first, last = first_value(result, names[0]), first_value(result, names[-1])
    assert last < 100 * first


def _activation_run(activation: str, init: dict, hidden: list[int]):
    at_start = _AtFirstBatch()
    result = train(
        spec_document(
            epochs=1,
            model={"type": "mlp", "hidden": hidden, "activation": {"type": activation}, "init": init, "dropout": 0.0},
            diagnostics={"activations": True, "gradients": False, "every_n_steps": 1000},
        ),
        callbacks=[at_start],
    )
    assert result.status == "succeeded"
    return result, at_start


def _outputs_of_activations(model: nn.Module, x: torch.Tensor, kind: type[nn.Module]) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.detach()))
        for name, module in model.named_modules()
        if isinstance(module, kind)
    ]
    model.eval()
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return outputs


def test_relu_diagnostics_report_dead_units():
    # weights with a negative mean: the second layer's inputs are ≥ 0, so its pre-activations are all < 0
    dead_run, start = _activation_run("relu", {"type": "normal", "mean": -0.5, "std": 0.01}, [64, 64])
    names = layer_metrics(dead_run, "act/", "/dead")
    assert len(names) == 2
    assert first_value(dead_run, names[1]) > 0.9
    # the metric is the fraction of units that are zero for every sample of the batch
    outputs = _outputs_of_activations(start.model, start.x, nn.ReLU)
    for name in names:
        layer = name.split("/")[1]
        expected = (outputs[layer] <= 0).all(dim=0).float().mean().item()
        assert first_value(dead_run, name) == pytest.approx(expected, abs=1e-6)

    healthy, _ = _activation_run("relu", {"type": "kaiming"}, [64, 64])
    assert all(first_value(healthy, name) < 0.1 for name in layer_metrics(healthy, "act/", "/dead"))


def test_sigmoid_saturates_with_a_large_init_and_not_with_xavier():
    large, start = _activation_run("sigmoid", {"type": "normal", "std": 1.0}, [256, 128])
    xavier, _ = _activation_run("sigmoid", {"type": "xavier_normal"}, [256, 128])
    large_names = layer_metrics(large, "act/", "/saturated")
    xavier_names = layer_metrics(xavier, "act/", "/saturated")
    assert len(large_names) == len(xavier_names) == 2
    assert not layer_metrics(large, "act/", "/dead"), "sigmoid units do not die, they saturate"
    for big, small in zip(large_names, xavier_names, strict=True):
        assert first_value(large, big) > 0.5
        assert first_value(xavier, small) < 0.1
    outputs = _outputs_of_activations(start.model, start.x, nn.Sigmoid)
    for name in large_names:
        y = outputs[name.split("/")[1]]
        expected = ((y < 0.02) | (y > 0.98)).float().mean().item()
        assert first_value(large, name) == pytest.approx(expected, abs=1e-6)
    assert first_value(large, large_names[0].replace("saturated", "std")) > first_value(
        xavier, xavier_names[0].replace("saturated", "std")
    )


# --- learning rate too high -------------------------------------------------------------------


def test_too_high_learning_rate_diverges_and_the_run_fails():
    result = train(
        spec_document(
            epochs=10,
            task="regression",
            data={"source": {"type": "builtin", "name": "diabetes"}, "preprocess": []},
            model={"type": "mlp", "hidden": [512, 256], "init": {"type": "normal", "std": 1.0}},
            optimizer={"type": "sgd", "lr": 10},
            schedule={"type": "constant"},
        )
    )
    assert result.status == "failed"
    assert result.failure is not None and "diverged" in result.failure
    assert result.epochs < 10, "the run stops as soon as the loss is no longer finite"
    assert "test_loss" not in result.final


def test_a_reasonable_learning_rate_does_not_diverge_on_the_same_data():
    result = train(
        spec_document(
            epochs=3,
            task="regression",
            data={"source": {"type": "builtin", "name": "diabetes"}},
            model={"type": "mlp", "hidden": [64]},
            optimizer={"type": "adam", "lr": 0.001},
        )
    )
    assert result.status == "succeeded" and result.failure is None


# --- a well-set-up MLP learns digits ------------------------------------------------------------


def test_digits_mlp_reaches_95_percent_in_under_a_minute():
    result = train({"name": "digits-mlp", "data": {"source": DIGITS}})
    assert result.status == "succeeded", result.failure
    assert result.final["test_accuracy"] >= 0.95
    assert result.seconds < 60


# --- conv padding through validation's layer table ----------------------------------------------


@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_keeps_the_size_and_valid_shrinks_it(kernel):
    layers = [
        {"type": "conv", "filters": 4, "kernel": kernel, "padding": "same"},
        {"type": "conv", "filters": 4, "kernel": kernel, "padding": "valid"},
        {"type": "conv", "filters": 4, "kernel": kernel, "padding": "full"},
    ]
    report = validate_document({"data": {"source": DIGITS}, "model": {"type": "cnn", "layers": layers}})
    assert report["valid"], report
    rows = {row["pointer"]: row["output_shape"] for row in report["layers"]}
    assert rows["/model/layers/0"] == [4, 8, 8]
    assert rows["/model/layers/1"] == [4, 8 - (kernel - 1), 8 - (kernel - 1)]
    assert rows["/model/layers/2"] == [4, 8, 8]
