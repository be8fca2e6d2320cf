"""Checkpoints: a run stopped after epoch 3 and resumed from its checkpoint ends with the same
weights as one trained straight through; a checkpoint is on the disk before it takes its place,
and one that cannot be read is skipped for the one before (of the same attempt, or an earlier
one); the time limit fails a run with its reason, counting the time every attempt trained."""

import functools
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.engine import callbacks
from core.engine import run as run_module
from core.engine.callbacks import TimeLimit
from core.engine.checkpoint import (
    TENSORS,
    TREE,
    Checkpointer,
    CheckpointPolicy,
    flatten,
    load_checkpoint,
    save_checkpoint,
    unflatten,
)
from core.engine.events import Callback, State
from core.engine.plan import plan_experiment
from core.engine.run import run_experiment, train_run
from core.optim import optimizers
from core.spec.schema import parse_spec
from tests.core.helpers import TWO_CONV_CNN, StopAfter, channels_last_on_the_cpu, second_conv

SPEC = {
    "seed": 3,
    "epochs": 6,
    "data": {"source": {"type": "builtin", "name": "digits"}},
    "model": {"type": "mlp", "hidden": [64], "dropout": 0.3},
    "optimizer": {"type": "adam", "lr": 0.003},
    "diagnostics": {"every_n_steps": 7},
}


def test_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    spec = parse_spec(SPEC)
    straight = run_experiment(spec, device="cpu")
    folder = tmp_path / "checkpoint"
    stopped = run_experiment(spec, device="cpu", callbacks=[Checkpointer(folder, 1), StopAfter(3)])
    assert stopped.status == "cancelled" and stopped.epochs == 3
    snapshot = load_checkpoint(folder)
    assert snapshot["epoch"] == 3 and "EarlyStopping.0" in snapshot["callbacks"]
    resumed = run_experiment(spec, device="cpu", resume_from=snapshot)
    assert resumed.epochs == 6
    expected = straight.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert resumed.final == straight.final
    without = run_experiment(spec, device="cpu", resume_from={**snapshot, "rng": torch.get_rng_state()})
    assert not all(torch.equal(t, expected[n]) for n, t in without.model.state_dict().items())  # RNG state matters


class OptimizerLayouts(Callback):
    """Whether each optimizer state tensor shaped as its parameter has its strides, as training starts."""

    def on_fit_start(self, state: State) -> None:
        self.matching = [
            value.stride() == p.stride()
            for p, values in state.optimizer.state.items()
            for value in values.values()
            if value.shape == p.shape
        ]


