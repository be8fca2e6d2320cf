"""The captured training step (``compile``): on the CPU, torch.compile's step trains to the same
losses and weights as the eager one, for an MLP and a CNN, with the diagnostics' steps (eager,
forward hooks, gradients) in between; a model that cannot be captured trains eagerly with its
reason in the summary; a compile error mid-run falls back to eager from the same state.

Tolerance: compiled kernels sum in another order than eager ones, so weights differ by float32
rounding, ~1e-6 per step; after ~20 Adam steps they agree to 1e-4 absolute (Adam's update is
lr-sized whatever the gradient, so its rounding differences do not shrink with the gradient)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.utils import counters

from core.engine import distributed
from core.engine.capture import EAGER, plan_capture
from core.engine.plan import plan_experiment
from core.engine.precision import MixedPrecision
from core.engine.run import RunResult, run_experiment
from core.engine.step import TrainStep
from core.spec.schema import parse_spec
from tests.core.helpers import TWO_CONV_CNN, channels_last_on_the_cpu, second_conv, spec_document, train

LOSS_RTOL = 1e-4
WEIGHT_ATOL = 1e-4
# No bias before batch norm: its gradient is 0 up to rounding, which Adam scales up to lr-sized
# steps, so that bias would walk apart by ~lr per step between any two summation orders.
CNN = {
    "type": "cnn",
    "layers": [
        {"type": "conv", "filters": 4, "padding": "same", "bias": False},
        {"type": "batch_norm"},
        {"type": "activation"},
        {"type": "max_pool"},
    ],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def document(compile: str, **overrides: Any) -> dict[str, Any]:
    """Two epochs of digits with the diagnostics every 5 steps (eager steps among compiled ones)."""
    base = {
        "compile": compile,
        "optimizer": {"type": "adam", "lr": 0.01},
        "schedule": {"type": "warmup_cosine", "warmup_epochs": 1},  # the lr changes every step
        "diagnostics": {"activations": True, "gradients": True, "every_n_steps": 5},
    }
    return spec_document(**{**base, **overrides})


def assert_same_training(compiled: RunResult, eager: RunResult) -> None:
    assert compiled.summary()["step"] == "compiled" and compiled.summary()["eager_reason"] is None
    assert eager.summary()["step"] == "eager"
    measured = {p.name for p in eager.history.points if p.name.startswith(("grad_norm/", "update_ratio/", "act/"))}
    assert measured, "the diagnostics measured steps"
    for name in ("train_loss", "val_loss", "lr", *sorted(measured)):
        got, want = compiled.history.series(name), eager.history.series(name)
        assert len(got) == len(want) > 0, name
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=LOSS_RTOL, atol=0.0, msg=name)
    expected = eager.model.state_dict()
    for name, tensor in compiled.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0.0, atol=WEIGHT_ATOL, msg=name)


@pytest.mark.parametrize(
    "model, batch_size",
    [({"type": "mlp", "hidden": [32], "dropout": 0.0}, 128), (CNN, 98)],
    ids=["mlp", "cnn"],
)
def test_the_compiled_step_trains_as_the_eager_one(model: dict[str, Any], batch_size: int) -> None:
    """1077 training rows: the last batch is smaller (53, 97) and compiles a second forward graph."""
    data = {"source": {"type": "builtin", "name": "digits"}, "batch_size": batch_size}
    eager = train(document("off", model=model, data=data, regularization={"l2": 0.001, "early_stopping": None}))
    counters.clear()
    compiled = train(document("on", model=model, data=data, regularization={"l2": 0.001, "early_stopping": None}))
    assert counters["stats"]["unique_graphs"] == 3, "the run compiled two forward graphs and the optimizer's"
    assert_same_training(compiled, eager)
    assert eager.summary()["eager_reason"] == "compile is 'off'"


FRACTIONAL = {"type": "cnn", "layers": [{"type": "conv", "filters": 2}, {"type": "fractional_max_pool", "ratio": 0.7}]}


def test_a_fractional_pooling_model_trains_eagerly_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trainyard.engine"):
        result = train(document("on", model=FRACTIONAL, epochs=1))
    summary = result.summary()
    assert summary["status"] == "succeeded" and summary["step"] == "eager"
    reason = summary["eager_reason"]
    assert reason.startswith("/model/layers/1 (fractional_max_pool): fractional max pooling draws random")
    assert reason in caplog.text


DIGITS = {"type": "builtin", "name": "digits"}
NESTED = [
    {"type": "conv", "filters": 2, "padding": "same"},
    {"type": "residual", "layers": [{"type": "conv", "filters": 2, "padding": "same"}, {"type": "dropconnect"}]},
]


@pytest.mark.parametrize(
    "task, source, model, reason",
    [
        (
            "classification",
            DIGITS,
            {"type": "mlp", "hidden": [8], "dropconnect": 0.3},
            "/model/dropconnect (dropconnect)",
        ),
        ("regression", {"type": "builtin", "name": "sine_series"}, {"type": "rnn", "cell": "gru"}, "/model (gru)"),
        ("classification", DIGITS, {"type": "cnn", "layers": NESTED}, "/model/layers/1/layers/1 (dropconnect)"),
    ],
    ids=["dropconnect", "gru", "nested"],
)
def test_uncapturable_layers_are_found_through_the_registry(
    task: str, source: dict[str, Any], model: dict[str, Any], reason: str
) -> None:
    plan = plan_experiment(parse_spec(spec_document(compile="on", task=task, model=model, data={"source": source})))
    capture = plan_capture(plan.spec, plan.layer_table, torch.device("cpu"))
    assert not capture.compiled and capture.reason.startswith(reason + ": "), capture.reason


def test_capture_follows_the_compile_field_and_the_device() -> None:
    plan = plan_experiment(parse_spec(spec_document()))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not plan_capture(plan.spec, plan.layer_table, cpu).compiled  # auto: eager on the CPU
    auto_cuda = plan_capture(plan.spec, plan.layer_table, cuda)
    assert auto_cuda.compiled and auto_cuda.mode == "reduce-overhead"
    assert not auto_cuda.optimizer, "Adam on CUDA is fused: its kernel is the whole optimizer step"
    on_cpu = plan_capture(plan.spec.model_copy(update={"compile": "on"}), plan.layer_table, cpu)
    assert on_cpu.compiled and on_cpu.mode is None and on_cpu.optimizer
    off = plan_capture(plan.spec.model_copy(update={"compile": "off"}), plan.layer_table, cuda)
    assert not off.compiled and off.reason == "compile is 'off'"
    one_cycle = parse_spec(spec_document(compile="on", schedule={"type": "one_cycle"}))
    capture = plan_capture(one_cycle, plan.layer_table, cpu)
    assert capture.compiled and not capture.optimizer and "one_cycle changes its momentum" in capture.reason


def test_a_compile_error_mid_run_goes_on_eagerly_from_the_same_state(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend that refuses the last, smaller batch's graph (compiled at step 9): the steps before
    ran compiled, the rest eagerly, and the run ends as the eager one does."""
    real_compile = torch.compile

    def refuse_small_batches(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Any:
        if any(isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[0] < 128 for t in inputs):
            raise RuntimeError("this backend refuses the last batch")
        return graph.forward

    def compile_with(function: Any, **options: Any) -> Any:
        return real_compile(function, **{**options, "mode": None, "backend": refuse_small_batches})

    monkeypatch.setattr(torch, "compile", compile_with)
    data = {"source": {"type": "builtin", "name": "digits"}, "batch_size": 128}
    model = {"type": "mlp", "hidden": [32], "dropout": 0.0}
    with caplog.at_level(logging.WARNING, logger="trainyard.engine"):
        fell_back = train(document("on", model=model, data=data))
    eager = train(document("off", model=model, data=data))
    summary = fell_back.summary()
    assert summary["step"] == "eager"
    assert summary["eager_reason"].startswith("torch.compile failed at step 9: ")
    assert "refuses the last batch" in summary["eager_reason"]
    assert f"training eagerly from here: {summary['eager_reason']}" in caplog.text
    expected = eager.model.state_dict()
    for name, tensor in fell_back.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0.0, atol=WEIGHT_ATOL, msg=name)


