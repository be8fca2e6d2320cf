"""mixup (inputs and targets mixed by one weight, training only) and color_jitter (brightness and
contrast on standardized images), alone and in a digits CNN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.data.augment import AUGMENTATIONS
from core.data.dataset import Dataset
from core.engine.events import Callback
from core.engine.plan import plan_experiment, validate_document
from core.engine.run import prepare_splits, run_experiment
from core.optim.losses import LOSSES
from core.spec.schema import parse_spec
from tests.core.helpers import DIGITS, spec_document, train

N = 12


def mixup(p: float = 1.0, alpha: float = 1.0, data: Dataset | None = None):
    augmentation = AUGMENTATIONS.get("mixup")(p=p, alpha=alpha)
    if data is not None:
        augmentation.prepare(data)
    return augmentation


def identity_rows() -> torch.Tensor:
    """Row i is the unit vector e_i: a mixed row shows its partner and weight directly."""
    return torch.eye(N)


def read_mix(mixed_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each mixed row's own weight and partner row (itself when left unmixed)."""
    own = mixed_x.diagonal()
    others = mixed_x - torch.diag(own)
    partner = torch.where(others.amax(1) > 0, others.argmax(1), torch.arange(N))
    return own, partner


TARGETS = {
    "class indices": (torch.arange(N) % 3, ["a", "b", "c"]),
    "binary": ((torch.arange(N) % 2).float(), ["no", "yes"]),
    "regression (N, 2)": (torch.randn(N, 2, generator=torch.Generator().manual_seed(1)), None),
}


@pytest.mark.parametrize("targets", TARGETS, ids=list(TARGETS))
def test_mixup_mixes_targets_by_the_weight_of_the_inputs(targets):
    y, classes = TARGETS[targets]
    data = Dataset(identity_rows(), y, "tabular", classes)
    torch.manual_seed(0)
    x_mixed, y_mixed = mixup(data=data).apply(data.x, data.y)
    weight, partner = read_mix(x_mixed)
    moved = partner != torch.arange(N)
    assert moved.sum() > N // 2
    lam = weight[moved][0]
    assert 0.0 < lam.item() < 1.0
    torch.testing.assert_close(weight[moved], lam.expand(int(moved.sum())))  # one weight per batch
    expected = F.one_hot(y, 3).float() if classes == ["a", "b", "c"] else y
    w = lam.view(-1, *[1] * (expected.dim() - 1))
    torch.testing.assert_close(y_mixed[moved], w * expected[moved] + (1 - w) * expected[partner[moved]])
    assert y_mixed.dtype == torch.float32 and y_mixed.shape == expected.shape


def test_mixup_with_p_leaves_the_other_samples_and_their_targets_alone():
    y = torch.arange(N) % 3
    data = Dataset(identity_rows(), y, "tabular", ["a", "b", "c"])
    torch.manual_seed(3)
    x_mixed, y_mixed = mixup(p=0.5, data=data).apply(data.x, data.y)
    weight, partner = read_mix(x_mixed)
    kept = weight == 1.0
    assert 0 < kept.sum() < N
    one_hot = F.one_hot(y, 3).float()
    torch.testing.assert_close(y_mixed[kept], one_hot[kept])
    w = weight.view(-1, 1)
    torch.testing.assert_close(y_mixed, w * one_hot + (1 - w) * one_hot[partner])
    assert torch.equal(y_mixed.argmax(1)[weight > 0.5], y[weight > 0.5])  # the dominant label is the own one


def test_mixup_at_p0_is_the_identity_and_plain_calls_are_refused():
    data = Dataset(identity_rows(), torch.arange(N) % 3, "tabular", ["a", "b", "c"])
    x, y = mixup(p=0.0, data=data).apply(data.x, data.y)
    assert x is data.x and y is data.y
    with pytest.raises(TypeError, match="apply"):
        mixup(data=data)(data.x)
    with pytest.raises(RuntimeError, match="prepare"):
        mixup().apply(data.x, data.y)


def test_mixup_does_not_apply_to_text_and_needs_alpha_above_0():
    text = validate_document(
        {"task": "binary", "data": {"source": {"type": "builtin", "name": "toy_text"}, "augment": [{"type": "mixup"}]}}
    )
    assert [e["pointer"] for e in text["errors"]] == ["/data/augment/0/type"]
    assert "does not apply to text data" in text["errors"][0]["message"]
    alpha = validate_document({"data": {"source": DIGITS, "augment": [{"type": "mixup", "alpha": 0}]}})
    assert [e["pointer"] for e in alpha["errors"]] == ["/data/augment/0/alpha"]


@pytest.mark.parametrize("name", ["cross_entropy", "bce"])
def test_losses_on_mixed_targets_are_the_mix_of_the_losses(name):
    """Cross-entropy (with label smoothing) and BCE are linear in the target: the loss of a mixed
    target is λ·loss(y_a) + (1 − λ)·loss(y_b), the mixup paper's form."""
    g = torch.Generator().manual_seed(0)
    lam = 0.3
    if name == "cross_entropy":
        loss = LOSSES.get(name)(label_smoothing=0.1).build()
        output, a, b = torch.randn(8, 4, generator=g), torch.randint(0, 4, (8,), generator=g), torch.arange(8) % 4
        mixed = lam * F.one_hot(a, 4).float() + (1 - lam) * F.one_hot(b, 4).float()
    else:
        loss = LOSSES.get(name)().build()
        output, a, b = torch.randn(8, generator=g), (torch.arange(8) % 2).float(), (torch.arange(8) < 4).float()
        mixed = lam * a + (1 - lam) * b
    torch.testing.assert_close(loss(output, mixed), lam * loss(output, a) + (1 - lam) * loss(output, b))


