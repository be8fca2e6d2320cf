"""Checkpoints: a run stopped after epoch 3 and resumed from its checkpoint ends with the same
weights as one trained straight through; the time limit fails a run with its reason, counting
the time every attempt trained."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core.engine import callbacks
from core.engine.callbacks import TimeLimit
from core.engine.checkpoint import Checkpointer, flatten, load_checkpoint, save_checkpoint, unflatten
from core.engine.events import Callback, State
from core.engine.run import run_experiment
from core.spec.schema import parse_spec

SPEC = {
    "seed": 3,
    "epochs": 6,
    "data": {"source": {"type": "builtin", "name": "digits"}},
    "model": {"type": "mlp", "hidden": [64], "dropout": 0.3},
    "optimizer": {"type": "adam", "lr": 0.003},
    "diagnostics": {"every_n_steps": 7},
}


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state: State) -> None:
        if state.epoch == self.epoch:
            state.stop("stopped by the test", status="cancelled")


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
    folder.rename(folder.with_name("checkpoint.old"))  # died between moving the old one away and the new in
    (tmp_path / "checkpoint.partial").mkdir()  # and a half-written next one
    assert load_checkpoint(folder)["epoch"] == 2


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