def test_a_backward_compile_error_redoes_the_step_eagerly(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """AOTAutograd compiles the backward at the first ``.backward()``, after the compiled forward
    ran (batch norm's running statistics updated): a backend whose backward compiler raises. The
    step is redone eagerly from the state before it, and the run ends as the eager one does, batch
    norm's statistics (the validation losses) included."""
    real_compile = torch.compile

    def refuse_backward(graph: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> Any:
        raise RuntimeError("this backend refuses the backward")

    backend = aot_autograd(
        fw_compiler=lambda graph, inputs: make_boxed_func(graph.forward), bw_compiler=refuse_backward
    )

    def compile_with(function: Any, **options: Any) -> Any:
        return real_compile(function, **{**options, "mode": None, "backend": backend})

    monkeypatch.setattr(torch, "compile", compile_with)
    data = {"source": {"type": "builtin", "name": "digits"}, "batch_size": 128}
    with caplog.at_level(logging.WARNING, logger="trainyard.engine"):
        fell_back = train(document("on", model=CNN, data=data))
    eager = train(document("off", model=CNN, data=data))
    summary = fell_back.summary()
    assert summary["status"] == "succeeded" and summary["step"] == "eager"
    assert summary["eager_reason"].startswith("torch.compile failed at step 2: ")  # step 1: the diagnostics'
    assert "refuses the backward" in summary["eager_reason"]
    assert f"training eagerly from here: {summary['eager_reason']}" in caplog.text
    for name in ("train_loss", "val_loss"):
        got, want = fell_back.history.series(name), eager.history.series(name)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=LOSS_RTOL, atol=0.0, msg=name)
    expected = eager.model.state_dict()
    for name, tensor in fell_back.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0.0, atol=WEIGHT_ATOL, msg=name)


