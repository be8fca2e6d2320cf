"""Every registry entry, parametrized over the registry's names: a new entry must come with an
expectation here, and an entry that is removed or ignores its parameters fails."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.nn.activations import ACTIVATIONS
from core.nn.inits import INITS
from core.optim.losses import DEFAULT_LOSS, LOSSES
from core.optim.optimizers import OPTIMIZERS
from core.optim.schedules import SCHEDULES
from core.spec.schema import parse_spec
from tests.core.helpers import DIGITS

# ---------------------------------------------------------------------------------------------
# activations: the module's output on a known input against the formula


SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def _maxout_by_hand(x: torch.Tensor, pieces: int) -> torch.Tensor:
    rows = []
    for row in x.tolist():
        rows.append([max(row[i : i + pieces]) for i in range(0, len(row), pieces)])
    return torch.tensor(rows)


ACTIVATION_CASES: dict[str, list[tuple[dict, Callable[[torch.Tensor], torch.Tensor]]]] = {
    "sigmoid": [({}, lambda x: 1.0 / (1.0 + torch.exp(-x)))],
    "tanh": [({}, lambda x: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)))],
    "relu": [({}, lambda x: torch.where(x > 0, x, torch.zeros_like(x)))],
    "leaky_relu": [
        ({}, lambda x: torch.where(x > 0, x, 0.01 * x)),
        ({"negative_slope": 0.2}, lambda x: torch.where(x > 0, x, 0.2 * x)),
    ],
    "prelu": [
        ({}, lambda x: torch.where(x > 0, x, 0.25 * x)),
        ({"init": 0.1}, lambda x: torch.where(x > 0, x, 0.1 * x)),
    ],
    "elu": [
        ({}, lambda x: torch.where(x > 0, x, torch.exp(x) - 1.0)),
        ({"alpha": 0.5}, lambda x: torch.where(x > 0, x, 0.5 * (torch.exp(x) - 1.0))),
    ],
    "selu": [({}, lambda x: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1.0)))],
    "maxout": [
        ({}, lambda x: _maxout_by_hand(x, 2)),
        ({"pieces": 3}, lambda x: _maxout_by_hand(x, 3)),
    ],
    "gelu": [({}, lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))))],
    "silu": [({}, lambda x: x / (1.0 + torch.exp(-x)))],
}


def test_activation_expectations_cover_the_registry():
    assert set(ACTIVATION_CASES) == set(ACTIVATIONS.names())


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_activation_matches_formula(name):
    x = torch.linspace(-4.0, 4.0, 24).reshape(2, 12)
    x = x[:, torch.randperm(12, generator=torch.Generator().manual_seed(0))]  # not sorted: maxout must group
    for kwargs, formula in ACTIVATION_CASES[name]:
        module = ACTIVATIONS.get(name)(**kwargs).build()
        with torch.no_grad():
            out = module(x)
        expected = formula(x)
        assert out.shape == expected.shape, (name, kwargs)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5, msg=f"{name} {kwargs}")


def test_maxout_halves_the_features_and_takes_the_max_of_each_group():
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0, 0.5, 0.25]])
    out = ACTIVATIONS.get("maxout")().build()(x)
    assert out.tolist() == [[5.0, -2.0, 0.5]]


def test_prelu_slope_is_a_learned_parameter():
    module = ACTIVATIONS.get("prelu")().build()
    params = list(module.parameters())
    assert len(params) == 1 and params[0].requires_grad
    assert params[0].item() == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------
# inits: statistics of a large weight against the formula

FAN_OUT, FAN_IN = 200, 800  # nn.Linear(800, 200): weight (200, 800)


def _std_close(weight: torch.Tensor, expected: float) -> None:
    assert weight.mean().item() == pytest.approx(0.0, abs=expected * 0.02)
    assert weight.std().item() == pytest.approx(expected, rel=0.03)


def _check_default(before: torch.Tensor, after: torch.Tensor, bias_before, bias_after) -> None:
    assert torch.equal(before, after), "default must leave PyTorch's initialisation untouched"
    assert torch.equal(bias_before, bias_after)
    assert bias_after.abs().sum() > 0  # PyTorch's bias init, not zeroed


def _check_zeros(before, after, bias_before, bias_after) -> None:
    assert torch.count_nonzero(after) == 0


def _check_normal(before, after, bias_before, bias_after) -> None:
    _std_close(after, 0.01)


def _check_xavier_normal(before, after, bias_before, bias_after) -> None:
    _std_close(after, math.sqrt(2.0 / (FAN_IN + FAN_OUT)))


def _check_xavier_uniform(before, after, bias_before, bias_after) -> None:
    bound = math.sqrt(6.0 / (FAN_IN + FAN_OUT))
    assert after.abs().max().item() <= bound
    assert after.abs().max().item() > 0.99 * bound
    _std_close(after, bound / math.sqrt(3.0))


def _check_lecun_normal(before, after, bias_before, bias_after) -> None:
    _std_close(after, 1.0 / math.sqrt(FAN_IN))


def _check_kaiming(before, after, bias_before, bias_after) -> None:
    _std_close(after, math.sqrt(2.0 / FAN_IN))


def _check_orthogonal(before, after, bias_before, bias_after) -> None:
    torch.testing.assert_close(after @ after.T, torch.eye(FAN_OUT), atol=1e-4, rtol=0)


INIT_CASES: dict[str, Callable] = {
    "default": _check_default,
    "zeros": _check_zeros,
    "normal": _check_normal,
    "xavier_normal": _check_xavier_normal,
    "xavier_uniform": _check_xavier_uniform,
    "lecun_normal": _check_lecun_normal,
    "kaiming": _check_kaiming,
    "orthogonal": _check_orthogonal,
}


def test_init_expectations_cover_the_registry():
    assert set(INIT_CASES) == set(INITS.names())


@pytest.mark.parametrize("name", INITS.names())
def test_init_statistics_match_formula(name):
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    before, bias_before = layer.weight.detach().clone(), layer.bias.detach().clone()
    spec = INITS.get(name)()
    spec.apply(nn.Sequential(layer))
    INIT_CASES[name](before, layer.weight.detach(), bias_before, layer.bias.detach())
    if name != "default":
        assert torch.count_nonzero(layer.bias) == 0, "weights are initialised, biases zeroed"


def test_normal_init_takes_std_and_mean():
    layer = nn.Linear(FAN_IN, FAN_OUT)
    INITS.get("normal")(std=1.0, mean=0.5).apply(layer)
    assert layer.weight.mean().item() == pytest.approx(0.5, abs=0.01)
    assert layer.weight.std().item() == pytest.approx(1.0, rel=0.03)


def test_kaiming_fan_out_mode():
    layer = nn.Linear(FAN_IN, FAN_OUT)
    INITS.get("kaiming")(mode="fan_out").apply(layer)
    _std_close(layer.weight.detach(), math.sqrt(2.0 / FAN_OUT))


def test_fan_in_of_a_conv_kernel_counts_the_receptive_field():
    conv = nn.Conv2d(16, 64, 3)  # fan_in = 16 * 3 * 3 = 144
    INITS.get("lecun_normal")().apply(conv)
    _std_close(conv.weight.detach(), 1.0 / math.sqrt(144))
    INITS.get("kaiming")().apply(conv)
    _std_close(conv.weight.detach(), math.sqrt(2.0 / 144))


def test_inits_reach_recurrent_weights():
    rnn = nn.LSTM(8, 16)
    INITS.get("zeros")().apply(rnn)
    assert all(torch.count_nonzero(p) == 0 for p in rnn.parameters())


# ---------------------------------------------------------------------------------------------
# optimizers: the torch class, what reaches the param group, and the state after one step

OPTIMIZER_CASES: dict[str, tuple[dict, type, dict, set[str]]] = {
    "sgd": (
        {"lr": 0.05, "weight_decay": 0.01, "momentum": 0.9, "nesterov": True},
        torch.optim.SGD,
        {"momentum": 0.9, "nesterov": True},
        {"momentum_buffer"},
    ),
    "adagrad": ({"lr": 0.05, "weight_decay": 0.01, "eps": 1e-6}, torch.optim.Adagrad, {"eps": 1e-6}, {"sum", "step"}),
    "rmsprop": (
        {"lr": 0.05, "weight_decay": 0.01, "alpha": 0.9, "momentum": 0.5},
        torch.optim.RMSprop,
        {"alpha": 0.9, "momentum": 0.5},
        {"square_avg", "momentum_buffer", "step"},
    ),
    "adam": (
        {"lr": 0.05, "weight_decay": 0.01, "betas": [0.8, 0.95], "eps": 1e-6},
        torch.optim.Adam,
        {"betas": (0.8, 0.95), "eps": 1e-6},
        {"exp_avg", "exp_avg_sq", "step"},
    ),
    "adamw": (
        {"lr": 0.05, "weight_decay": 0.01, "betas": [0.8, 0.95]},
        torch.optim.AdamW,
        {"betas": (0.8, 0.95)},
        {"exp_avg", "exp_avg_sq", "step"},
    ),
}


def test_optimizer_expectations_cover_the_registry():
    assert set(OPTIMIZER_CASES) == set(OPTIMIZERS.names())


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimizer_builds_torch_optimizer_with_its_options(name):
    kwargs, torch_class, group_values, state_keys = OPTIMIZER_CASES[name]
    spec = OPTIMIZERS.get(name).model_validate({"type": name, **kwargs})
    weight = nn.Parameter(torch.ones(4, 3))
    optimizer = spec.build([weight], torch.device("cpu"))
    assert type(optimizer) is torch_class
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(kwargs["lr"])
    assert group["weight_decay"] == pytest.approx(kwargs["weight_decay"])
    for key, value in group_values.items():
        assert group[key] == pytest.approx(value), key
    weight.grad = torch.full_like(weight, 0.5)
    optimizer.step()
    assert state_keys <= set(optimizer.state[weight]), sorted(optimizer.state[weight])
    assert not torch.equal(weight.detach(), torch.ones(4, 3)), "one step must move the weight"


def test_plain_sgd_has_no_momentum_buffer_and_steps_by_lr_times_grad():
    spec = OPTIMIZERS.get("sgd")(lr=0.1)
    weight = nn.Parameter(torch.ones(2, 2))
    optimizer = spec.build([weight], torch.device("cpu"))
    weight.grad = torch.ones(2, 2)
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.full((2, 2), 0.9))
    assert optimizer.state[weight].get("momentum_buffer") is None


def test_adamw_defaults_to_weight_decay_001():
    assert OPTIMIZERS.get("adamw")().weight_decay == pytest.approx(0.01)
    assert OPTIMIZERS.get("adam")().weight_decay == 0.0


# ---------------------------------------------------------------------------------------------
# schedules: the lr multiplier the real torch scheduler produces at given epochs

BASE_LR = 0.1
EPOCHS, STEPS = 10, 4


def _lrs(spec, epochs: int = EPOCHS, steps: int = STEPS) -> list[float]:
    """lr in effect at every optimizer step, stepping the scheduler as the trainer does."""
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=BASE_LR)
    scheduler = spec.build(optimizer, epochs, steps)
    out = []
    for _ in range(epochs * steps):
        out.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.zeros(1)
        optimizer.step()
        scheduler.step()
    return out


def _multiplier_at(lrs: list[float], epoch: float) -> float:
    return lrs[round(epoch * STEPS)] / BASE_LR


def _check_constant(cls) -> None:
    assert _lrs(cls()) == pytest.approx([BASE_LR] * EPOCHS * STEPS)


def _check_step(cls) -> None:
    lrs = _lrs(cls(step_size=3, gamma=0.5))
    for epoch in range(EPOCHS):
        assert _multiplier_at(lrs, epoch) == pytest.approx(0.5 ** (epoch // 3)), epoch
        assert _multiplier_at(lrs, epoch + 0.75) == pytest.approx(0.5 ** (epoch // 3)), epoch


def _check_exponential(cls) -> None:
    lrs = _lrs(cls(gamma=0.8))
    for epoch in range(EPOCHS):
        assert _multiplier_at(lrs, epoch) == pytest.approx(0.8**epoch), epoch


def _check_cosine(cls) -> None:
    lrs = _lrs(cls())
    assert _multiplier_at(lrs, 0) == pytest.approx(1.0)
    assert _multiplier_at(lrs, EPOCHS / 2) == pytest.approx(0.5)
    assert _multiplier_at(lrs, 2.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert lrs[-1] / BASE_LR < 0.01


def _check_warmup_cosine(cls) -> None:
    lrs = _lrs(cls(warmup_epochs=2))
    assert _multiplier_at(lrs, 0) == pytest.approx(0.0)
    assert _multiplier_at(lrs, 1) == pytest.approx(0.5)
    assert _multiplier_at(lrs, 2) == pytest.approx(1.0)
    assert _multiplier_at(lrs, 6) == pytest.approx(0.5)  # half-way through the 8 decay epochs
    peak = round(2 * STEPS)
    assert all(a < b for a, b in itertools.pairwise(lrs[: peak + 1])), "ramps up"
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:])), "then decays"


def _check_warmup_linear(cls) -> None:
    lrs = _lrs(cls(warmup_epochs=2))
    assert _multiplier_at(lrs, 0) == pytest.approx(0.0)
    assert _multiplier_at(lrs, 1) == pytest.approx(0.5)
    assert _multiplier_at(lrs, 2) == pytest.approx(1.0)
    assert _multiplier_at(lrs, 6) == pytest.approx(0.5)
    assert _multiplier_at(lrs, 8) == pytest.approx(0.25)


def _check_one_cycle(cls) -> None:
    lrs = _lrs(cls(max_lr=0.4, pct_start=0.3, div_factor=20.0))
    assert lrs[0] == pytest.approx(0.4 / 20.0)
    assert max(lrs) == pytest.approx(0.4, rel=0.02)
    peak = lrs.index(max(lrs))
    assert abs(peak - 0.3 * EPOCHS * STEPS) <= 1
    assert lrs[-1] < 0.01 * 0.4


def _check_reduce_on_plateau(cls) -> None:
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=BASE_LR)
    scheduler = cls(factor=0.5, patience=2).build(optimizer, EPOCHS, STEPS)
    seen = []
    for _ in range(8):
        scheduler.step(1.0)  # a flat metric
        seen.append(optimizer.param_groups[0]["lr"])
    # the first value sets the best; the plateau counts from there and lr halves once patience is exceeded
    assert seen[:3] == pytest.approx([BASE_LR] * 3)
    assert seen[3] == pytest.approx(BASE_LR * 0.5)
    assert seen[-1] < seen[3]
    improving = cls(factor=0.5, patience=2)
    optimizer = torch.optim.SGD([weight], lr=BASE_LR)
    scheduler = improving.build(optimizer, EPOCHS, STEPS)
    for value in range(8):
        scheduler.step(10.0 - value)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(BASE_LR)


SCHEDULE_CASES: dict[str, Callable] = {
    "constant": _check_constant,
    "step": _check_step,
    "exponential": _check_exponential,
    "cosine": _check_cosine,
    "warmup_cosine": _check_warmup_cosine,
    "warmup_linear": _check_warmup_linear,
    "one_cycle": _check_one_cycle,
    "reduce_on_plateau": _check_reduce_on_plateau,
}


def test_schedule_expectations_cover_the_registry():
    assert set(SCHEDULE_CASES) == set(SCHEDULES.names())


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_lr_through_torch_scheduler(name):
    SCHEDULE_CASES[name](SCHEDULES.get(name))


# ---------------------------------------------------------------------------------------------
# losses: value against torch's functional, and which tasks each fits

_RNG = torch.Generator().manual_seed(0)
_LOGITS = torch.randn(6, 4, generator=_RNG)
_CLASSES = torch.tensor([0, 3, 1, 2, 2, 0])
_BINARY_LOGITS = torch.randn(6, generator=_RNG)
_BINARY = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
_PRED = torch.randn(6, generator=_RNG) * 3
_TARGET = torch.randn(6, generator=_RNG) * 3

LOSS_CASES: dict[str, tuple[dict, tuple[str, ...], tuple, Callable]] = {
    "cross_entropy": (
        {"label_smoothing": 0.2},
        ("classification",),
        (_LOGITS, _CLASSES),
        lambda o, t: F.cross_entropy(o, t, label_smoothing=0.2),
    ),
    "bce": ({}, ("binary",), (_BINARY_LOGITS, _BINARY), F.binary_cross_entropy_with_logits),
    "mse": ({}, ("regression",), (_PRED, _TARGET), lambda o, t: ((o - t) ** 2).mean()),
    "mae": ({}, ("regression",), (_PRED, _TARGET), lambda o, t: (o - t).abs().mean()),
    "huber": ({"delta": 0.5}, ("regression",), (_PRED, _TARGET), lambda o, t: F.huber_loss(o, t, delta=0.5)),
}


def test_loss_expectations_cover_the_registry():
    assert set(LOSS_CASES) == set(LOSSES.names())


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_value_and_tasks(name):
    kwargs, tasks, (output, target), expected = LOSS_CASES[name]
    spec_class = LOSSES.get(name)
    assert tuple(spec_class.tasks) == tasks
    value = spec_class(**kwargs).build()(output, target)
    torch.testing.assert_close(value, expected(output, target))


def test_label_smoothing_changes_the_loss():
    plain = LOSSES.get("cross_entropy")().build()(_LOGITS, _CLASSES)
    smooth = LOSSES.get("cross_entropy")(label_smoothing=0.2).build()(_LOGITS, _CLASSES)
    assert not torch.isclose(plain, smooth)


def test_huber_is_quadratic_inside_delta_and_linear_outside():
    loss = LOSSES.get("huber")(delta=1.0).build()
    assert loss(torch.tensor([0.5]), torch.tensor([0.0])).item() == pytest.approx(0.125)
    assert loss(torch.tensor([3.0]), torch.tensor([0.0])).item() == pytest.approx(2.5)


@pytest.mark.parametrize("task", ["classification", "binary", "regression"])
def test_default_loss_fits_the_task(task):
    source = DIGITS if task != "binary" else {"type": "builtin", "name": "breast_cancer"}
    spec = parse_spec({"task": task, "data": {"source": source}})
    assert spec.loss.type == DEFAULT_LOSS[task]().type
    assert task in spec.loss.tasks


@pytest.mark.parametrize("name", LOSSES.names())
def test_loss_accepted_only_for_its_tasks(name):
    from core.errors import SpecInvalid

    for task in ("classification", "binary", "regression"):
        document = {"task": task, "data": {"source": DIGITS}, "loss": {"type": name}}
        if task in LOSSES.get(name).tasks:
            assert parse_spec(document).loss.type == name
        else:
            with pytest.raises(SpecInvalid) as info:
                parse_spec(document)
            assert [e.pointer for e in info.value.errors] == ["/loss/type"]