def test_a_resumed_channels_last_cnn_keeps_its_momentum_in_its_weights_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on CUDA: a CNN in channels_last, SGD fused (its CUDA build; fused runs on the CPU too).
    The checkpoint stores the momentum contiguous; restored, it takes its weight's layout again,
    else the fused step, which pairs the tensors' elements in memory order, updates the wrong ones."""
    channels_last_on_the_cpu(monkeypatch)
    monkeypatch.setattr(optimizers.SGD, "torch_class", functools.partial(torch.optim.SGD, fused=True))
    spec = parse_spec(
        {
            "seed": 3,
            "epochs": 3,
            "data": {"source": {"type": "builtin", "name": "digits"}, "batch_size": 256},
            "model": TWO_CONV_CNN,
            "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9},
            "diagnostics": {"activations": False, "gradients": False},
        }
    )
    straight = run_experiment(spec, device="cpu")
    assert second_conv(straight.model).weight.is_contiguous(memory_format=torch.channels_last)
    folder = tmp_path / "checkpoint"
    run_experiment(spec, device="cpu", callbacks=[Checkpointer(folder, 1), StopAfter(1)])
    snapshot = load_checkpoint(folder)
    assert all(values["momentum_buffer"].is_contiguous() for values in snapshot["optimizer"]["state"].values())
    layouts = OptimizerLayouts()
    resumed = run_experiment(spec, device="cpu", resume_from=snapshot, callbacks=[layouts])
    assert len(layouts.matching) == len(snapshot["optimizer"]["state"]) and all(layouts.matching)
    expected = straight.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_flatten_round_trips_optimizer_state() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tensors: dict[str, torch.Tensor] = {}
    tree = flatten({"optimizer": optimizer.state_dict(), "pair": (1, 2)}, tensors)
    restored = unflatten(tree, tensors)
    assert restored["pair"] == (1, 2)
    assert set(restored["optimizer"]["state"]) == {0, 1}  # integer keys survive JSON
    fresh = torch.optim.Adam(model.parameters())
    fresh.load_state_dict(restored["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_a_write_cut_short_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    assert load_checkpoint(folder) is None
    save_checkpoint(folder, {"epoch": 1, "w": torch.ones(2)})
    save_checkpoint(folder, {"epoch": 2, "w": torch.zeros(2)})
    assert load_checkpoint(folder)["epoch"] == 2
    shutil.rmtree(folder.with_name("checkpoint.old"))  # the next save drops epoch 1's,
    folder.rename(folder.with_name("checkpoint.old"))  # moves epoch 2's away, and dies before moving the new one in
    (tmp_path / "checkpoint.partial").mkdir()  # and a half-written next one
    assert load_checkpoint(folder)["epoch"] == 2


def test_a_checkpoint_is_on_the_disk_before_it_takes_its_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    fsync = os.fsync

    def recording(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording)
    root = tmp_path.resolve()
    save_checkpoint(root / "checkpoint", {"epoch": 1, "w": torch.ones(2)})
    partial = root / "checkpoint.partial"  # each file, then the folder, synced before the rename; then its parent
    assert synced == [str(partial / TENSORS), str(partial / TREE), str(partial), str(root)]


def test_an_unreadable_checkpoint_is_skipped_for_the_previous_one(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    for epoch in (1, 2, 3):
        save_checkpoint(folder, {"epoch": epoch, "w": torch.full((64,), float(epoch))})
    tensors = folder / TENSORS
    os.truncate(tensors, tensors.stat().st_size // 2)
    restored = load_checkpoint(folder)
    assert restored["epoch"] == 2 and torch.equal(restored["w"], torch.full((64,), 2.0))
    (folder.with_name("checkpoint.old") / TREE).write_text('{"epoch": 2, "w": {"__tens')
    assert load_checkpoint(folder) is None


class Epochs(Callback):
    """The epochs a training went through."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_epoch_end(self, state: State) -> None:
        self.seen.append(state.epoch)


def test_a_resumed_training_goes_on_from_the_newest_checkpoint_it_can_read(tmp_path: Path) -> None:
    plan = plan_experiment(parse_spec({**SPEC, "epochs": 5}))
    every_epoch = CheckpointPolicy(1, 0.0)

    def attempt(number: int, *callbacks: Callback) -> None:
        train_run(
            plan,
            folder=tmp_path,
            callbacks=callbacks,
            device="cpu",
            resume=True,
            checkpoints=every_epoch,
            attempt=number,
        )

    attempt(1, StopAfter(2))  # attempt-1 holds epoch 2, attempt-1.old epoch 1
    (tmp_path / "checkpoint" / "attempt-1" / TENSORS).write_bytes(b"")
    second = Epochs()
    attempt(2, second, StopAfter(4))  # from epoch 1, attempt-1's previous checkpoint
    assert second.seen == [2, 3, 4]
    (tmp_path / "checkpoint" / "attempt-2" / TREE).write_text("not json")
    tensors = tmp_path / "checkpoint" / "attempt-2.old" / TENSORS
    os.truncate(tensors, tensors.stat().st_size - 1)
    third = Epochs()
    attempt(3, third)  # neither of attempt 2's can be read: attempt 1's previous one again
    assert third.seen == [2, 3, 4, 5]


def test_max_runtime_fails_the_run_with_its_reason() -> None:
    spec = parse_spec({**SPEC, "epochs": 10_000, "max_runtime_s": 0.5, "regularization": {"early_stopping": None}})
    result = run_experiment(spec, device="cpu")
    assert result.status == "failed"
    assert result.failure.startswith("time limit")
    assert result.epochs < 10_000


def test_the_time_limit_counts_the_time_every_attempt_trained(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    stopped: list[tuple[str, str]] = []
    state = SimpleNamespace(epoch=3, stop=lambda reason, status: stopped.append((reason, status)))
    first = TimeLimit(10.0)
    first.on_fit_start(state)
    clock[0] += 7.0
    checkpointed = first.state_dict()  # the first attempt trained 7 s, then its worker died
    second = TimeLimit(10.0)
    second.load_state_dict(checkpointed)
    second.on_fit_start(state)
    clock[0] += 2.0
    second.on_step_end(state)
    assert not stopped  # 9 s in all
    clock[0] += 2.0
    second.on_step_end(state)
    assert stopped and stopped[0][1] == "failed" and "max_runtime_s" in stopped[0][0]  # 11 s in all


def test_a_fold_has_what_the_other_folds_left_of_the_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    stopped: list[str] = []
    state = SimpleNamespace(epoch=2, stop=lambda reason, status: stopped.append(reason))
    later_fold = TimeLimit(10.0, shared_s=7.0)  # the folds before it took 7 s of the 10
    later_fold.on_fit_start(state)
    clock[0] += 2.0
    later_fold.on_step_end(state)
    assert not stopped
    clock[0] += 2.0
    later_fold.on_step_end(state)
    assert stopped == ["time limit: stopped after 10 s (max_runtime_s, 7.0 s of it by the other folds) at epoch 2"]


def test_a_local_kfold_run_gives_each_fold_what_the_folds_before_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits: list[TimeLimit] = []

    def recorded(seconds: float, **options: float) -> TimeLimit:
        limits.append(TimeLimit(seconds, **options))
        return limits[-1]

    monkeypatch.setattr(run_module, "TimeLimit", recorded)
    spec = {**SPEC, "epochs": 2, "max_runtime_s": 600, "data": {**SPEC["data"], "split": {"kfold": 3}}}
    result = train_run(plan_experiment(parse_spec(spec)), folder=tmp_path, device="cpu")
    seconds = [fold["seconds"] for fold in result.folds]
    assert result.status == "succeeded" and [limit.seconds for limit in limits] == [600] * 3
    assert [limit.shared_s for limit in limits] == [0.0, seconds[0], seconds[0] + seconds[1]]