class Batches(Callback):
    def __init__(self) -> None:
        self.targets: list[torch.Tensor] = []

    def on_batch_start(self, state) -> None:
        self.targets.append(state.batch[1].clone())


def test_mixup_trains_on_soft_targets_and_evaluates_on_clean_data():
    document = spec_document(epochs=2, data={"source": DIGITS, "augment": [{"type": "mixup", "alpha": 1.0}]})
    spec = parse_spec(document)
    plan = plan_experiment(spec)
    seen = Batches()
    result = run_experiment(spec, plan=plan, callbacks=[seen], device="cpu")  # the spec its plan prepared
    assert result.status == "succeeded"
    for y in seen.targets:
        assert y.dtype == torch.float32 and y.shape[1] == 10
        torch.testing.assert_close(y.sum(1), torch.ones(len(y)))
    assert (seen.targets[0].amax(1) < 1.0).any(), "training targets are mixed"
    clean = prepare_splits(spec, plan.data)
    with torch.no_grad():
        model = result.model.eval()
        val_loss = F.cross_entropy(model(clean.validation.x), clean.validation.y).item()
        test_accuracy = (model(clean.test.x).argmax(1) == clean.test.y).float().mean().item()
    assert result.final["val_loss"] == pytest.approx(val_loss, rel=1e-4)
    assert result.final["test_accuracy"] == pytest.approx(test_accuracy, abs=1e-6)
    assert 0.0 <= result.final["train_accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("task", "source", "loss"),
    [
        ("binary", {"type": "builtin", "name": "breast_cancer"}, "bce"),
        ("regression", {"type": "builtin", "name": "diabetes"}, "mse"),
    ],
)
def test_mixup_trains_binary_and_regression_models(task, source, loss):
    document = spec_document(
        task=task,
        epochs=3,
        data={"source": source, "batch_size": 64, "augment": [{"type": "mixup", "alpha": 0.4}]},
        loss={"type": loss},
        optimizer={"type": "adam", "lr": 0.01},
    )
    result = train(document)
    assert result.status == "succeeded"
    losses = result.history.series("train_loss")
    assert len(losses) == 3 and losses[-1] < losses[0]
    if task == "binary":
        assert result.final["train_accuracy"] > 0.7 and result.final["val_accuracy"] > 0.85


# --- color_jitter -----------------------------------------------------------------------------------


def images() -> torch.Tensor:
    return torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def jitter(**fields):
    return AUGMENTATIONS.get("color_jitter")(p=1.0, **fields)


def test_brightness_shifts_each_image_by_a_constant_within_range():
    x = images()
    torch.manual_seed(0)
    shift = (jitter(brightness=0.4, contrast=0.0)(x) - x).flatten(1)
    torch.testing.assert_close(shift, shift[:, :1].expand_as(shift))  # one shift per image
    assert shift.abs().max().item() <= 0.4 and shift[:, 0].std().item() > 0.1


def test_contrast_scales_each_image_about_its_mean_within_range():
    x = images()
    torch.manual_seed(0)
    out = jitter(brightness=0.0, contrast=0.5)(x)
    mean = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean((1, 2, 3), keepdim=True), mean)  # no clamping: the mean stays
    factor = (out - mean).flatten(1).norm(dim=1) / (x - mean).flatten(1).norm(dim=1)
    torch.testing.assert_close(out - mean, factor.view(-1, 1, 1, 1) * (x - mean), atol=1e-5, rtol=1e-5)
    assert ((factor >= 0.5 - 1e-5) & (factor <= 1.5 + 1e-5)).all() and factor.std().item() > 0.1
    assert out.min() < 0.0 and out.max() > 1.0, "standardized values are not clamped to [0, 1]"


def test_color_jitter_at_p0_is_the_identity_and_must_change_something():
    x = images()
    assert torch.equal(AUGMENTATIONS.get("color_jitter")(p=0.0)(x), x)
    report = validate_document(
        {"data": {"source": DIGITS, "augment": [{"type": "color_jitter", "brightness": 0, "contrast": 0}]}}
    )
    assert [e["pointer"] for e in report["errors"]] == ["/data/augment/0"]
    report = validate_document(
        {"data": {"source": {"type": "builtin", "name": "iris"}, "augment": [{"type": "color_jitter"}]}}
    )
    assert "does not apply to tabular data" in report["errors"][0]["message"]


# --- a digits CNN with both --------------------------------------------------------------------------


def test_digits_cnn_trains_with_color_jitter_and_mixup():
    document = spec_document(
        epochs=4,
        data={
            "source": DIGITS,
            "batch_size": 64,
            "augment": [
                {"type": "color_jitter", "brightness": 0.3, "contrast": 0.3, "p": 0.5},
                {"type": "mixup", "alpha": 0.2},
            ],
        },
        model={
            "type": "cnn",
            "layers": [
                {"type": "conv", "filters": 8, "kernel": 3, "padding": "same"},
                {"type": "activation"},
                {"type": "max_pool", "kernel": 2},
            ],
        },
        optimizer={"type": "adam", "lr": 0.01},
    )
    result = train(document)
    assert result.status == "succeeded"
    assert result.final["val_accuracy"] > 0.8 and result.final["test_accuracy"] > 0.8  # chance is 0.1
    assert result.final["train_accuracy"] > 0.5
