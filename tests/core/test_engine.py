"""The training engine: early stopping, determinism, schedules and penalties applied by the loop,
the metric history, and callback state."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from core.engine.callbacks import EarlyStopping
from core.engine.events import Callback, Event
from core.engine.trainer import Trainer
from core.nn.models import build_model, initialise
from core.spec.schema import parse_spec
from tests.core.helpers import IRIS, spec_document, train


class _WeightsPerEpoch(Callback):
    """A copy of the model's weights at the end of every epoch."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_epoch_end(self, state) -> None:
        self.weights[state.epoch] = copy.deepcopy(state.model.state_dict())


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- early stopping ------------------------------------------------------------------------------


@pytest.mark.parametrize("patience", [0, 1])
def test_early_stopping_stops_after_patience_and_restores_the_best_weights(patience):
    epochs = _WeightsPerEpoch()
    # min_delta larger than any change: only the first epoch counts as an improvement
    stopping = {"monitor": "val_loss", "patience": patience, "min_delta": 100.0}
    result = train(
        spec_document(epochs=10, optimizer={"type": "sgd", "lr": 0.1}, regularization={"early_stopping": stopping}),
        callbacks=[epochs],
    )
    assert result.status == "succeeded"
    assert result.epochs == patience + 2 < 10
    assert result.stop_reason is not None
    assert "early stopping" in result.stop_reason and "val_loss" in result.stop_reason
    assert len(result.history.series("val_loss")) == patience + 2
    assert _same_weights(result.model.state_dict(), epochs.weights[1]), "best (epoch 1) weights restored"
    assert not _same_weights(epochs.weights[1], epochs.weights[patience + 2])


def test_early_stopping_without_restore_keeps_the_last_weights():
    epochs = _WeightsPerEpoch()
    stopping = {"monitor": "val_loss", "patience": 0, "min_delta": 100.0, "restore_best": False}
    result = train(
        spec_document(epochs=10, optimizer={"type": "sgd", "lr": 0.1}, regularization={"early_stopping": stopping}),
        callbacks=[epochs],
    )
    assert result.epochs == 2
    assert _same_weights(result.model.state_dict(), epochs.weights[2])


def test_early_stopping_on_accuracy_waits_for_it_to_go_up():
    stopping = {"monitor": "val_accuracy", "patience": 0, "min_delta": 0.5}
    result = train(
        spec_document(epochs=10, optimizer={"type": "sgd", "lr": 0.1}, regularization={"early_stopping": stopping})
    )
    assert parse_spec(
        spec_document(regularization={"early_stopping": stopping})
    ).regularization.early_stopping.mode == ("max")
    assert result.epochs == 2 and "val_accuracy" in result.stop_reason


def test_without_early_stopping_every_epoch_runs():
    result = train(spec_document(epochs=4, regularization={"early_stopping": None}))
    assert result.epochs == 4 and result.stop_reason is None
    assert result.summary()["best_val_loss"] == min(result.history.series("val_loss"))  # the best, not the last


def test_early_stopping_state_round_trips():
    callback = EarlyStopping("val_loss", patience=3, mode="min", min_delta=0.0, restore_best=False)
    callback.best, callback.best_epoch, callback.waited = 0.25, 4, 2
    restored = EarlyStopping("val_loss", patience=3, mode="min", min_delta=0.0, restore_best=False)
    restored.load_state_dict(callback.state_dict())
    assert (restored.best, restored.best_epoch, restored.waited) == (0.25, 4, 2)


# --- determinism -------------------------------------------------------------------------------


def _noisy_document(seed: int) -> dict:
    return spec_document(
        seed=seed,
        epochs=2,
        data={"source": IRIS, "batch_size": 16, "augment": [{"type": "gaussian_noise", "std": 0.1}]},
        model={"type": "mlp", "hidden": [16], "dropout": 0.3},
    )


def test_same_seed_gives_identical_weights_and_metrics():
    first, second = train(_noisy_document(7)), train(_noisy_document(7))
    assert _same_weights(first.model.state_dict(), second.model.state_dict())
    assert first.history.series("train_loss") == second.history.series("train_loss")
    other = train(_noisy_document(8))
    assert not _same_weights(first.model.state_dict(), other.model.state_dict())


# --- what the loop applies: schedules, penalties ---------------------------------------------------


def test_the_loop_steps_the_schedule():
    result = train(
        spec_document(epochs=4, optimizer={"type": "sgd", "lr": 0.2}, schedule={"type": "exponential", "gamma": 0.5})
    )
    # lr is recorded after each epoch's steps: base · gamma^epoch
    assert result.history.series("lr") == pytest.approx([0.2 * 0.5**e for e in range(1, 5)], rel=1e-6)


def test_the_loop_feeds_reduce_on_plateau_its_metric():
    # an lr so small the training loss is flat: the plateau schedule halves lr each epoch after the first
    result = train(
        spec_document(
            epochs=4,
            optimizer={"type": "sgd", "lr": 1e-7},
            schedule={"type": "reduce_on_plateau", "monitor": "train_loss", "patience": 0, "factor": 0.5},
        )
    )
    assert result.history.series("lr") == pytest.approx([1e-7, 1e-7, 5e-8, 2.5e-8], rel=1e-6)