def test_a_cnn_is_put_in_channels_last_before_ddp_wraps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_experiment converts the weights before ``distributed.wrap`` (DDP lays its gradient buckets
    out as the parameters are then); converted after, the gradients' strides stop matching them."""
    channels_last_on_the_cpu(monkeypatch)
    real_wrap, wrapped = distributed.wrap, []

    def wrap(model: torch.nn.Module, *args: Any) -> torch.nn.Module:
        wrapped.append(second_conv(model).weight.is_contiguous(memory_format=torch.channels_last))
        return real_wrap(model, *args)

    monkeypatch.setattr(distributed, "wrap", wrap)
    result = train(document("off", model=TWO_CONV_CNN, epochs=1))
    assert result.summary()["status"] == "succeeded"
    assert wrapped == [True], "the weights were in channels_last when the model was wrapped"
    assert second_conv(result.model).weight.is_contiguous(memory_format=torch.channels_last)


def test_the_step_converts_a_cnns_batches_not_its_weights() -> None:
    """On CUDA (only its device is read: fp32 has no autocast) the step decides that a CNN's batches
    go in channels_last; the weights are run_experiment's to convert, before any wrapper."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    seen = []
    model.register_forward_pre_hook(
        lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    step = TrainStep(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loss_fn=torch.nn.CrossEntropyLoss(),
        precision=MixedPrecision.of("fp32", torch.device("cuda")),
        capture=EAGER,
    )
    assert step.channels_last
    assert model[0].weight.is_contiguous() and not model[0].weight.is_contiguous(memory_format=torch.channels_last)
    step(torch.randn(4, 3, 5, 5), torch.tensor([0, 1, 0, 1]), observed=False, after_backward=lambda: None)
    assert seen == [True]
    assert model[0].weight.is_contiguous(), "the step left the weights' layout as it was"


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@CUDA
@pytest.mark.parametrize("optimizer", [{"type": "adam", "lr": 0.01}, {"type": "rmsprop", "lr": 0.001}])
def test_on_cuda_auto_captures_the_step_in_cuda_graphs(optimizer: dict[str, Any]) -> None:
    """CUDA graphs (reduce-overhead), channels_last weights, Adam fused (its step outside the graph)
    or RMSprop's step compiled with a tensor lr: the same training as eager, within cuDNN's own
    run-to-run differences."""
    data = {"source": {"type": "builtin", "name": "digits"}, "batch_size": 98}
    common = {"model": CNN, "data": data, "optimizer": optimizer}
    compiled = run_experiment(parse_spec(document("auto", **common)), device="cuda")
    eager = run_experiment(parse_spec(document("off", **common)), device="cuda")
    assert compiled.summary()["step"] == "compiled"
    assert compiled.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    for name in ("train_loss", "val_loss"):
        got, want = compiled.history.series(name), eager.history.series(name)
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-3, atol=0.0, msg=name)
    expected = eager.model.state_dict()
    for name, tensor in compiled.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0.0, atol=1e-3, msg=name)