def test_warmup_starts_from_zero_lr_in_a_run():
    result = train(
        spec_document(
            epochs=4, optimizer={"type": "sgd", "lr": 0.1}, schedule={"type": "warmup_linear", "warmup_epochs": 2}
        )
    )
    # end of epoch 1: half-way up; end of epoch 2: the top; then linear decay to 0 at the end
    assert result.history.series("lr") == pytest.approx([0.05, 0.1, 0.05, 0.0], rel=1e-6, abs=1e-9)


def _trainer_for(regularization: dict) -> Trainer:
    from core.engine.events import State

    spec = parse_spec(
        {"data": {"source": IRIS}, "model": {"type": "mlp", "hidden": [5]}, "regularization": regularization}
    )
    torch.manual_seed(0)
    model, _ = build_model(spec.model, (4,), 3)
    initialise(model, spec.model.init)
    state = State(
        spec=spec,
        model=model,
        optimizer=spec.optimizer.build(model.parameters(), torch.device("cpu")),
        loss_fn=spec.loss.build(),
        device=torch.device("cpu"),
        steps_per_epoch=1,
    )
    return Trainer(state, [], scheduler=None, generator=torch.Generator().manual_seed(0))


def test_l1_and_l2_penalties_cover_weights_not_biases():
    trainer = _trainer_for({"l1": 0.003, "l2": 0.02, "early_stopping": None})
    model = trainer.state.model
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    with torch.no_grad():
        for bias in biases:
            bias.fill_(5.0)  # biases must not count
    expected = 0.02 * sum(w.pow(2).sum() for w in weights) + 0.003 * sum(w.abs().sum() for w in weights)
    torch.testing.assert_close(torch.as_tensor(trainer.penalty()), expected)
    assert trainer.penalty() != 0
    assert _trainer_for({"l1": 0.0, "l2": 0.0, "early_stopping": None}).penalty() == 0


def test_l2_shrinks_the_trained_weights():
    def weight_norm(l2: float) -> float:
        result = train(
            spec_document(
                epochs=5,
                model={"type": "linear"},
                optimizer={"type": "sgd", "lr": 0.1},
                regularization={"l2": l2, "early_stopping": None},
            )
        )
        return result.model[-1].weight.norm().item()

    assert weight_norm(0.5) < 0.5 * weight_norm(0.0)


# --- the record of a run -------------------------------------------------------------------------


class _Events(Callback):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def run_event(self, event: Event, state) -> None:
        if event not in (Event.BATCH_START, Event.AFTER_BACKWARD, Event.STEP_END, Event.METRICS):
            self.seen.append(event.value)


def test_events_fire_in_order():
    events = _Events()
    train(spec_document(epochs=2), callbacks=[events])
    assert events.seen == ["fit_start", *["epoch_start", "validation_end", "epoch_end"] * 2, "fit_end"]


def test_history_has_per_epoch_learning_curves_and_test_metrics():
    result = train(spec_document(epochs=3))
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        points = [p for p in result.history.points if p.name == name]
        assert [p.epoch for p in points] == [1, 2, 3], name
    assert set(result.final) >= {"train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"}
    assert 0.0 <= result.final["test_accuracy"] <= 1.0
    assert result.final["val_loss"] == result.history.series("val_loss")[-1]
    summary = result.summary()
    assert summary["status"] == "succeeded" and summary["epochs"] == 3
    assert summary["params"] == sum(p.numel() for p in result.model.parameters())


def test_regression_runs_have_no_accuracy():
    result = train(
        spec_document(
            task="regression",
            data={"source": {"type": "builtin", "name": "diabetes"}},
            model={"type": "mlp", "hidden": [16]},
        )
    )
    assert result.status == "succeeded"
    assert "val_accuracy" not in result.final and "test_accuracy" not in result.final
    assert math.isfinite(result.final["test_loss"])


def test_without_a_test_split_there_are_no_test_metrics():
    result = train(spec_document(data={"source": IRIS, "split": {"validation": 0.2, "test": 0.0}}))
    assert "test_loss" not in result.final
    assert len(result.splits.train) == 120 and len(result.splits.validation) == 30 and result.splits.test is None


def test_splits_are_stratified():
    result = train(spec_document(epochs=1, data={"source": IRIS, "split": {"validation": 0.2, "test": 0.2}}))
    for part in (result.splits.train, result.splits.validation, result.splits.test):
        counts = torch.bincount(part.y, minlength=3)
        assert counts.max() - counts.min() <= 1


def test_a_misspelt_hook_is_an_error_and_every_hook_is_declared():
    with pytest.raises(TypeError, match="on_epoch_ends"):

        class Misspelt(Callback):
            def on_epoch_ends(self, state) -> None: ...

    for event in Event:
        assert callable(getattr(Callback, f"on_{event.value}"))
        assert not Callback().handles(event), "the base callback is skipped by the loop"
